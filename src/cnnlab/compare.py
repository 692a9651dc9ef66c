"""``compare_runs``: learning curves on shared axes, a summary table and an overfitting verdict per run."""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json, atomic_write_text
from .errors import CnnlabError
from .runs import read_history, read_run, resolve_run

OVERFIT_THRESHOLD = 10.0  # percent: final validation loss this far above its minimum = overfitting
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")


@dataclass
class Run:
    run_dir: Path
    label: str  # unique: the run name, plus the version when two share a name
    info: dict[str, Any]
    history: list[dict[str, float]]

    def setting(self, key: str) -> Any:
        return self.info.get("hparams", {}).get(key)

    @property
    def group(self) -> str:
        """Runs that differ only in their seed share a group (their curves are averaged)."""
        return f"frac{self.setting('frac')}_drop{self.setting('dropout')}"


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


def summarize(run: Run, threshold: float = OVERFIT_THRESHOLD) -> dict[str, Any]:
    h, last = run.history, run.history[-1]
    best_loss = min(h, key=lambda r: r["val_loss"])
    rise = 100 * (last["val_loss"] / best_loss["val_loss"] - 1) if best_loss["val_loss"] > 0 else 0.0
    test = run.info.get("test", {})
    return {
        "run": run.label,
        "run_dir": str(run.run_dir),
        "frac": run.setting("frac"),
        "dropout": run.setting("dropout"),
        "epochs": last["epoch"],
        "seed": run.setting("seed"),
        "final_val_loss": last["val_loss"],
        "final_val_acc": last["val_acc"],
        "best_val_loss": best_loss["val_loss"],
        "best_val_acc": max(r["val_acc"] for r in h),
        "min_val_loss_epoch": best_loss["epoch"],
        "final_train_loss": last["train_loss"],
        "final_train_acc": last["train_acc"],
        "gap_acc": last["train_acc"] - last["val_acc"],
        "gap_loss": last["val_loss"] - last["train_loss"],
        "test_holdout_acc": test.get("holdout", {}).get("acc"),
        "test_official_acc": test.get("official", {}).get("acc"),
        "val_loss_rise_pct": rise,
        "overfitting": rise > threshold,
    }


_COLUMNS = [  # (key, header, format)
    ("run", "run", "{}"), ("frac", "frac", "{}"), ("dropout", "dropout", "{}"), ("epochs", "epochs", "{}"),
    ("seed", "seed", "{}"), ("final_val_loss", "val loss (final)", "{:.4f}"),
    ("best_val_loss", "val loss (best)", "{:.4f}"), ("min_val_loss_epoch", "epoch of min val loss", "{}"),
    ("final_val_acc", "val acc (final)", "{:.4f}"), ("best_val_acc", "val acc (best)", "{:.4f}"),
    ("final_train_acc", "train acc (final)", "{:.4f}"), ("gap_acc", "gap: train - val acc", "{:+.4f}"),
    ("gap_loss", "gap: val - train loss", "{:+.4f}"), ("test_holdout_acc", "test acc (holdout)", "{:.4f}"),
    ("test_official_acc", "test acc (official)", "{:.4f}"), ("overfitting", "overfitting", "{}"),
]  # fmt: skip


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    if key == "overfitting":
        return f"yes (+{row['val_loss_rise_pct']:.0f}%)" if v else "no"
    if isinstance(v, dict):  # mean and std over seeds
        return "-" if v["mean"] is None else f"{fmt.format(v['mean'])} ± {v['std']:.4f}"
    return fmt.format(v)


def markdown_table(rows: list[dict[str, Any]], threshold: float = OVERFIT_THRESHOLD) -> str:
    cols = [c for c in _COLUMNS if any(c[0] in r for r in rows)]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r, k, f) for k, _, f in cols) + " |" for r in rows]
    note = (
        f"\nOverfitting: the final validation loss is more than {threshold:g}% above its minimum. Gaps are taken "
        "at the last epoch; train metrics are running means with dropout active, as Keras reports.\n"
    )
    return "\n".join(lines) + "\n" + note


def aggregate_seeds(rows: list[dict[str, Any]], runs: list[Run]) -> list[dict[str, Any]]:
    """One row per setting (frac, dropout) with mean and std over its seeds."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, run in zip(rows, runs, strict=True):
        groups[run.group].append(row)
    out = []
    for group, members in groups.items():
        agg: dict[str, Any] = {"run": f"{group} ({len(members)} seeds)", "frac": members[0]["frac"],
                               "dropout": members[0]["dropout"], "epochs": members[0]["epochs"]}  # fmt: skip
        for key, _, _ in _COLUMNS[5:-1]:
            vals = [m[key] for m in members if m.get(key) is not None]
            agg[key] = {"mean": statistics.fmean(vals) if vals else None,
                        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}  # fmt: skip
        agg["overfitting"] = sum(m["overfitting"] for m in members) > len(members) / 2
        agg["val_loss_rise_pct"] = statistics.fmean(m["val_loss_rise_pct"] for m in members)
        out.append(agg)
    return out


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
    min_runs: int = 2,  # a study of one setting still gets its table and figures
) -> Comparison:
    """Curves (shared axes), per-run overfitting charts, summary.md and summary.json for two or more runs."""
    from .plots import plot_run_curves, plot_runs

    if len(sources) < min_runs:
        raise CnnlabError("compare needs two or more runs (run folders or names); give another RUN")
    if not (threshold > 0 and math.isfinite(threshold)):
        raise CnnlabError(f"--threshold {threshold}: must be a positive percentage, e.g. 10")
    runs = load_runs(sources, logdir)
    out = Path(out)
    rows = [summarize(r, threshold) for r in runs]
    seeds_per_group = max(sum(r.group == g for r in runs) for g in {r.group for r in runs})
    table_rows = aggregate_seeds(rows, runs) if seeds_per_group > 1 else rows
    files = [plot_runs(runs, out / "curves.png", log_loss=log_loss, bands=seeds_per_group > 1)]
    for run in runs:
        safe = run.label.replace("/", "_")
        files.append(plot_run_curves(run, out / f"curves_{safe}.png", log_loss=log_loss))
    table = markdown_table(table_rows, threshold)
    atomic_write_text(out / "summary.md", table)
    payload = {"threshold_pct": threshold, "runs": rows} | ({"settings": table_rows} if seeds_per_group > 1 else {})
    atomic_write_json(out / "summary.json", json.loads(json.dumps(payload)))
    return Comparison(table_rows, table, [*files, out / "summary.md", out / "summary.json"])
