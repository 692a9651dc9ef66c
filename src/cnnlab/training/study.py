"""``run_study``: the exercise's grid (fractions x dropouts x seeds) as normal runs, then their comparison."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.compare import Comparison, compare_runs
from ..analysis.report import check_lang, write_report
from ..atomic import atomic_write_text
from ..errors import CnnlabError, TrainingInterrupted
from ..runs import EXPERIMENT_SETTINGS, has_epochs, is_resumable, matching_versions, read_run
from ..tblog import board_dir
from . import interrupts
from .config import FitConfig, study_grid
from .fit import FitResult, fit
from .interrupts import StopRequest
from .jobs import (
    Event,
    Task,
    auto_jobs,
    check_jobs,
    gpus_for,
    run_parallel,
    study_interrupted,
    threads_per_run,
    train_outcome,
)

# A study's run is done when a run exists with the same experiment settings, seed and measurements.
_SAME = (*EXPERIMENT_SETTINGS, "seed", "eval_train", "data_dir")


_FINISHED, _DIVERGED = "finished", "stopped on a non-finite loss"  # the two ways a study's run is done


def _existing(cfg: FitConfig) -> tuple[str, Path | None]:
    """(_FINISHED or _DIVERGED, folder) for a matching run that is done, ('resume', folder) for one to continue,
    else ('new', None).

    A run that failed is tried again (resumed from its last checkpoint when it has one), except one stopped by a
    non-finite loss: that is the experiment's outcome, and it would only diverge again.
    """
    for run_dir in matching_versions(Path(cfg.logdir), cfg.run_name, dataclasses.asdict(cfg), _SAME):
        info = read_run(run_dir)
        if info.get("status") == "finished":
            return _FINISHED, run_dir
        if info.get("nonfinite_epoch"):
            return _DIVERGED, run_dir
        if is_resumable(run_dir):
            return "resume", run_dir
    return "new", None


def _done(state: str) -> bool:
    return state in (_FINISHED, _DIVERGED)


@dataclass
class StudyResult:
    run_dirs: list[Path]  # the grid's runs, in grid order (this shard's only, with a shard)
    grid_size: int
    out: Path  # README.md, the comparison's figures and tables, report_LANG/
    comparison: Comparison | None = None  # None for a shard: the comparison waits for --collect
    reports: dict[str, Path] = field(default_factory=dict)  # language -> the report's folder


def run_study(
    base: FitConfig,
    fracs: list[float],
    dropouts: list[float],
    seeds: int = 1,
    out: str | os.PathLike[str] = "study_out",
    on_event: Callable[[Event], None] = lambda event: None,
    shard: tuple[int, int] | None = None,
    collect: bool = False,
    jobs: int | None = None,
    jobs_per_gpu: int = 1,
    langs: Sequence[str] = (),
) -> StudyResult:
    """Train every run of the grid that is not finished yet (resuming interrupted ones), then compare them all and
    write the lab report in each of ``langs`` (``out/report_LANG``, also as the TensorBoard run study/<out>/...).

    Progress goes to ``on_event`` (jobs.Event: skip, start, epoch, done, diverged, ...). ``shard=(K, N)`` trains
    only runs K, K+N, K+2N... of the grid (a stable split: N machines sharing one log folder each take theirs)
    and compares nothing; ``collect`` trains nothing and compares the whole grid once every run is finished, or
    says which are missing. ``jobs`` > 1 trains that many runs at once in worker processes (see jobs.py); None
    (--jobs auto) as many as the machine holds. Every run trains on ``base.threads`` or threads_per_run threads,
    whatever ``jobs``: --jobs changes how fast the grid trains, never what it trains.
    """
    out = Path(out)
    check_jobs(jobs, jobs_per_gpu)
    for lang in langs:
        check_lang(lang)  # before anything trains
    configs = study_grid(base, fracs, dropouts, seeds)
    threads = base.threads or threads_per_run(len(configs))
    configs = [dataclasses.replace(c, threads=threads) for c in configs]
    if jobs is None:
        jobs = auto_jobs(threads, gpus_for(base), jobs_per_gpu)
    if collect:
        run_dirs = _collect(configs)
    else:
        todo = [(k, c) for k, c in enumerate(configs, 1) if shard is None or (k - 1) % shard[1] == shard[0] - 1]
        with interrupts.watching():  # from the plan on, SIGINT and SIGTERM stop the study cleanly
            on_event(Event("plan", 0, "", total=len(todo), jobs=min(jobs, len(todo)), threads=threads))
            if jobs > 1:
                run_dirs = _train_parallel(todo, len(configs), jobs, jobs_per_gpu, on_event)
            else:
                run_dirs = _train(todo, len(configs), on_event)
        if shard is not None:
            return StudyResult(run_dirs=run_dirs, grid_size=len(configs), out=out)
    comparison = _compare(run_dirs, out, base, f"fractions {fracs}, dropouts {dropouts}, {seeds} seed(s)")
    reports = {lang: _report(out, base, lang) for lang in langs}
    return StudyResult(run_dirs=run_dirs, grid_size=len(configs), out=out, comparison=comparison, reports=reports)


def _collect(configs: list[FitConfig]) -> list[Path]:
    found = [_existing(cfg) for cfg in configs]
    missing = [cfg.run_name for cfg, (state, _) in zip(configs, found, strict=True) if not _done(state)]
    if missing:
        raise CnnlabError(
            f"--collect: {len(missing)} of {len(configs)} runs are not finished: {', '.join(missing)}; "
            "run their shards (or the study without --shard) first"
        )
    return [d for _, d in found if d is not None]


def _compare(run_dirs: list[Path], out: Path, base: FitConfig, grid_text: str) -> Comparison:
    """The comparison of the study's runs, its README.md, and its figures in TensorBoard (the run study/<out>)."""
    shown = [d for d in run_dirs if has_epochs(d)]  # a run that diverged in its first epoch has no curve
    if not shown:
        raise CnnlabError("no run of the study finished an epoch; nothing to compare")
    board = board_dir(base.logdir, "study", out)
    comparison = compare_runs([str(d) for d in shown], out, Path(base.logdir), tensorboard=board)
    figures = "\n".join(f"![{p.name}]({p.name})" for p in comparison.files if p.suffix == ".png")
    runs = "\n".join(f"- `{d}`" for d in run_dirs)
    readme = (
        f"# cnnlab study\n\nGrid: {grid_text} from {base.seed}, {base.epochs} epochs.\n\n{comparison.table}\n"
        f"## Runs\n\n{runs}\n\n## Curves\n\n{figures}\n"
    )
    atomic_write_text(out / "README.md", readme)
    return comparison


def _report(out: Path, base: FitConfig, lang: str) -> Path:
    """The lab report of the study's runs (its output folder stands for them) in one language."""
    folder = out / f"report_{lang}"
    board = board_dir(base.logdir, "study", out) / folder.name
    write_report([str(out)], folder, lang=lang, logdir=Path(base.logdir), tensorboard=board)
    return folder


def _skipped(k: int, total: int, cfg: FitConfig, state: str, run_dir: Path) -> Event:
    return Event("skip", k, cfg.run_name, total=total, message=state, run_dir=str(run_dir))


def _train(todo: list[tuple[int, FitConfig]], total: int, on_event: Callable[[Event], None]) -> list[Path]:
    """Train (or resume, or skip) each run, in order; the ETA scales with images x epochs. A stop (SIGINT,
    SIGTERM: interrupts.py) ends the run in training at its epoch boundary, or comes between two runs."""
    with interrupts.watching() as stop:
        return _train_serially(todo, total, on_event, stop)


def _train_serially(
    todo: list[tuple[int, FitConfig]], total: int, on_event: Callable[[Event], None], stop: StopRequest
) -> list[Path]:
    run_dirs: list[Path] = []
    work_done, seconds_spent = 0.0, 0.0
    remaining = sum(c.frac * c.epochs for _, c in todo)
    for k, cfg in todo:
        state, run_dir = _existing(cfg)
        work = cfg.frac * cfg.epochs
        if _done(state) and run_dir is not None:
            on_event(_skipped(k, total, cfg, state, run_dir))
            run_dirs.append(run_dir)
            remaining -= work
            continue
        eta = seconds_spent / work_done * remaining if work_done else None
        how = "resuming" if state == "resume" else "training"
        on_event(Event("start", k, cfg.run_name, epochs=cfg.epochs, total=total, message=how, eta_s=eta))
        start = time.perf_counter()
        event, error = train_outcome(k, cfg.run_name, cfg.epochs, functools.partial(_fit, cfg, state, run_dir, stop))
        if isinstance(error, TrainingInterrupted):
            raise study_interrupted(error.reason, error.signum) from None
        if error is not None:  # one run at a time, a failure stops the study at once
            raise error
        event.total = total
        on_event(event)  # done, or diverged: a result too, and the grid goes on
        run_dir = Path(event.run_dir) if event.run_dir else None
        seconds_spent += time.perf_counter() - start
        work_done += work
        remaining -= work
        if run_dir is not None:
            run_dirs.append(run_dir)
    return run_dirs


def _fit(cfg: FitConfig, state: str, run_dir: Path | None, stop: StopRequest) -> FitResult:
    stop.check()  # a stop between two runs
    return fit(dataclasses.replace(cfg, resume=state == "resume"), resume_dir=run_dir)


def _train_parallel(
    todo: list[tuple[int, FitConfig]], total: int, jobs: int, jobs_per_gpu: int, on_event: Callable[[Event], None]
) -> list[Path]:
    """Train the runs not finished yet in worker processes, ``jobs`` at a time; run folders in grid order."""
    found: dict[int, Path] = {}
    tasks: list[Task] = []
    for k, cfg in todo:
        state, run_dir = _existing(cfg)
        if _done(state) and run_dir is not None:
            on_event(_skipped(k, total, cfg, state, run_dir))
            found[k] = run_dir
        else:
            tasks.append(Task(k, dataclasses.replace(cfg, resume=state == "resume"), run_dir))
    finals = run_parallel(tasks, jobs, on_event, jobs_per_gpu, total)
    failed: dict[str, list[str]] = {}  # message -> runs: one cause (a missing data folder, say) is said once
    for e in finals.values():
        if e.kind == "failed":
            failed.setdefault(e.message, []).append(e.name)
    if failed:
        causes = "; ".join(f"{', '.join(names)}: {message}" for message, names in failed.items())
        raise CnnlabError(f"{sum(map(len, failed.values()))} run(s) failed ({causes}); rerun the study to retry them")
    found |= {k: Path(e.run_dir) for k, e in finals.items() if e.run_dir}
    return [found[k] for k in sorted(found)]
