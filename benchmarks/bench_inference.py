"""Inference throughput on the 10,000 holdout images: PyTorch eager vs onnxruntime float32 vs int8.

    python benchmarks/bench_inference.py RUN [--batch-size 1024] [--repeats 5]

RUN is a run folder or name (train one first, e.g. `cnnlab fit --frac 0.2 --epochs 5`). The model is exported
to a temporary folder (float32 and int8); each backend predicts all 10,000 images `--repeats` times and the
best time counts (the least disturbed by other work on a shared machine). Prints images/s and the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.module import FashionMNISTDataModule
from cnnlab.deploy.evaluation import ort_logits, ort_session, torch_logits
from cnnlab.deploy.export import export_onnx
from cnnlab.model.checkpoints import load_network


def best_seconds(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    holdout = FashionMNISTDataModule(args.data_dir).eval_set("holdout")
    images, labels = holdout.images, holdout.labels.numpy()
    net = load_network(args.run).net
    with tempfile.TemporaryDirectory() as tmp:
        exp = export_onnx(args.run, Path(tmp) / "m.onnx", quantize="int8", data_dir=args.data_dir)
        fp32, int8 = ort_session(exp.output), ort_session(exp.int8_output)  # type: ignore[arg-type]
        bs = args.batch_size
        rows = {
            "pytorch eager (inference_mode)": best_seconds(lambda: torch_logits(net, images, bs), args.repeats),
            "onnxruntime float32": best_seconds(lambda: ort_logits(fp32, images, bs), args.repeats),
            "onnxruntime int8 (QDQ)": best_seconds(lambda: ort_logits(int8, images, bs), args.repeats),
        }
    import onnxruntime

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}")  # fmt: skip
    print(f"{len(labels):,} holdout images, batch size {bs}, best of {args.repeats}\n")
    print(f"{'backend':34s} {'images/s':>10s} {'accuracy':>9s}")
    ips = {}
    for name, (secs, logits) in rows.items():
        ips[name] = len(labels) / secs
        print(f"{name:34s} {ips[name]:10,.0f} {np.mean(logits.argmax(1) == labels):9.4f}")
    names = list(rows)
    acc = {n: float(np.mean(rows[n][1].argmax(1) == labels)) for n in names}
    print(f"\nratio onnxruntime float32 / pytorch eager: {ips[names[1]] / ips[names[0]]:.2f}x")
    print(f"ratio onnxruntime int8 / float32:          {ips[names[2]] / ips[names[1]]:.2f}x")
    print(f"accuracy change int8 - float32:            {100 * (acc[names[2]] - acc[names[1]]):+.2f} points")


if __name__ == "__main__":
    main()
