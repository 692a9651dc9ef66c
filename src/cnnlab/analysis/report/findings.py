"""The report's findings, computed from run records alone and rendered nowhere.

An *experiment* is one condition (data fraction, dropout, epochs, the other settings) with its seeds. Every
comparison between two experiments uses one rule (``verdict`` below): per-image exact McNemar on the 10,000
holdout images where both sides kept their predictions, Welch's t over seeds where each side has two or more,
and otherwise no test: a one-seed comparison, said as such.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import stats
from ..compare import Run
from .experiments import LONG_EPOCHS, Experiment, Stat, experiments_of

# --- comparing two experiments -------------------------------------------------------------------------------


@dataclass
class Effect:
    """One metric, two experiments: the difference, the test behind it and the verdict of the one rule."""

    metric: str
    wanted: int  # +1: the claim says the metric rises from base to other; -1: it falls
    before: Stat
    after: Stat
    difference: float  # after - before (the means; for McNemar, the pooled accuracies)
    test: str  # "exact McNemar" | "Welch t" | "none"
    seeds: tuple[int, int]
    verdict: str  # holds | opposite | not significant | one seed
    p_value: float | None = None
    low: float | None = None  # 95% interval of the difference (paired bootstrap or Welch)
    high: float | None = None
    pairs: int = 0  # seed pairs pooled (McNemar)
    images: int = 0  # paired images in all (McNemar)
    per_pair: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(difference: float, p_value: float | None, wanted: int) -> str:
    """The one rule for every comparison: a claim holds when its test gives p < 0.05 in the claimed direction."""
    if p_value is None:
        return "one seed"
    if p_value >= stats.ALPHA:
        return "not significant"
    return "holds" if difference * wanted > 0 else "opposite"


def _seed_pairs(base: Experiment, other: Experiment) -> list[tuple[int, int]]:
    """Indices of runs with the same seed on both sides (same seed: same data order, same initial weights)."""
    return [(i, other.seeds.index(s)) for i, s in enumerate(base.seeds) if s in other.seeds]


def _right(e: Experiment, i: int, which: str, split: str = "holdout") -> np.ndarray | None:
    p = e.predictions[i] if i < len(e.predictions) else None
    if not p or f"{which}_{split}" not in p:
        return None
    return np.asarray(p[f"{which}_{split}"]) == np.asarray(p[f"{split}_labels"])


def paired_effect(base: Experiment, other: Experiment, wanted: int, which: str = "best") -> Effect | None:
    """Holdout accuracy, image by image: exact McNemar pooled over the seed pairs (None without predictions)."""
    pairs = []
    per_pair = []
    for i, j in _seed_pairs(base, other):
        a, b = _right(base, i, which), _right(other, j, which)
        if a is None or b is None or a.shape != b.shape:
            continue
        pairs.append((a, b))
        t = stats.paired_test(a, b)
        per_pair.append({"seed": base.seeds[i]} | t.to_dict())
    if not pairs:
        return None
    pooled = stats.pooled_paired_test(pairs)
    return Effect(
        metric=f"holdout_{which}",
        wanted=wanted,
        before=Stat.of([p["acc_before"] for p in per_pair]) or Stat(0, None, 0),
        after=Stat.of([p["acc_after"] for p in per_pair]) or Stat(0, None, 0),
        difference=pooled.difference,
        test="exact McNemar",
        seeds=(base.n, other.n),
        verdict=verdict(pooled.difference, pooled.p_value, wanted),
        p_value=pooled.p_value,
        low=pooled.low,
        high=pooled.high,
        pairs=len(pairs),
        images=pooled.images,
        per_pair=per_pair,
    )


def seed_effect(base: Experiment, other: Experiment, metric: str, wanted: int) -> Effect | None:
    """A metric over seeds: Welch's t interval with two or more seeds a side, else a one-seed comparison."""
    a = [v for v in base.values.get(metric, []) if v is not None]
    b = [v for v in other.values.get(metric, []) if v is not None]
    if not a or not b:
        return None
    si = stats.seed_interval(a, b)
    before, after = Stat.of(a), Stat.of(b)
    assert before is not None and after is not None
    return Effect(
        metric=metric,
        wanted=wanted,
        before=before,
        after=after,
        difference=si.difference,
        test="none" if si.one_seed else "Welch t",
        seeds=(len(a), len(b)),
        verdict=verdict(si.difference, si.p_value, wanted),
        p_value=si.p_value,
        low=si.low,
        high=si.high,
    )


# What each comparison expects (the exercise's claims): metric -> the direction from base to other.
EXPECTED = {
    "dropout": {"holdout_best": +1, "val_loss": -1, "val_acc": +1, "train_loss": +1, "train_acc": -1, "gap_acc": -1},
    "frac": {"holdout_best": +1, "val_loss": -1, "val_acc": +1, "train_loss": +1, "train_acc": -1, "gap_acc": -1},
}


@dataclass
class Comparison:
    kind: str  # "dropout" or "frac": the one setting that differs
    base: Experiment
    other: Experiment
    effects: dict[str, Effect]

    @property
    def primary(self) -> Effect | None:
        """The generalization verdict: holdout accuracy image by image, else over seeds."""
        return self.effects.get("holdout_best")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.base.key,
            "other": self.other.key,
            "effects": {k: e.to_dict() for k, e in self.effects.items()},
        }


def compare(kind: str, base: Experiment, other: Experiment) -> Comparison:
    effects: dict[str, Effect] = {}
    for metric, wanted in EXPECTED[kind].items():
        effect = paired_effect(base, other, wanted) if metric == "holdout_best" else None
        effect = effect or seed_effect(base, other, metric, wanted)
        if effect is not None:
            effects[metric] = effect
    return Comparison(kind, base, other, effects)


def _others(e: Experiment, vary: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in e.settings.items() if k != vary))


def comparisons(experiments: list[Experiment]) -> list[Comparison]:
    """Every pair equal in all settings but dropout (base: the smaller dropout) or but frac (base: the smaller)."""
    out = []
    for vary in ("dropout", "frac"):
        groups: dict[Any, list[Experiment]] = defaultdict(list)
        for e in experiments:
            groups[_others(e, vary)].append(e)
        for members in groups.values():
            members.sort(key=lambda e: getattr(e, vary))
            out += [compare(vary, members[0], m) for m in members[1:] if getattr(m, vary) != getattr(members[0], vary)]
    return out


@dataclass
class Interaction:
    """How dropout's holdout gain changes with the data: the gain at the larger fraction minus at the smaller."""

    small: Comparison
    large: Comparison

    @property
    def difference(self) -> float | None:
        a, b = self.small.primary, self.large.primary
        return None if a is None or b is None else b.difference - a.difference

    def to_dict(self) -> dict[str, Any]:
        return {
            "dropout_gain_small": self.small.primary.difference if self.small.primary else None,
            "dropout_gain_large": self.large.primary.difference if self.large.primary else None,
            "fracs": [self.small.base.frac, self.large.base.frac],
            "difference": self.difference,
            "test": "none: the larger fraction has one seed per condition; the two gains are read side by side",
        }


def interaction(comps: list[Comparison]) -> Interaction | None:
    drop = sorted((c for c in comps if c.kind == "dropout" and c.primary), key=lambda c: c.base.frac)
    return Interaction(drop[0], drop[-1]) if len(drop) >= 2 and drop[0].base.frac != drop[-1].base.frac else None


@dataclass
class Ranking:
    """Experiments of the protocol's length, best first by holdout accuracy of the best checkpoint, with the
    winner tested against the runner-up."""

    order: list[Experiment]
    against_runner_up: Effect | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": [e.key for e in self.order],
            "holdout_best": {e.key: asdict(s) for e in self.order if (s := e.stat("holdout_best"))},
            "against_runner_up": self.against_runner_up.to_dict() if self.against_runner_up else None,
        }


def ranking(experiments: list[Experiment]) -> Ranking | None:
    ranked = [e for e in experiments if e.stat("holdout_best") is not None and e.epochs < LONG_EPOCHS]
    if len(ranked) < 2:
        return None
    ranked.sort(key=lambda e: -e.stat("holdout_best").mean)  # type: ignore[union-attr]
    best, second = ranked[0], ranked[1]
    effect = paired_effect(second, best, +1) or seed_effect(second, best, "holdout_best", +1)
    return Ranking(ranked, effect)


@dataclass
class LongRun:
    """A run of 400 epochs or more: its tail, what training past the minimum costs on the holdout images (its
    best checkpoint against its last, image by image), and the same setting's short run beside it."""

    run: Experiment
    short: Experiment | None
    best_vs_last: stats.PairedTest | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.run.key,
            "short": self.short.key if self.short else None,
            "best_vs_last": (self.best_vs_last.to_dict() | {"seeds": 1}) if self.best_vs_last else None,
        }


def long_runs(experiments: list[Experiment]) -> list[LongRun]:
    out = []
    for e in experiments:
        if e.epochs < LONG_EPOCHS:
            continue
        same = _others(e, "epochs")
        short = next(
            (s for s in experiments if s is not e and s.epochs < LONG_EPOCHS and _others(s, "epochs") == same), None
        )
        best, last = _right(e, 0, "best"), _right(e, 0, "last")
        test = stats.paired_test(best, last) if best is not None and last is not None else None
        out.append(LongRun(e, short, test))
    return out


@dataclass
class Findings:
    experiments: list[Experiment]
    comparisons: list[Comparison]
    interaction: Interaction | None
    ranking: Ranking | None
    long_runs: list[LongRun]

    def experiment(self, frac: float, dropout: float, epochs: int | None = None) -> Experiment | None:
        return next(
            (
                e
                for e in self.experiments
                if (e.frac, e.dropout) == (frac, dropout)
                and e.epochs == (epochs or e.epochs)
                and (epochs is not None or e.epochs < LONG_EPOCHS)
            ),
            None,
        )

    def comparison(self, kind: str, **fixed: float) -> Comparison | None:
        """E.g. comparison("dropout", frac=0.2) or comparison("frac", dropout=0.0); protocol-length runs only."""
        for c in self.comparisons:
            if (
                c.kind == kind
                and c.base.epochs < LONG_EPOCHS
                and all(getattr(c.base, k) == v for k, v in fixed.items())
            ):
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": {
                "tail_epochs": stats.TAIL_EPOCHS,
                "rise_threshold_pct": stats.RISE_THRESHOLD_PCT,
                "alpha": stats.ALPHA,
                "comparison": "per-image exact McNemar on the holdout images pooled over seed pairs where both sides "
                "kept predictions; else Welch's t over seeds (two or more seeds a side); else none (one seed)",
            },
            "experiments": [e.to_dict() for e in self.experiments],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "interaction": self.interaction.to_dict() if self.interaction else None,
            "ranking": self.ranking.to_dict() if self.ranking else None,
            "long_runs": [lr.to_dict() for lr in self.long_runs],
        }


def compute(runs: list[Run]) -> Findings:
    exps = experiments_of(runs)
    exps.sort(key=lambda e: (e.epochs >= LONG_EPOCHS, e.frac, e.dropout, e.epochs))
    comps = comparisons(exps)
    return Findings(exps, comps, interaction(comps), ranking(exps), long_runs(exps))
