"""The original exercise's conclusions, each judged on cnnlab's findings by the same rule as every comparison.

Verdicts: confirmed, contradicted, not significant (the test cannot tell), one seed (no test possible),
mixed (the seeds disagree), untested (no matching runs). The claims' words are in the catalogs (claims.ID).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .experiments import Experiment
from .findings import Effect, Findings

_FROM_EFFECT = {
    "holds": "confirmed",
    "opposite": "contradicted",
    "not significant": "not_significant",
    "one seed": "one_seed",
}
CLOSE_POINTS = 0.03  # (c): "close" = the whole 95% interval of the accuracy difference within 3 points


@dataclass
class Claim:
    id: str
    verdict: str
    effect: Effect | None = None
    experiment: Experiment | None = None
    figure: str = ""  # for claims on one experiment: the figure key it rests on

    def because(self, w: Any) -> str:
        """The evidence, in the writer's language."""
        if self.effect is not None and self.id == "c_val_acc_close":  # judged by the interval against 3 points
            return w.t("claim_because.close", diff=w.diff(self.effect), ci=w.interval(self.effect),
                       evidence=w.evidence(self.effect))  # fmt: skip
        if self.effect is not None:
            return w.evidence(self.effect)
        if self.experiment is not None:
            e = self.experiment
            if self.figure == "overfitting":
                return w.t(
                    "claim_because.overfit",
                    name=w.name(e),
                    k=e.overfitting_seeds,
                    n=e.n,
                    rise=w.rises(e),
                )
            return w.t(
                "claim_because.figure",
                name=w.name(e),
                what=w.t(f"metric.{self.figure}"),
                value=w.stat(e, self.figure),
                seeds=w.seeds(e.n),
            )
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "verdict": self.verdict,
            "evidence": self.effect.to_dict() if self.effect else None,
            "experiment": self.experiment.key if self.experiment else None,
            "figure": self.figure or None,
        }


def _effect_claim(cid: str, effect: Effect | None) -> Claim:
    if effect is None:
        return Claim(cid, "untested")
    return Claim(cid, _FROM_EFFECT[effect.verdict], effect)


def judge(f: Findings) -> list[Claim]:
    out = []
    a = f.experiment(0.2, 0.0)
    if a is None:
        out += [Claim("a_train_acc_near_100", "untested"), Claim("a_overfits", "untested")]
    else:
        acc = a.stat("train_acc")
        out.append(
            Claim(
                "a_train_acc_near_100",
                "confirmed" if acc and acc.mean >= 0.99 else "contradicted",
                experiment=a,
                figure="train_acc",
            )
        )
        v = {"overfits": "confirmed", "none": "contradicted", "mixed": "mixed", "borderline": "not_significant"}[
            a.verdict
        ]
        out.append(Claim("a_overfits", v, experiment=a, figure="overfitting"))
    long = next((lr for lr in f.long_runs if lr.run.frac == 0.2 and lr.run.dropout == 0.0), None)
    if long is None or long.short is None:
        out.append(Claim("a_long_val_acc_higher", "untested"))
    else:
        from .findings import paired_effect

        out.append(_effect_claim("a_long_val_acc_higher", paired_effect(long.short, long.run, +1, which="last")))
    drop = f.comparison("dropout", frac=0.2)
    for cid, metric in (
        ("b_lowers_train_acc", "train_acc"),
        ("b_raises_train_loss", "train_loss"),
        ("b_lowers_val_loss", "val_loss"),
        ("b_raises_val_acc", "holdout_best"),
        ("b_narrows_gap", "gap_acc"),
    ):
        out.append(_effect_claim(cid, drop.effects.get(metric) if drop else None))
    data = f.comparison("frac", dropout=0.0)
    out.append(_effect_claim("c_lowers_val_loss", data.effects.get("val_loss") if data else None))
    e = data.primary if data else None
    if e is None or e.low is None or e.high is None:
        out.append(Claim("c_val_acc_close", "untested"))
    else:
        inside = e.low >= -CLOSE_POINTS and e.high <= CLOSE_POINTS
        outside = e.low > CLOSE_POINTS or e.high < -CLOSE_POINTS
        out.append(
            Claim("c_val_acc_close", "confirmed" if inside else "contradicted" if outside else "not_significant", e)
        )
    r = f.ranking
    if r is None or f.experiment(1.0, 0.5) is None:
        out.append(Claim("c_best_above_90", "untested"))
    else:
        best = r.order[0]
        acc = best.stat("holdout_best")
        right = (best.frac, best.dropout) == (1.0, 0.5) and acc is not None and acc.mean > 0.90
        sure = r.against_runner_up is not None and r.against_runner_up.verdict == "holds"
        verdict = (
            ("confirmed" if sure else _FROM_EFFECT[r.against_runner_up.verdict] if r.against_runner_up else "one_seed")
            if right
            else "contradicted"
        )
        out.append(Claim("c_best_above_90", verdict, r.against_runner_up))
    return out
