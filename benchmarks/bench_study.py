"""The study at scale, measured in one run: the default `--jobs auto` against one run at a time, at the study's
thread count and with every core per run (runs per hour, same results?), the grid's overhead (its wall time
against the sum of its runs' training time), and where the bf16 warning appears.

    python benchmarks/bench_study.py [--epochs 3] [--fracs 0.2] [--dropouts 0,0.5] [--data-dir DIR]

Every study runs as a user would run it (`cnnlab study` in a fresh process, into its own temporary log folder).
Run it on a quiet machine: another busy process changes every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.hardware import cpu_model, native_bf16
from cnnlab.runs import read_history
from cnnlab.training.jobs import cpu_cores

CLI = [sys.executable, "-m", "cnnlab"]
# The same command with the CPU's bf16 flags hidden from cnnlab: what a CPU without native bf16 would be told.
HIDE_BF16 = (
    "import sys, cnnlab.hardware as h; real = h.cpu_flags; "
    "h.cpu_flags = lambda: real() - {'avx512_bf16', 'amx_bf16', 'amx_tile'}; "
    "from cnnlab.cli import main; sys.argv[0] = 'cnnlab'; main()"
)


def study(args: argparse.Namespace, jobs: str, root: Path, threads: int | None = None) -> dict:
    logdir = root / f"jobs{jobs}_threads{threads}"
    cmd = [
        *CLI,
        "study",
        "--epochs",
        str(args.epochs),
        "--fracs",
        args.fracs,
        "--dropouts",
        args.dropouts,
        "--logdir",
        str(logdir),
        "--out",
        str(logdir / "out"),
        "--jobs",
        str(jobs),
        "--no-progress",
        "--lang",
        "en",
    ] + (["--data-dir", args.data_dir] if args.data_dir else [])
    cmd += ["--threads", str(threads)] if threads else []  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    runs = sorted(p.parent for p in logdir.glob("*/version_*/run.json"))
    training = sum(sum(json.loads((r / "run.json").read_text())["epoch_seconds"]) for r in runs)
    return {"wall": wall, "training": training, "histories": {r.parent.name: read_history(r) for r in runs}}


def largest_difference(a: dict, b: dict) -> float:
    """The largest |difference| of any history value (loss or accuracy, any epoch) between two studies' runs."""
    return max(
        abs(x[k] - y[k])
        for name, rows in a["histories"].items()
        for x, y in zip(rows, b["histories"][name], strict=True)
        for k in x
    )


def bf16_warning(data_dir: str | None, hide: bool, root: Path) -> tuple[bool, str]:
    """Does `cnnlab fit --precision bf16-mixed` warn? And what does --precision auto record in run.json?"""
    prefix = [sys.executable, "-c", HIDE_BF16] if hide else CLI
    extra = ["--data-dir", data_dir] if data_dir else []
    logdir = root / f"bf16_{'hidden' if hide else 'native'}"
    fit = [*prefix, "fit", "--frac", "0.02", "--epochs", "1", "--no-progress", "--logdir", str(logdir), *extra]
    warned = subprocess.run([*fit, "--precision", "bf16-mixed"], capture_output=True, text=True, check=True)
    subprocess.run([*fit, "--precision", "auto", "--name", "auto"], capture_output=True, check=True)
    used = json.loads((logdir / "auto" / "version_0" / "run.json").read_text())["precision"]["used"]
    return any(line.startswith("warning:") and "bf16" in line for line in warned.stderr.splitlines()), used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--fracs", default="0.2")
    ap.add_argument("--dropouts", default="0,0.5")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    _, why = native_bf16("cpu")
    print(f"machine: {cpu_model()}, {cpu_cores()} cores; bf16: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        auto = study(args, "auto", root)
        serial = study(args, "1", root)
        whole = study(args, "1", root, threads=cpu_cores())
        n = len(auto["histories"])
        print(f"\nstudy: fracs {args.fracs} x dropouts {args.dropouts}, {args.epochs} epochs: {n} runs")
        print(f"{'':44s} {'wall s':>8s} {'training s':>11s} {'wall / training':>16s} {'runs / hour':>12s}")
        contenders = (
            (" --jobs auto (the default)", auto),
            (" --jobs 1, the same threads per run", serial),
            (f" --jobs 1 --threads {cpu_cores()} (every core per run)", whole),
        )
        for label, r in contenders:
            per_hour, overhead = 3600 * n / r["wall"], r["wall"] / r["training"]
            print(f"{label:44s} {r['wall']:8.1f} {r['training']:11.1f} {overhead:16.2f} {per_hour:12.1f}")
        print(f"\nruns per hour, --jobs auto / every core per run: {whole['wall'] / auto['wall']:.2f}")
        print(f"largest difference, --jobs auto vs --jobs 1: {largest_difference(serial, auto):.2e}")
        print()
        for hide in (False, True):
            warned, used = bf16_warning(args.data_dir, hide, root)
            what = "flags hidden (as a CPU without native bf16)" if hide else "this CPU as it is"
            print(f"bf16 warning, {what}: {'printed' if warned else 'none'}; --precision auto chose {used}")


if __name__ == "__main__":
    main()
