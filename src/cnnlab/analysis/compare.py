"""``compare_runs``: learning curves on shared axes, a summary table and an overfitting verdict per run."""

from __future__ import annotations

import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import CnnlabError
from ..runs import (
    EXPERIMENT_SETTINGS,
    best_row,
    differing_settings,
    group_key,
    read_history,
    read_run,
    resolve_run,
    settings,
)
from ..tblog import write_board
from .stats import RISE_THRESHOLD_PCT, TAIL_EPOCHS, mean_std, tail_rise

OVERFIT_THRESHOLD = RISE_THRESHOLD_PCT  # percent: the tail this far above the smoothed minimum = overfitting


@dataclass
class Run:
    run_dir: Path
    label: str  # unique: the run name, plus the version when two share a name
    info: dict[str, Any]
    history: list[dict[str, float]]

    def setting(self, key: str) -> Any:
        return settings(self.info).get(key)

    @property
    def group(self) -> tuple[tuple[str, Any], ...]:
        """Every experiment setting but the seed: runs of one group with distinct seeds are averaged."""
        return group_key(self.info)


def load_runs(sources: list[str], logdir: Path = Path("tb_logs")) -> list[Run]:
    runs = []
    for src in sources:
        run_dir = resolve_run(src, logdir)
        history = read_history(run_dir)
        if not history:
            raise CnnlabError(f"{run_dir}: has no finished epoch yet; nothing to compare")
        runs.append(Run(run_dir, "", read_run(run_dir), history))
    names = [r.info.get("name", r.run_dir.parent.name) for r in runs]
    for r, name in zip(runs, names, strict=True):
        r.label = name if names.count(name) == 1 else f"{name}/{r.run_dir.name}"
    return runs


@dataclass
class Series:
    """One row of the table and one line of the figure: a run, or the mean of a group's seeds."""

    label: str
    runs: list[Run]

    @property
    def averaged(self) -> bool:
        return len(self.runs) > 1


def _describe(run: Run, keys: list[str]) -> str:
    return ", ".join(f"{k} {run.setting(k)}" for k in keys)


def series_of(runs: list[Run]) -> list[Series]:
    """Runs that share every experiment setting and have distinct seeds become one averaged series; any other
    run stands alone, labelled with the settings that tell it apart."""
    differ = [k for k in differing_settings(r.info for r in runs) if k not in ("frac", "dropout", "seed")]
    groups: dict[tuple[tuple[str, Any], ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.group].append(run)
    out = []
    for members in groups.values():
        seeds = [m.setting("seed") for m in members]
        if len(members) > 1 and len(set(map(repr, seeds))) == len(seeds):
            what = _describe(members[0], ["frac", "dropout", *differ])
            out.append(Series(f"{what} (mean of {len(members)} seeds: {', '.join(map(str, seeds))})", members))
        else:
            out += [Series(f"{m.label}" + (f" ({_describe(m, differ)})" if differ else ""), [m]) for m in members]
    return out


def _test_acc(info: dict[str, Any], which: str, split: str) -> float | None:
    test = info.get("test", {})
    if which in test:  # {"best": {"epoch": .., "holdout": {..}}, "last": {..}}
        return test[which].get(split, {}).get("acc")
    return test.get(split, {}).get("acc") if which == "last" else None  # run.json of cnnlab 0.1: last weights


def summarize(run: Run, threshold: float = OVERFIT_THRESHOLD) -> dict[str, Any]:
    h, last = run.history, run.history[-1]
    best_loss = best_row(h) or h[-1]
    tail = tail_rise([r["val_loss"] for r in h], threshold_pct=threshold)
    return {
        "run": run.label,
        "run_dir": str(run.run_dir),
        "frac": run.setting("frac"),
        "dropout": run.setting("dropout"),
        "epochs": last["epoch"],
        "seed": run.setting("seed"),
        "settings": {k: run.setting(k) for k in EXPERIMENT_SETTINGS},
        "final_val_loss": last["val_loss"],
        "final_val_acc": last["val_acc"],
        "best_val_loss": best_loss["val_loss"],
        "best_val_acc": max(r["val_acc"] for r in h),
        "min_val_loss_epoch": best_loss["epoch"],
        "final_train_loss": last["train_loss"],
        "final_train_acc": last["train_acc"],
        "gap_acc": last["train_acc"] - last["val_acc"],
        "gap_loss": last["val_loss"] - last["train_loss"],
        **{
            f"test_{split}_acc_{which}": _test_acc(run.info, which, split)
            for split in ("holdout", "official")
            for which in ("best", "last")
        },
        "val_loss_rise_pct": tail.rise_pct,  # the tail (median of the last k epochs) over the smoothed minimum
        "overfitting": tail.overfits,
        "overfitting_verdict": tail.verdict,  # overfits, none, or borderline (within noise of the threshold)
    }


_COLUMNS = [  # (key, header, format)
    ("run", "run", "{}"),
    ("frac", "frac", "{}"),
    ("dropout", "dropout", "{}"),
    ("epochs", "epochs", "{}"),
    ("seed", "seed", "{}"),
    ("final_val_loss", "val loss (final)", "{:.4f}"),
    ("best_val_loss", "val loss (best)", "{:.4f}"),
    ("min_val_loss_epoch", "epoch of min val loss", "{}"),
    ("final_val_acc", "val acc (final)", "{:.4f}"),
    ("best_val_acc", "val acc (best)", "{:.4f}"),
    ("final_train_acc", "train acc (final)", "{:.4f}"),
    ("gap_acc", "gap: train - val acc", "{:+.4f}"),
    ("gap_loss", "gap: val - train loss", "{:+.4f}"),
    ("test_holdout_acc_best", "holdout acc (best ckpt)", "{:.4f}"),
    ("test_holdout_acc_last", "holdout acc (last epoch)", "{:.4f}"),
    ("test_official_acc_best", "official test acc (best ckpt)", "{:.4f}"),
    ("test_official_acc_last", "official test acc (last epoch)", "{:.4f}"),
    ("overfitting", "overfitting", "{}"),
]
_AVERAGED = [k for k, _, _ in _COLUMNS if k not in ("run", "frac", "dropout", "epochs", "seed", "overfitting")]


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    if key == "overfitting":
        if v:
            return f"yes (+{row['val_loss_rise_pct']:.0f}%)"
        return (
            f"borderline ({row['val_loss_rise_pct']:+.0f}%)" if row.get("overfitting_verdict") == "borderline" else "no"
        )
    if isinstance(v, dict):  # mean and std over seeds
        if v["mean"] is None:
            return "-"
        if fmt == "{}":  # a count (the epoch of minimum validation loss): its mean to one decimal
            mean, std = f"{v['mean']:.1f}", None if v["std"] is None else f"{v['std']:.1f}"
        else:
            mean, std = fmt.format(v["mean"]), None if v["std"] is None else f"{v['std']:.4f}"
        return mean if std is None else f"{mean} ± {std}"
    return fmt.format(v)


def markdown_table(rows: list[dict[str, Any]], threshold: float = OVERFIT_THRESHOLD) -> str:
    cols = [c for c in _COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r, k, f) for k, _, f in cols) + " |" for r in rows]
    note = (
        f"\nOverfitting: the median of the last {TAIL_EPOCHS} validation losses is more than {threshold:g}% above the "
        f"minimum of their running {TAIL_EPOCHS}-epoch median by more than two jackknife standard errors over the "
        "tail ('borderline' within them: one epoch alone never decides). Gaps are taken "
        "at the last epoch; train metrics are running means with dropout active, as Keras reports. Test accuracy "
        "is given for the best checkpoint (the epoch of lowest validation loss, which `export` and `evaluate` use "
        "by default) and for the last epoch's weights."
    )
    if any(isinstance(r.get("final_val_loss"), dict) for r in rows):
        note += " Rows marked 'mean of N seeds' show mean ± std over runs that differ only in their seed."
    note += "\n"
    return "\n".join(lines) + "\n" + note


def table_row(series: Series, rows: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    """A run's own row, or for an averaged series the mean and std over its seeds of every figure."""
    members = [rows[r.run_dir] for r in series.runs]
    if not series.averaged:
        return members[0] | {"run": series.label}
    first = members[0]
    agg: dict[str, Any] = {
        "run": series.label,
        "frac": first["frac"],
        "dropout": first["dropout"],
        "epochs": first["epochs"],
        "seed": ", ".join(str(m["seed"]) for m in members),
        "settings": first["settings"],
        "runs": [m["run_dir"] for m in members],
    }
    for key in _AVERAGED:
        vals = [m[key] for m in members if m.get(key) is not None]
        mean, std = mean_std(vals) if vals else (None, None)
        agg[key] = {"mean": mean, "std": std}  # std None: a figure only one seed has
    agg["overfitting"] = sum(m["overfitting"] for m in members) > len(members) / 2
    agg["val_loss_rise_pct"] = statistics.fmean(m["val_loss_rise_pct"] for m in members)
    return agg


@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    table: str  # Markdown
    files: list[Path]


def compare_runs(
    sources: list[str],
    out: str | os.PathLike[str] = "comparison",
    logdir: Path = Path("tb_logs"),
    threshold: float = OVERFIT_THRESHOLD,
    log_loss: bool = False,
    tensorboard: Path | None = None,  # also write the figures and the table as this TensorBoard run
) -> Comparison:
    """Curves (shared axes), per-run overfitting charts, summary.md and summary.json for two or more runs."""
    from ..plots import plot_run_curves, plot_runs

    if not sources:
        raise CnnlabError("compare needs runs (run folders or names)")
    if not (threshold > 0 and math.isfinite(threshold)):
        raise CnnlabError(f"--threshold {threshold}: must be a positive percentage, e.g. 10")
    runs = load_runs(sources, logdir)
    out = Path(out)
    rows = {r.run_dir: summarize(r, threshold) for r in runs}
    series = series_of(runs)
    table_rows = [table_row(s, rows) for s in series]
    files = [plot_runs(series, out / "curves.png", log_loss=log_loss)]
    for run in runs:
        safe = run.label.replace("/", "_")
        files.append(plot_run_curves(run, out / f"curves_{safe}.png", log_loss=log_loss))
    table = markdown_table(table_rows, threshold)
    atomic_write_text(out / "summary.md", table)
    atomic_write_json(
        out / "summary.json", {"threshold_pct": threshold, "runs": list(rows.values()), "table": table_rows}
    )
    if tensorboard is not None:
        write_board(tensorboard, files, {"summary": table})
    return Comparison(table_rows, table, [*files, out / "summary.md", out / "summary.json"])
