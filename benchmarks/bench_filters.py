"""`cnnlab filters`: running InceptionV3's stem only vs the full network to take the same hooked maps.

python benchmarks/bench_filters.py [--batch 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from cnnlab.filters import PROBES, capture, load_inception, make_probe, prepare


def best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    stem = load_inception("random")
    x = torch.cat([prepare(stem, make_probe(PROBES[i % len(PROBES)]))[0] for i in range(args.batch)])
    short = best(lambda: capture(stem, x), args.repeats)
    full = best(lambda: capture(stem, x, full=True), args.repeats)
    short_maps, full_maps = capture(stem, x), capture(stem, x, full=True)
    same = all(torch.equal(short_maps[k], full_maps[k]) for k in short_maps)
    threads = torch.get_num_threads()
    print(f"{args.batch} images of 299x299, torch {torch.__version__} ({threads} threads), best of {args.repeats}")
    print(f"stem only (Conv2d_1a_3x3):   {short * 1000:8.1f} ms")
    print(f"full InceptionV3 forward:    {full * 1000:8.1f} ms")
    print(f"ratio full / stem only:      {full / short:8.1f}x   (same maps: {same})")


if __name__ == "__main__":
    main()
