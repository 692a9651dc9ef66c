"""Findings: the exercise's questions answered from the runs, each with the figures it rests on.

Every finding is computed from the measurements; its direction (``holds``) and its sentence both follow the
numbers, in English and Japanese. With two or more seeds on both sides of a comparison, a difference smaller
than the larger of the two seed standard deviations is "not distinguishable from seed-to-seed variation".
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from .compare import OVERFIT_THRESHOLD, Series, summarize

LANGS = ("en", "ja")


@dataclass
class Stat:
    """A figure of a series: one run's value, or the mean and sample std over a group's seeds."""

    mean: float
    std: float | None = None  # None for a single run
    n: int = 1

    def fmt(self, digits: int = 4) -> str:
        text = f"{self.mean:.{digits}f}"
        return text if self.std is None else f"{text} ± {self.std:.{digits}f}"


@dataclass
class SeriesStats:
    label: str
    frac: float
    dropout: float
    epochs: int
    seeds: list[Any]
    settings: dict[str, Any]
    figures: dict[str, Stat]
    run_dirs: list[str]

    def __getitem__(self, key: str) -> Stat:
        return self.figures[key]


_FIGURES = (
    "final_train_loss",
    "final_train_acc",
    "final_val_loss",
    "final_val_acc",
    "best_val_loss",
    "best_val_acc",
    "min_val_loss_epoch",
    "gap_acc",
    "gap_loss",
    "val_loss_rise_pct",
)


def series_stats(series: list[Series], threshold: float = OVERFIT_THRESHOLD) -> list[SeriesStats]:
    out = []
    for s in series:
        rows = [summarize(r, threshold) for r in s.runs]
        figures = {}
        for key in _FIGURES:
            vals = [float(r[key]) for r in rows]
            figures[key] = Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))
        first = rows[0]
        out.append(
            SeriesStats(
                s.label,
                float(first["frac"]),
                float(first["dropout"]),
                int(first["settings"].get("epochs") or first["epochs"]),
                [r["seed"] for r in rows],
                first["settings"],
                figures,
                [r["run_dir"] for r in rows],
            )
        )
    return out


@dataclass
class Finding:
    id: str
    holds: bool
    scope: dict[str, Any]  # what the finding is about, e.g. {"frac": 0.2} or {"series": "..."}
    figures: dict[str, Any]  # the numbers it rests on
    sentence: dict[str, str]  # per language
    distinguishable: bool | None = None  # None: one seed per side, no spread to compare with
    series: list[str] = field(default_factory=list)

    def to_dict(self, lang: str | None = None) -> dict[str, Any]:
        d = asdict(self)
        if lang:
            d["sentence"] = self.sentence[lang]
        return d


def _pct(x: float) -> str:
    return f"{100 * x:g}"


# --- the comparisons -----------------------------------------------------------------------------------------


@dataclass
class _Effect:
    before: Stat
    after: Stat
    wanted_lower: bool  # the claim says the figure goes down

    @property
    def delta(self) -> float:
        return self.after.mean - self.before.mean

    @property
    def direction_holds(self) -> bool:
        return self.delta < 0 if self.wanted_lower else self.delta > 0

    @property
    def spread(self) -> float | None:
        if self.before.std is None or self.after.std is None:
            return None
        return max(self.before.std, self.after.std)

    @property
    def distinguishable(self) -> bool | None:
        return None if self.spread is None else abs(self.delta) >= self.spread

    @property
    def holds(self) -> bool:
        return self.direction_holds and self.distinguishable is not False

    def figures(self) -> dict[str, Any]:
        return {
            "before": asdict(self.before),
            "after": asdict(self.after),
            "difference": self.delta,
            "seed_spread": self.spread,
        }


_FIGURE_NAMES = {
    "final_val_loss": ("validation loss", "検証損失"),
    "final_train_loss": ("training loss", "訓練損失"),
    "final_train_acc": ("training accuracy", "訓練精度"),
    "final_val_acc": ("validation accuracy", "検証精度"),
    "gap_acc": ("train - validation accuracy gap", "訓練精度と検証精度の差"),
}


def _effect_sentence(
    effect: _Effect, key: str, what: dict[str, tuple[str, str]], ctx: dict[str, Any]
) -> dict[str, str]:
    """what: lang -> (verb phrase if it holds, if not); ctx: "en" -> subject, "ja" -> (if it holds, if not, neutral)."""
    b, a = effect.before.fmt(), effect.after.fmt()
    name_en, name_ja = _FIGURE_NAMES[key]
    if effect.distinguishable is False:
        diff, spread = f"{effect.delta:+.4f}", f"{effect.spread:.4f}"
        return {
            "en": f"{ctx['en']}: the change in {name_en} ({b} -> {a}, difference {diff}) is smaller than the "
            f"seed-to-seed spread ({spread}): not distinguishable from seed-to-seed variation.",
            "ja": f"{ctx['ja'][2]}の{name_ja}の変化（{b} → {a}、差 {diff}）はシード間のばらつき（{spread}）より"
            "小さく、シードによる揺らぎと区別できない。",
        }
    i = 0 if effect.direction_holds else 1
    return {
        "en": f"{ctx['en']}: {what['en'][i]} ({b} -> {a}).",
        "ja": f"{ctx['ja'][i]}、{what['ja'][i]}（{b} → {a}）。",
    }


# id: (figure, does the claim say it goes down?, {lang: (sentence if it holds, sentence if it does not)})
_DROPOUT_CLAIMS: dict[str, tuple[str, bool, dict[str, tuple[str, str]]]] = {
    "dropout_lowers_val_loss": (
        "final_val_loss",
        True,
        {
            "en": ("dropout lowered the validation loss", "dropout did not lower the validation loss"),
            "ja": ("検証損失は下がった", "検証損失は下がらなかった"),
        },
    ),
    "dropout_raises_train_loss": (
        "final_train_loss",
        False,
        {
            "en": ("dropout raised the training loss", "dropout did not raise the training loss"),
            "ja": ("訓練損失は上がった", "訓練損失は上がらなかった"),
        },
    ),
    "dropout_lowers_train_acc": (
        "final_train_acc",
        True,
        {
            "en": ("dropout lowered the training accuracy", "dropout did not lower the training accuracy"),
            "ja": ("訓練精度は下がった", "訓練精度は下がらなかった"),
        },
    ),
    "dropout_raises_val_acc": (
        "final_val_acc",
        False,
        {
            "en": ("dropout raised the validation accuracy", "dropout did not raise the validation accuracy"),
            "ja": ("検証精度は上がった", "検証精度は上がらなかった"),
        },
    ),
    "dropout_narrows_gap": (
        "gap_acc",
        True,
        {
            "en": (
                "dropout narrowed the train - validation accuracy gap",
                "dropout did not narrow the train - validation accuracy gap",
            ),
            "ja": ("訓練精度と検証精度の差は縮まった", "訓練精度と検証精度の差は縮まらなかった"),
        },
    ),
}

_DATA_CLAIMS: dict[str, tuple[str, bool, dict[str, tuple[str, str]]]] = {
    "more_data_lowers_val_loss": (
        "final_val_loss",
        True,
        {
            "en": ("more data lowered the validation loss", "more data did not lower the validation loss"),
            "ja": ("検証損失は下がった", "検証損失は下がらなかった"),
        },
    ),
    "more_data_raises_val_acc": (
        "final_val_acc",
        False,
        {
            "en": ("more data raised the validation accuracy", "more data did not raise the validation accuracy"),
            "ja": ("検証精度は上がった", "検証精度は上がらなかった"),
        },
    ),
    "more_data_narrows_gap": (
        "gap_acc",
        True,
        {
            "en": (
                "more data narrowed the train - validation accuracy gap",
                "more data did not narrow the train - validation accuracy gap",
            ),
            "ja": ("訓練精度と検証精度の差は縮まった", "訓練精度と検証精度の差は縮まらなかった"),
        },
    ),
}


def _others(s: SeriesStats, *ignore: str) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, repr(v)) for k, v in s.settings.items() if k not in ("seed", *ignore)))


def overfitting(s: SeriesStats, threshold: float) -> Finding:
    ep, best, final, rise = (
        s["min_val_loss_epoch"].mean,
        s["best_val_loss"].fmt(),
        s["final_val_loss"].fmt(),
        s["val_loss_rise_pct"].mean,
    )
    holds = rise > threshold
    single = s["min_val_loss_epoch"].std is None
    epoch, epoch_ja = (f"{ep:.0f}", f"{ep:.0f}") if single else (f"{ep:.1f} (mean)", f"{ep:.1f}（平均）")
    if holds:
        en = (
            f"{s.label}: the validation loss reached its minimum {best} at epoch {epoch}, then rose to {final} "
            f"at epoch {s.epochs} (+{rise:.0f}%, above the {threshold:g}% threshold): overfitting from about "
            f"epoch {epoch} on."
        )
        ja = (
            f"{s.label}：検証損失はエポック {epoch_ja} で最小値 {best} となり、その後エポック {s.epochs} では {final} "
            f"まで上昇した（+{rise:.0f}%、しきい値 {threshold:g}% を超える）。"
            f"エポック {epoch_ja} 前後から過学習している。"
        )
    else:
        en = (
            f"{s.label}: the final validation loss {final} is {rise:+.0f}% from its minimum {best} (epoch {epoch}), "
            f"within the {threshold:g}% threshold: no overfitting by this criterion."
        )
        ja = (
            f"{s.label}：最終エポックの検証損失 {final} は最小値 {best}（エポック {epoch_ja}）から {rise:+.0f}% に"
            f"とどまり、しきい値 {threshold:g}% 以内のため、この基準では過学習とは言えない。"
        )
    figures = {
        "min_val_loss_epoch": asdict(s["min_val_loss_epoch"]),
        "best_val_loss": asdict(s["best_val_loss"]),
        "final_val_loss": asdict(s["final_val_loss"]),
        "rise_pct": rise,
        "threshold_pct": threshold,
    }
    return Finding("overfitting", holds, {"series": s.label}, figures, {"en": en, "ja": ja}, series=[s.label])


def _pairs(stats: list[SeriesStats], vary: str) -> list[tuple[SeriesStats, SeriesStats]]:
    """Pairs of series equal in every setting except ``vary``: (the smallest value, each larger value)."""
    groups: dict[Any, list[SeriesStats]] = {}
    for s in stats:
        groups.setdefault(_others(s, vary), []).append(s)
    pairs = []
    for members in groups.values():
        members.sort(key=lambda s: getattr(s, vary))
        pairs += [(members[0], m) for m in members[1:] if getattr(m, vary) != getattr(members[0], vary)]
    return pairs


def compute_findings(stats: list[SeriesStats], threshold: float = OVERFIT_THRESHOLD) -> list[Finding]:
    findings = [overfitting(s, threshold) for s in stats]
    for base, other in _pairs(stats, "dropout"):
        scope = {"frac": base.frac, "dropout": [base.dropout, other.dropout]}
        p, d0, d1 = _pct(base.frac), f"{base.dropout:g}", f"{other.dropout:g}"
        change = f"ドロップアウトを {d1} に" if base.dropout == 0 else f"ドロップアウトを {d0} から {d1} に"
        ctx = {
            "en": f"{p}% of the data, dropout {d0} -> {d1}",
            "ja": (f"データ {p}% で{change}すると", f"データ {p}% で{change}しても", f"データ {p}% で{change}したとき"),
        }
        findings += _claims(_DROPOUT_CLAIMS, base, other, scope, ctx)
    for base, other in _pairs(stats, "frac"):
        scope = {"dropout": base.dropout, "frac": [base.frac, other.frac]}
        p0, p1, d = _pct(base.frac), _pct(other.frac), f"{base.dropout:g}"
        where = "ドロップアウトなしで" if base.dropout == 0 else f"ドロップアウト {d} で"
        more = f"{where}データを {p0}% から {p1}% に増や"
        ctx = {"en": f"dropout {d}, data {p0}% -> {p1}%", "ja": (f"{more}すと", f"{more}しても", f"{more}したとき")}
        findings += _claims(_DATA_CLAIMS, base, other, scope, ctx)
    if len(stats) > 1:
        findings.append(best_model(stats))
    return findings


def _claims(
    claims: dict[str, Any], base: SeriesStats, other: SeriesStats, scope: dict[str, Any], ctx: dict[str, Any]
) -> list[Finding]:
    out = []
    for fid, (key, lower, texts) in claims.items():
        effect = _Effect(base[key], other[key], lower)
        sentence = _effect_sentence(effect, key, texts, ctx)
        out.append(
            Finding(
                fid,
                effect.holds,
                scope | {"figure": key},
                effect.figures(),
                sentence,
                effect.distinguishable,
                [base.label, other.label],
            )
        )
    return out


def best_model(stats: list[SeriesStats]) -> Finding:
    by_loss = min(stats, key=lambda s: s["best_val_loss"].mean)
    by_acc = max(stats, key=lambda s: s["best_val_acc"].mean)
    figures: dict[str, Any] = {
        s.label: {"best_val_loss": asdict(s["best_val_loss"]), "best_val_acc": asdict(s["best_val_acc"])} for s in stats
    }
    loss_txt, acc_txt = by_loss["best_val_loss"].fmt(), by_acc["best_val_acc"].fmt()
    if by_loss is by_acc:
        en = (
            f"The best model is {by_loss.label}: the lowest validation loss ({loss_txt}) and the highest validation "
            f"accuracy ({acc_txt}) of all runs compared."
        )
        ja = (
            f"最も良いモデルは {by_loss.label} で、比較したなかで検証損失が最も低く（{loss_txt}）、"
            f"検証精度も最も高い（{acc_txt}）。"
        )
    else:
        en = (
            f"By validation loss the best model is {by_loss.label} ({loss_txt}); by validation accuracy it is "
            f"{by_acc.label} ({acc_txt}): the two criteria disagree."
        )
        ja = (
            f"検証損失で選ぶと最良は {by_loss.label}（{loss_txt}）、検証精度で選ぶと {by_acc.label}（{acc_txt}）で、"
            "二つの基準で結論が分かれた。"
        )
    figures |= {"by_val_loss": by_loss.label, "by_val_acc": by_acc.label}
    return Finding("best_model", True, {}, figures, {"en": en, "ja": ja}, series=[by_loss.label, by_acc.label])
