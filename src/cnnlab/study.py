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
from .lit import NonFiniteLoss
from .runs import EXPERIMENT_SETTINGS, has_epochs, is_resumable, matching_versions, read_run
from .training import FitConfig, fit

# A study's run is done when a run exists with the same experiment settings, seed and measurements.
_SAME = (*EXPERIMENT_SETTINGS, "seed", "eval_train", "data_dir")


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
    """('done', folder) for a finished matching run, ('resume', folder) for one to continue, else ('new', None).

    A run that failed is tried again (resumed from its last checkpoint when it has one), except one stopped by a
    non-finite loss: that is the experiment's outcome, and it would only diverge again.
    """
    for run_dir in matching_versions(Path(cfg.logdir), cfg.run_name, dataclasses.asdict(cfg), _SAME):
        info = read_run(run_dir)
        if info.get("status") == "finished" or info.get("nonfinite_epoch"):
            return "done", run_dir
        if is_resumable(run_dir):
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
            how = "finished" if read_run(run_dir).get("status") == "finished" else "stopped on a non-finite loss"
            log(f"[{k}/{len(configs)}] {cfg.run_name}: {how} earlier ({run_dir}), skipped")
            run_dirs.append(run_dir)
            remaining -= work
            continue
        eta = f", ETA {_duration(seconds_spent / work_done * remaining)}" if work_done else ""
        log(f"[{k}/{len(configs)}] {cfg.run_name}: {'resuming' if state == 'resume' else 'training'}{eta}")
        start = time.perf_counter()
        try:
            run_dir = fit(dataclasses.replace(cfg, resume=state == "resume"), resume_dir=run_dir).run_dir
        except NonFiniteLoss as e:  # a diverged run is a result too: record it and go on with the grid
            log(f"[{k}/{len(configs)}] {cfg.run_name}: {e}")
            run_dir = Path(e.run_dir) if e.run_dir else None
        seconds_spent += time.perf_counter() - start
        work_done += work
        remaining -= work
        if run_dir is not None:
            run_dirs.append(run_dir)
    out = Path(out)
    shown = [d for d in run_dirs if has_epochs(d)]  # a run that diverged in its first epoch has no curve
    if not shown:
        raise CnnlabError("no run of the study finished an epoch; nothing to compare")
    comparison = compare_runs([str(d) for d in shown], out, Path(base.logdir), min_runs=1)
    figures = "\n".join(f"![{p.name}]({p.name})" for p in comparison.files if p.suffix == ".png")
    grid_line = f"fractions {fracs}, dropouts {dropouts}, {seeds} seed(s) from {base.seed}, {base.epochs} epochs"
    runs = "\n".join(f"- `{d}`" for d in run_dirs)
    atomic_write_text(out / "README.md", f"# cnnlab study\n\nGrid: {grid_line}.\n\n{comparison.table}\n"
                                         f"## Runs\n\n{runs}\n\n## Curves\n\n{figures}\n")  # fmt: skip
    return comparison


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"
