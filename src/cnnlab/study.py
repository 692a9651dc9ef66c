"""``run_study``: the exercise's grid (fractions x dropouts x seeds) as normal runs, then their comparison."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from .atomic import atomic_write_text
from .compare import Comparison, compare_runs
from .errors import CnnlabError
from .runs import LAST_CKPT, read_run, versions
from .training import FitConfig, fit

# Settings that make two runs the same experiment (hardware and display options do not).
_SAME = ("frac", "dropout", "epochs", "batch_size", "lr", "optimizer", "init", "seed", "val_split", "eval_train",
         "data_dir")  # fmt: skip


def parse_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CnnlabError(f"{option} {text!r}: give comma-separated numbers, e.g. 0.2,1.0") from None
    if not values:
        raise CnnlabError(f"{option} {text!r}: give at least one value")
    return values


def grid(base: FitConfig, fracs: list[float], dropouts: list[float], seeds: int) -> list[FitConfig]:
    if seeds < 1:
        raise CnnlabError(f"--seeds {seeds}: must be at least 1")
    configs = [
        dataclasses.replace(base, frac=f, dropout=d, seed=base.seed + s, name=None, resume=False)
        for f in fracs for d in dropouts for s in range(seeds)
    ]  # fmt: skip
    for cfg in configs:
        cfg.validate()  # every bad value is reported before the first run starts
    return configs


def _existing(cfg: FitConfig) -> tuple[str, Path | None]:
    """('done', folder) for a finished matching run, ('resume', folder) for an interrupted one, else ('new', None)."""
    logdir, name = Path(cfg.logdir), cfg.run_name
    for v in reversed(versions(logdir, name)):
        run_dir = logdir / name / f"version_{v}"
        try:
            info = read_run(run_dir)
        except CnnlabError:
            continue
        saved = info.get("config", {})
        if any(saved.get(k) != getattr(cfg, k) for k in _SAME):
            continue
        if info.get("status") in ("finished", "failed"):  # a non-finite loss would fail again: keep the record
            return "done", run_dir
        if (run_dir / LAST_CKPT).is_file():
            return "resume", run_dir
    return "new", None


def run_study(
    base: FitConfig,
    fracs: list[float],
    dropouts: list[float],
    seeds: int = 1,
    out: str | os.PathLike[str] = "study_out",
    log: Callable[[str], None] = print,
) -> Comparison:
    """Train every run of the grid that is not finished yet (resuming interrupted ones), then compare them all."""
    configs = grid(base, fracs, dropouts, seeds)
    run_dirs: list[Path] = []
    work_done, seconds_spent = 0.0, 0.0
    remaining = sum(c.frac * c.epochs for c in configs)
    for k, cfg in enumerate(configs, 1):
        state, run_dir = _existing(cfg)
        work = cfg.frac * cfg.epochs  # training time grows with images x epochs
        if state == "done" and run_dir is not None:
            log(f"[{k}/{len(configs)}] {cfg.run_name}: finished earlier ({run_dir}), skipped")
            run_dirs.append(run_dir)
            remaining -= work
            continue
        eta = f", ETA {_duration(seconds_spent / work_done * remaining)}" if work_done else ""
        log(f"[{k}/{len(configs)}] {cfg.run_name}: {'resuming' if state == 'resume' else 'training'}{eta}")
        start = time.perf_counter()
        result = fit(dataclasses.replace(cfg, resume=state == "resume"))
        seconds_spent += time.perf_counter() - start
        work_done += work
        remaining -= work
        run_dirs.append(result.run_dir)
    out = Path(out)
    comparison = compare_runs([str(d) for d in run_dirs], out, Path(base.logdir), min_runs=1)
    figures = "\n".join(f"![{p.name}]({p.name})" for p in comparison.files if p.suffix == ".png")
    grid_line = f"fractions {fracs}, dropouts {dropouts}, {seeds} seed(s) from {base.seed}, {base.epochs} epochs"
    runs = "\n".join(f"- `{d}`" for d in run_dirs)
    atomic_write_text(out / "README.md", f"# cnnlab study\n\nGrid: {grid_line}.\n\n{comparison.table}\n"
                                         f"## Runs\n\n{runs}\n\n## Curves\n\n{figures}\n")  # fmt: skip
    return comparison


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"
