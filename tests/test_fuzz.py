"""Property-based tests: any byte string gives valid arrays or cnnlab's own error, never another exception."""

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.data.idx import read_idx_bytes
from cnnlab.errors import CnnlabError
from cnnlab.filters import load_image

sys.path.insert(0, str(Path(__file__).parents[1] / "fuzz"))
from samples import idx_samples, image_samples  # noqa: E402

IDX_SEEDS, IMAGE_SEEDS = idx_samples(), image_samples()


def mutations(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    def apply(seed: bytes, cut: int, flips: list[tuple[int, int]], tail: bytes) -> bytes:
        data = bytearray(seed[: max(cut, 0)] if cut < len(seed) else seed)
        for pos, bit in flips:
            if data:
                data[pos % len(data)] ^= 1 << bit
        return bytes(data) + tail

    return st.builds(apply, st.sampled_from(seeds), st.integers(0, 6000),
                     st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), max_size=6),
                     st.binary(max_size=16))  # fmt: skip


def _idx(data: bytes) -> None:
    try:
        arr = read_idx_bytes(data, "prop")
    except CnnlabError:
        return
    assert arr.dtype == np.uint8 and arr.size == int(np.prod(arr.shape))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_idx_any_bytes(data):
    _idx(data)


@settings(max_examples=300, deadline=None)
@given(mutations(IDX_SEEDS))
def test_idx_mutated_files(data):
    _idx(data)


_TMP = Path(tempfile.mkdtemp())


def _image(data: bytes) -> None:
    path = _TMP / "prop.img"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rgb = load_image(path)
    except CnnlabError:
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_image_any_bytes(data):
    _image(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations(IMAGE_SEEDS))
def test_image_mutated_files(data):
    _image(data)
