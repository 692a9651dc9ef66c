"""Training speed: cnnlab fit vs a bare PyTorch loop (and Keras, when a TensorFlow python is given), the data
path, and each speed option, all measured in one run on the same data.

    python benchmarks/bench_training.py [--frac 0.2] [--epochs 3] [--options] [--keras-python PATH]
    python benchmarks/bench_training.py --threads 1 ...  (the same with one PyTorch thread)
    python benchmarks/bench_training.py --gpu [--study-epochs 40] [--gpu-jobs 4]

Per-epoch time is training only (no validation), as `run.json`'s `epoch_seconds`. The machine is shared and
noisy, so the bare loop and cnnlab alternate for `--rounds` rounds and each one's fastest epoch after the first
(which pays one-off costs) counts. Prints seconds per epoch and the ratios.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data import FashionMNISTDataModule, locate_data
from cnnlab.model import KerasCNN
from cnnlab.numerics import set_thread_invariant
from cnnlab.training import FitConfig, fit


def steady(seconds: list[float]) -> float:
    return min(seconds[1:] if len(seconds) > 1 else seconds)


def bare_loop(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    bf16: bool = False,
    channels_last: bool = False,
    thread_invariant: bool = True,
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
    from cnnlab.study import run_study

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
            run_study(base, [0.2, 1.0], [0.0, 0.5], out=Path(tmp) / "out", log=lambda line: None, jobs=jobs,
                      jobs_per_gpu=jobs)  # fmt: skip
            print(
                f"  --jobs {jobs}{f' --jobs-per-gpu {jobs}' if jobs > 1 else ''}: {time.perf_counter() - start:.0f} s"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frac", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of bare loop and cnnlab fit")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: PyTorch's choice)")
    ap.add_argument(
        "--options", action="store_true", help="also time --no-thread-invariant, bf16, channels-last and torch.compile"
    )
    ap.add_argument("--keras-python", default=None, help="a python with TensorFlow, to time Keras side by side")
    ap.add_argument("--gpu", action="store_true", help="time cnnlab on a CUDA GPU (and the whole study there)")
    ap.add_argument("--study-epochs", type=int, default=40, help="--gpu: epochs of the timed 2x2 study")
    ap.add_argument("--gpu-jobs", type=int, default=4, help="--gpu: runs sharing the GPU in the second study")
    args = ap.parse_args()
    torch.set_float32_matmul_precision("highest")
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = locate_data(args.data_dir, download=False)
    if args.gpu:
        return gpu_mode(args, folder)
    dm = FashionMNISTDataModule(folder, frac=args.frac)
    dm.setup("fit")
    x = dm.train_set.images.float().div(255)
    y = dm.train_set.labels
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"frac {args.frac}: {len(y):,} training images, batch 32, {args.epochs} epochs each\n")  # fmt: skip
    rows: dict[str, float] = {}
    losses: dict[str, float] = {}
    bare_times, fit_times = [], []
    for _ in range(args.rounds):
        bare_times.append(steady(bare_loop(x, y, args.epochs)))
        secs, losses["cnnlab fit, float32"] = cnnlab_fit(args.frac, args.epochs, str(folder))
        fit_times.append(steady(secs))
    rows["bare PyTorch loop, float32"] = min(bare_times)
    rows["cnnlab fit, float32"] = min(fit_times)
    if args.options:
        rows["bare PyTorch loop, bf16 autocast + channels-last"] = steady(bare_loop(x, y, args.epochs, True, True))
        rows["bare PyTorch loop, float32, threaded weight gradients"] = steady(
            bare_loop(x, y, args.epochs, thread_invariant=False)
        )
        bf16: dict[str, object] = {"precision": "bf16-mixed"}
        options = [
            ("cnnlab fit --no-thread-invariant", {"thread_invariant": False}),
            ("cnnlab fit --precision bf16-mixed", bf16),
            ("cnnlab fit --channels-last", {"channels_last": True}),
            ("cnnlab fit --precision bf16-mixed --channels-last", bf16 | {"channels_last": True}),
            ("cnnlab fit --compile", {"compile": True}),
        ]
        for label, opts in options:
            secs, losses[label] = cnnlab_fit(args.frac, args.epochs, str(folder), **opts)
            rows[label] = steady(secs)
    if args.keras_python:
        script = Path(__file__).with_name("keras_epoch.py")
        out = subprocess.run([args.keras_python, str(script), str(folder), str(len(y)), str(args.epochs)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        rows["Keras (TensorFlow), float32"] = steady(json.loads(out.stdout.strip().splitlines()[-1])["epoch_seconds"])

    print(f"{'training, per epoch':55s} {'seconds':>8s}  final train loss")
    for label, s in rows.items():
        print(f"{label:55s} {s:8.2f}  {losses.get(label, float('nan')):.4f}")
    bare = rows["bare PyTorch loop, float32"]
    print(
        f"\nratio cnnlab fit / bare loop (float32): {rows['cnnlab fit, float32'] / bare:.3f}  "
        f"(per round: {', '.join(f'{f / b:.3f}' for f, b in zip(fit_times, bare_times, strict=True))})"
    )
    if args.options:
        invariant = rows["cnnlab fit, float32"] / rows["cnnlab fit --no-thread-invariant"]
        print(f"cost of --thread-invariant (the default) at {torch.get_num_threads()} threads: {invariant:.3f}x")
        fastest = min((k for k in rows if k.startswith("cnnlab")), key=rows.__getitem__)
        print(f"fastest cnnlab option: {fastest} = {rows[fastest] / rows['cnnlab fit, float32']:.3f}x float32")
        if "Keras (TensorFlow), float32" in rows:
            print(f"ratio fastest cnnlab / Keras: {rows[fastest] / rows['Keras (TensorFlow), float32']:.3f}")
    if "Keras (TensorFlow), float32" in rows:
        print(
            f"ratio cnnlab fit float32 / Keras: {rows['cnnlab fit, float32'] / rows['Keras (TensorFlow), float32']:.3f}"
        )
    ours, tv = data_path(dm, folder)
    print(f"\ndata path, one epoch of batches: cnnlab in-memory {ours:.3f} s, torchvision FashionMNIST + DataLoader "
          f"{tv:.3f} s ({tv / ours:.0f}x slower)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
