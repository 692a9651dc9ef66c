import gzip
import struct

import numpy as np
import pytest

from cnnlab.data.idx import read_idx, read_idx_bytes, write_idx
from cnnlab.errors import CnnlabError


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_roundtrip_raw_and_gzip(tmp_path, name):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / name, arr)
    np.testing.assert_array_equal(read_idx(tmp_path / name, ndim=3), arr)


def _blob(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


GOOD = _blob(np.ones((3, 4, 4), np.uint8))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated IDX header"),
        (GOOD[:2], "truncated IDX header"),
        (GOOD[:8], "dimensions missing"),
        (GOOD[:20], "truncated: header promises 48 data bytes, file has 4"),
        (GOOD + b"\0", "trailing bytes"),
        (b"\x12\x34" + GOOD[2:], "magic number 0x12340803"),
        (b"\0\0\x0d\x03" + GOOD[4:], "not an unsigned-byte IDX file"),
        (_blob(np.ones((4,), np.uint8)), "has 1 dimensions, expected 3"),
        (struct.pack(">HBB3I", 0, 8, 3, 4_000_000_000, 60000, 28), "over the 1 GiB limit"),
        (struct.pack(">HBB3I", 0, 8, 3, 1_000_000, 28, 28), "header promises 784,000,000 data bytes"),
        (gzip.compress(GOOD)[:-12], "corrupt gzip stream"),
    ],
)
def test_bad_files_raise_clear_errors(data, message):
    with pytest.raises(CnnlabError, match="^bad.gz: .*" + message.replace("(", r"\(").replace(".", r"\.")):
        read_idx_bytes(data, "bad.gz", ndim=3)


def test_error_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(GOOD)[:30])
    with pytest.raises(CnnlabError, match=str(path)):
        read_idx(path, ndim=3)


def test_missing_file(tmp_path):
    with pytest.raises(CnnlabError, match="not a file"):
        read_idx(tmp_path / "nope")
