"""Training speed: cnnlab fit vs a bare PyTorch loop (and Keras, when a TensorFlow python is given), the data
path, and each speed option, all measured in one run on the same data.

    python benchmarks/bench_training.py [--frac 0.2] [--epochs 3] [--threads 1,2] [--options] [--keras-python PATH]
    python benchmarks/bench_training.py --gpu [--study-epochs 40] [--gpu-jobs 4]

Per-epoch time is training only (no validation), as `run.json`'s `epoch_seconds`. For each thread count in
`--threads`, the bare loop and cnnlab's default alternate for `--rounds` rounds (the machine is shared and noisy)
and each one's fastest epoch after the first (which pays one-off costs) counts; then each speed option and Keras
(same model, same thread count) once. Prints seconds per epoch and the ratios to the bare loop.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data.module import FashionMNISTDataModule, locate_data
from cnnlab.model.network import KerasCNN
from cnnlab.model.numerics import set_thread_invariant
from cnnlab.training.config import FitConfig
from cnnlab.training.fit import fit


def steady(seconds: list[float]) -> float:
    return min(seconds[1:] if len(seconds) > 1 else seconds)


def bare_loop(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    bf16: bool = False,
    channels_last: bool = False,
    thread_invariant: bool = False,
) -> list[float]:
    """The floor: the same model, optimizer and batch size, float tensors already in memory, no Lightning."""
    torch.manual_seed(42)
    net = KerasCNN()
    set_thread_invariant(net, thread_invariant)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-4, alpha=0.9, eps=1e-7)
    times = []
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def cnnlab_fit(frac: float, epochs: int, data_dir: str | None, **options: object) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FitConfig(frac=frac, epochs=epochs, data_dir=data_dir, logdir=tmp, progress=False, **options)  # type: ignore[arg-type]
        result = fit(cfg)
    return result.epoch_seconds, result.history[-1]["train_loss"]


def data_path(dm: FashionMNISTDataModule, folder: Path) -> tuple[float, float]:
    """Seconds for one epoch of batches (no model): cnnlab's in-memory batches vs torchvision's dataset."""
    from torchvision import datasets, transforms

    start = time.perf_counter()
    for _ in dm.train_dataloader():
        pass
    ours = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for f in folder.iterdir():  # torchvision reads the uncompressed files
            (raw / f.name.removesuffix(".gz")).write_bytes(
                gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
            )
        ds = datasets.FashionMNIST(tmp, train=True, download=False, transform=transforms.ToTensor())
        subset = torch.utils.data.Subset(ds, dm.split.train.tolist())  # type: ignore[union-attr]
        loader = torch.utils.data.DataLoader(subset, batch_size=32, shuffle=True)
        start = time.perf_counter()
        for _ in loader:
            pass
    return ours, time.perf_counter() - start


def gpu_mode(args: argparse.Namespace, folder: Path) -> None:
    """On a CUDA GPU: cnnlab fit's epoch time per speed option, then the whole 2x2 study one run at a time and
    with --gpu-jobs runs sharing the GPU."""
    from cnnlab.training.study import run_study

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: PyTorch sees no CUDA device")
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; frac {args.frac}, {args.epochs} epochs\n")
    options: list[tuple[str, dict[str, object]]] = [
        ("float32", {}),
        ("bf16-mixed", {"precision": "bf16-mixed"}),
        ("bf16-mixed --channels-last", {"precision": "bf16-mixed", "channels_last": True}),
        ("bf16-mixed --compile", {"precision": "bf16-mixed", "compile": True}),
    ]
    print(f"{'cnnlab fit on the GPU, per epoch':40s} {'seconds':>8s}  final train loss")
    for label, opts in options:
        secs, loss = cnnlab_fit(args.frac, args.epochs, str(folder), accelerator="gpu", **opts)
        print(f"{label:40s} {steady(secs):8.2f}  {loss:.4f}")
    print(f"\nthe exercise's 2x2 study (fracs 0.2,1.0 x dropouts 0,0.5), {args.study_epochs} epochs, float32:")
    for jobs in (1, args.gpu_jobs):
        with tempfile.TemporaryDirectory() as tmp:
            base = FitConfig(epochs=args.study_epochs, data_dir=str(folder), logdir=tmp, progress=False,
                             accelerator="gpu")  # fmt: skip
            start = time.perf_counter()
            run_study(base, [0.2, 1.0], [0.0, 0.5], out=Path(tmp) / "out", jobs=jobs, jobs_per_gpu=jobs)
            print(
                f"  --jobs {jobs}{f' --jobs-per-gpu {jobs}' if jobs > 1 else ''}: {time.perf_counter() - start:.0f} s"
            )


def keras_epochs(python: str, folder: Path, n: int, epochs: int, threads: int) -> list[float]:
    script = Path(__file__).with_name("keras_epoch.py")
    out = subprocess.run([python, str(script), str(folder), str(n), str(epochs), str(threads)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return list(json.loads(out.stdout.strip().splitlines()[-1])["epoch_seconds"])


OPTIONS: list[tuple[str, dict[str, object]]] = [
    ("cnnlab fit --thread-invariant", {"thread_invariant": True}),
    ("cnnlab fit --precision bf16-mixed", {"precision": "bf16-mixed"}),
    ("cnnlab fit --channels-last", {"channels_last": True}),
    ("cnnlab fit --precision bf16-mixed --channels-last", {"precision": "bf16-mixed", "channels_last": True}),
    ("cnnlab fit --compile", {"compile": True}),
]


def at_threads(args: argparse.Namespace, folder: Path, x: torch.Tensor, y: torch.Tensor, threads: int) -> None:
    """Every contender on ``threads`` PyTorch threads (and Keras on as many): a table and the ratios."""
    torch.set_num_threads(threads)
    rows: dict[str, float] = {}
    losses: dict[str, float] = {}
    bare_times, fit_times = [], []
    for _ in range(args.rounds):
        bare_times.append(steady(bare_loop(x, y, args.epochs)))
        secs, losses["cnnlab fit (default)"] = cnnlab_fit(args.frac, args.epochs, str(folder), threads=threads)
        fit_times.append(steady(secs))
    rows["bare PyTorch loop, float32"] = min(bare_times)
    rows["cnnlab fit (default)"] = min(fit_times)
    if args.options:
        rows["bare PyTorch loop, bf16 autocast + channels-last"] = steady(bare_loop(x, y, args.epochs, True, True))
        for label, opts in OPTIONS:
            secs, losses[label] = cnnlab_fit(args.frac, args.epochs, str(folder), threads=threads, **opts)
            rows[label] = steady(secs)
    if args.keras_python:
        rows["Keras 3 (TensorFlow), float32"] = steady(keras_epochs(args.keras_python, folder, len(y), args.epochs,
                                                                    threads))  # fmt: skip
    bare = rows["bare PyTorch loop, float32"]
    print(f"\n{threads} thread{'s' if threads > 1 else ''}:")
    print(f"{'training, per epoch':55s} {'seconds':>8s} {'/ bare':>7s}  final train loss")
    for label, sec in rows.items():
        loss = f"{losses[label]:.4f}" if label in losses else ""
        print(f"{label:55s} {sec:8.2f} {sec / bare:7.3f}  {loss}")
    # Each round's ratio compares neighbours in time; their median is what a slow spell of the machine (a noisy
    # neighbour on a shared host) moves least.
    ratios = [f / b for f, b in zip(fit_times, bare_times, strict=True)]
    per_round = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"ratio cnnlab default / bare loop (float32): median of rounds {statistics.median(ratios):.3f}, "
          f"fastest against fastest {rows['cnnlab fit (default)'] / bare:.3f}  (per round: {per_round})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frac", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of bare loop and cnnlab fit")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", default="1,2", help="comma-separated PyTorch thread counts, each measured in turn")
    ap.add_argument(
        "--options", action="store_true", help="also time --thread-invariant, bf16, channels-last and torch.compile"
    )
    ap.add_argument("--keras-python", default=None, help="a python with TensorFlow, to time Keras side by side")
    ap.add_argument("--gpu", action="store_true", help="time cnnlab on a CUDA GPU (and the whole study there)")
    ap.add_argument("--study-epochs", type=int, default=40, help="--gpu: epochs of the timed 2x2 study")
    ap.add_argument("--gpu-jobs", type=int, default=4, help="--gpu: runs sharing the GPU in the second study")
    args = ap.parse_args()
    torch.set_float32_matmul_precision("highest")

    folder = locate_data(args.data_dir, download=False)
    if args.gpu:
        return gpu_mode(args, folder)
    dm = FashionMNISTDataModule(folder, frac=args.frac)
    dm.setup("fit")
    x = dm.train_set.images.float().div(255)
    y = dm.train_set.labels
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}; frac {args.frac}: {len(y):,} training "
          f"images, batch 32, {args.epochs} epochs each")  # fmt: skip
    for threads in (int(t) for t in args.threads.split(",")):
        at_threads(args, folder, x, y, threads)
    ours, tv = data_path(dm, folder)
    print(f"\ndata path, one epoch of batches: cnnlab in-memory {ours:.3f} s, torchvision FashionMNIST + DataLoader "
          f"{tv:.3f} s ({tv / ours:.0f}x slower)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
