"""The report's experiments: runs equal in every setting but the seed, with each seed's figures (tail means, test
accuracies, final-epoch values, the overfitting measure), computed from run records alone and rendered nowhere."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from ...runs import EXPERIMENT_SETTINGS, read_predictions, settings
from .. import stats
from ..compare import Run

# The metrics a comparison looks at: (key, the direction the exercise expects for "better", described in the
# catalogs under metric.KEY). Tail values are the mean of the last k epochs of each seed's curve.
TAIL_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "gap_acc")
LONG_EPOCHS = 400  # a run this long is a "long run" (the exercise's 400 and 4,000)


@dataclass
class Stat:
    """A figure of an experiment: the mean over its seeds, their sample std (None with one seed), how many."""

    mean: float
    std: float | None
    n: int

    @staticmethod
    def of(values: list[float]) -> Stat | None:
        vals = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not vals:
            return None
        return Stat(*stats.mean_std(vals), len(vals))


@dataclass
class Experiment:
    key: str  # stable, e.g. "frac0.2_drop0.5_e40"
    frac: float
    dropout: float
    epochs: int
    settings: dict[str, Any]  # every experiment setting but the seed
    seeds: list[int]
    run_dirs: list[str]
    train_images: int
    val_images: int
    batch_size: int
    tails: list[stats.TailRise]  # per seed
    values: dict[str, list[float | None]]  # per seed: tail means, test accuracies, final-epoch figures
    threads: list[int | None]
    seconds: list[float]  # training time per seed
    nonfinite_epoch: int | None = None
    runs: list[Run] = field(default_factory=list, repr=False)
    predictions: list[dict[str, Any] | None] = field(default_factory=list, repr=False)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_images / self.batch_size) if self.train_images else 0

    @property
    def overfitting_seeds(self) -> int:
        return sum(t.overfits for t in self.tails)

    @property
    def verdict(self) -> str:
        """overfits, none or borderline when every seed says so; mixed when the seeds disagree."""
        verdicts = {t.verdict for t in self.tails}
        return verdicts.pop() if len(verdicts) == 1 else "mixed"

    @property
    def min_epoch(self) -> float:
        """Where the smoothed validation loss bottoms out: the median over seeds of each seed's epoch."""
        return float(statistics.median(t.min_epoch for t in self.tails))

    def stat(self, key: str) -> Stat | None:
        return Stat.of([v for v in self.values.get(key, []) if v is not None])

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "frac": self.frac,
            "dropout": self.dropout,
            "epochs": self.epochs,
            "seeds": self.seeds,
            "runs": self.run_dirs,
            "train_images": self.train_images,
            "val_images": self.val_images,
            "steps_per_epoch": self.steps_per_epoch,
            "overfitting": {
                "verdict": self.verdict,
                "seeds_overfitting": self.overfitting_seeds,
                "seeds": self.n,
                "rule": "median of the last k validation losses more than threshold_pct above the minimum of their "
                "running k-epoch median, by more than two jackknife standard errors (else borderline)",
                "min_epoch_median": self.min_epoch,
                "min_step_median": self.min_epoch * self.steps_per_epoch,
                "per_seed": [t.to_dict() for t in self.tails],
            },
            "figures": {k: asdict(s) for k in self.values if (s := self.stat(k)) is not None},
            "per_seed": {k: v for k, v in self.values.items()},
            "nonfinite_epoch": self.nonfinite_epoch,
        }


def _tail(history: list[dict[str, float]], key: str, k: int) -> float | None:
    vals = [r[key] for r in history[-k:] if key in r and math.isfinite(r[key])]
    return statistics.fmean(vals) if vals else None


def _test_acc(info: dict[str, Any], which: str, split: str) -> float | None:
    acc = info.get("test", {}).get(which, {}).get(split, {}).get("acc")
    return None if acc is None else float(acc)


def _experiment_key(s: dict[str, Any]) -> str:
    return f"frac{s.get('frac')}_drop{s.get('dropout')}_e{s.get('epochs')}"


def experiments_of(runs: list[Run]) -> list[Experiment]:
    """Runs equal in every experiment setting but the seed make one experiment (first seen, first listed)."""
    groups: dict[tuple[tuple[str, Any], ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.group].append(run)
    out = []
    for members in groups.values():
        seen: dict[Any, Run] = {}
        for m in members:  # one run per seed: the later record of a seed replaces an earlier one
            seen[m.setting("seed")] = m
        members = list(seen.values())
        out.append(_experiment(members))
    keys = [e.key for e in out]
    for e in out:  # experiments that differ in a setting beyond frac/dropout/epochs keep distinct keys
        if keys.count(e.key) > 1:
            extra = "_".join(f"{k}{v}" for k, v in sorted(e.settings.items()) if k not in ("frac", "dropout", "epochs"))
            e.key = f"{e.key}_{extra}"
    return out


def _experiment(members: list[Run]) -> Experiment:
    first = members[0]
    s = {k: v for k, v in settings(first.info).items() if k in EXPERIMENT_SETTINGS and k != "seed"}
    split = first.info.get("split", {})
    tails, values = [], defaultdict(list)
    for run in members:
        h = run.history
        losses = [r["val_loss"] for r in h]
        t = stats.tail_rise(losses)
        tails.append(t)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_eval_loss", "train_eval_acc"):
            values[key].append(_tail(h, key, t.k))
        ta, va = values["train_acc"][-1], values["val_acc"][-1]
        values["gap_acc"].append(None if ta is None or va is None else ta - va)
        for which in ("best", "last"):
            for where in ("holdout", "official"):
                values[f"{where}_{which}"].append(_test_acc(run.info, which, where))
        last = h[-1]
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            values[f"final_{key}"].append(last.get(key))
        values["min_val_loss"].append(t.smoothed_min)
    return Experiment(
        key=_experiment_key(s),
        frac=float(s.get("frac", 0)),
        dropout=float(s.get("dropout", 0)),
        epochs=int(s.get("epochs") or len(first.history)),
        settings=s,
        seeds=[r.setting("seed") for r in members],
        run_dirs=[str(r.run_dir) for r in members],
        train_images=int(split.get("train") or 0),
        val_images=int(split.get("val") or 0),
        batch_size=int(s.get("batch_size") or 32),
        tails=tails,
        values=dict(values),
        threads=[r.setting("threads") for r in members],
        seconds=[float(sum(r.info.get("epoch_seconds", []))) for r in members],
        nonfinite_epoch=next((r.info["nonfinite_epoch"] for r in members if r.info.get("nonfinite_epoch")), None),
        runs=members,
        predictions=[read_predictions(r.run_dir) for r in members],
    )
