"""A fuzzing campaign for cnnlab's file readers: the IDX reader and the image loader.

    python fuzz/fuzz_readers.py [--seconds 60] [--min-inputs 200] [--seed 0]

Every input must give either valid arrays or cnnlab's own error (CnnlabError); anything else is a bug. Prints how
many inputs each reader tried and how many ended in an unexpected exception; exits 1 if any did (the inputs
are saved under fuzz_failures/ to reproduce).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from samples import idx_samples, image_samples  # noqa: E402

from cnnlab.data.idx import read_idx_bytes  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.filters import load_image  # noqa: E402


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    kind = rng.randrange(6)
    if kind == 0:  # random bytes
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600)))
    if kind == 1 and data:  # truncation
        return bytes(data[: rng.randrange(len(data))])
    if kind == 2 and data:  # bit flips
        for _ in range(rng.randrange(1, 9)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 3 and len(data) > 8:  # a header field overwritten with an extreme value
        i = rng.randrange(min(len(data) - 4, 32))
        data[i : i + 4] = rng.choice(
            [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x01\x00\x00"]
        )
        return bytes(data)
    if kind == 4:  # appended garbage
        return bytes(data) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
    return bytes(data[: rng.randrange(1, 40)]) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))


def campaign(name: str, run: Callable[[bytes], None], seeds: list[bytes], seconds: float, minimum: int,
             rng: random.Random) -> int:  # fmt: skip
    tried = ok = expected = 0
    unexpected: list[tuple[bytes, str]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or tried < minimum:
        data = mutate(rng, seeds)
        tried += 1
        try:
            run(data)
            ok += 1
        except CnnlabError:
            expected += 1
        except Exception:
            unexpected.append((data, traceback.format_exc()))
    print(f"{name}: tried {tried} inputs: {ok} read, {expected} refused with a clear error, "
          f"{len(unexpected)} unexpected exceptions")  # fmt: skip
    if unexpected:
        out = Path("fuzz_failures")
        out.mkdir(exist_ok=True)
        for k, (data, tb) in enumerate(unexpected[:20]):
            (out / f"{name}_{k}.bin").write_bytes(data)
            (out / f"{name}_{k}.txt").write_text(tb)
        print(f"  first: {unexpected[0][1].strip().splitlines()[-1]} (inputs saved in {out}/)")
    return len(unexpected)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="per reader")
    ap.add_argument("--min-inputs", type=int, default=200, help="per reader, however long it takes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    warnings.simplefilter("ignore")  # Pillow warns about some odd files; warnings are not failures

    def idx(data: bytes) -> None:
        arr = read_idx_bytes(data, "fuzz")
        assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.img"

        def image(data: bytes) -> None:
            path.write_bytes(data)
            rgb = load_image(path)
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3

        bad = campaign("idx", idx, idx_samples(), args.seconds, args.min_inputs, rng)
        bad += campaign("image", image, image_samples(), args.seconds, args.min_inputs, rng)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
