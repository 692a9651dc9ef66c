"""Sections 1, 2, 4 and 5 of the report: the objective, the method, the discussion and the conclusion."""

from __future__ import annotations

import math
from typing import Any

from .. import stats
from .claims import Claim
from .findings import Comparison
from .layer import Layer
from .writer import Section, Writer, table_block

# --- 1. objective --------------------------------------------------------------------------------------------


def objective(w: Writer, ctx: dict[str, Any]) -> Section:
    t = w.t
    s = Section(t("objective.title"))
    s.p(t("objective.text"))
    s.p(t("objective.questions"))
    return s


# --- 2. method -----------------------------------------------------------------------------------------------


def method(w: Writer, ctx: dict[str, Any]) -> Section:
    t, f = w.t, w.f
    s = Section(t("method.title"))
    s.h3(t("method.data_title"))
    s.p(t("method.data"))
    s.p(t("method.model", params=f"{ctx['params']:,}"))
    s.h3(t("method.training_title"))
    rows = []
    for e in f.experiments:
        per_run = sum(e.seconds) / max(1, len(e.seconds))
        threads = sorted({x for x in e.threads if x is not None})
        rows.append(
            [
                w.name(e),
                f"{e.train_images:,} / {e.val_images:,}",
                str(e.epochs),
                ", ".join(map(str, e.seeds)),
                f"{e.steps_per_epoch:,}",
                ", ".join(map(str, threads)) or "-",
                w.duration(per_run),
            ]
        )
    s.p(t("method.training", table=w.num.t("setup"), lr=ctx["lr"], batch=ctx["batch"]))
    s.blocks.append(table_block(w, "setup", t("method.setup_caption"), list(t.raw("method.setup_head")), rows))
    s.p(t("method.machine", hw=ctx["hardware"], versions=ctx["versions"]))
    s.h3(t("method.stats_title"))
    s.p(t("method.tail", k=stats.TAIL_EPOCHS, threshold=f"{stats.RISE_THRESHOLD_PCT:g}"))
    s.p(t("method.compare", alpha=f"{stats.ALPHA:g}"))
    return s


# --- 4. discussion -------------------------------------------------------------------------------------------


def discussion(w: Writer, layers: list[Layer], ctx: dict[str, Any], figures: dict[str, str]) -> Section:
    t, f = w.t, w.f
    s = Section(t("discussion.title"))
    a = f.experiment(0.2, 0.0)
    big = f.experiment(1.0, 0.0)
    # overfitting, in epochs and in optimizer steps
    s.h3(t("discussion.overfit_title"))
    own = f"exp:{a.key}" if a is not None else ""
    fig = w.num.f(own) if own in figures else w.num.f("overview") if "overview" in figures else 0
    if a is not None:
        s.p(
            t(
                f"discussion.overfit.{a.verdict}",
                name=w.name(a),
                epoch=f"{a.min_epoch:g}",
                steps=f"{a.min_epoch * a.steps_per_epoch:,.0f}",
                k=a.tails[0].k,
                rise=w.rises(a),
                seeds=w.seeds(a.n),
                figure=fig,
                train_acc=w.stat(a, "train_acc"),
                images=f"{a.train_images:,}",
            )
        )
    if a is not None and big is not None:
        sa, sb = a.min_epoch * a.steps_per_epoch, big.min_epoch * big.steps_per_epoch
        ratio = sb / sa if sa else math.inf
        key = "similar" if 0.5 <= ratio <= 2 else "later" if ratio > 2 else "earlier"
        s.p(
            t(
                f"discussion.steps.{key}",
                small=w.name(a),
                large=w.name(big),
                e_small=f"{a.min_epoch:g}",
                e_large=f"{big.min_epoch:g}",
                s_small=f"{sa:,.0f}",
                s_large=f"{sb:,.0f}",
                ratio=f"{ratio:.1f}",
                data_ratio=f"{big.train_images / max(1, a.train_images):g}",
                verdict_large=t(f"verdict.{big.verdict}", k=big.overfitting_seeds, n=big.n),
                seeds=w.seeds(big.n),
            )
        )
    # dropout as regularization
    s.h3(t("discussion.dropout_title"))
    s.p(t("discussion.dropout_mechanism"))
    d20 = f.comparison("dropout", frac=0.2)
    d100 = f.comparison("dropout", frac=1.0)
    for c in (d20, d100):
        if c is not None and c.primary is not None:
            s.p(w.effect_sentence(c, "holdout_best", "discussion.dropout_effect"))
    if d20 is not None:
        verdicts = (d20.base.verdict, d20.other.verdict)
        s.p(
            t(
                "discussion.dropout_overfit."
                + (
                    "neither"
                    if verdicts[0] == "none"
                    else {"none": "removed", "borderline": "reduced"}.get(verdicts[1], "kept")
                ),
                base=w.name(d20.base),
                other=w.name(d20.other),
                rb=w.rises(d20.base),
                ro=w.rises(d20.other),
            )
        )
        s.p(_training_metrics(w, d20))
    # capacity against data
    s.h3(t("discussion.capacity_title"))
    if a is not None:
        n_small = a.train_images
        acc = a.stat("train_acc")
        key = "memorizes" if acc and acc.mean >= 0.99 else "fits"
        s.p(
            t(
                f"discussion.capacity.{key}",
                params=f"{ctx['params']:,}",
                images=f"{n_small:,}",
                ratio=f"{ctx['params'] / max(1, n_small):.0f}",
                train_acc=w.stat(a, "train_acc"),
                val_acc=w.stat(a, "val_acc"),
                name=w.name(a),
            )
        )
    if big is not None:
        s.p(
            t(
                "discussion.capacity_large",
                gap=w.pts(big.stat("train_acc").mean - big.stat("val_acc").mean)  # type: ignore[union-attr]
                if big.stat("train_acc") and big.stat("val_acc")
                else "-",
                images=f"{big.train_images:,}",
                ratio=f"{ctx['params'] / max(1, big.train_images):.0f}",
                train_acc=w.stat(big, "train_acc"),
                val_acc=w.stat(big, "val_acc"),
                name=w.name(big),
            )
        )
    # data size and dropout together
    s.h3(t("discussion.together_title"))
    data0 = f.comparison("frac", dropout=0.0)
    if data0 is not None and data0.primary is not None:
        s.p(w.effect_sentence(data0, "holdout_best", "discussion.data_effect"))
    ia = f.interaction
    if ia is not None and ia.small.primary is not None and ia.large.primary is not None:
        small_e, large_e = ia.small.primary, ia.large.primary
        g_small, g_large = small_e.difference, large_e.difference
        key = "shrinks" if g_large < g_small else "grows"
        s.p(
            t(
                f"discussion.interaction.{key}",
                small=f"{100 * ia.small.base.frac:g}",
                large=f"{100 * ia.large.base.frac:g}",
                g_small=w.pts(g_small),
                g_large=w.pts(g_large),
                seeds_small=w.seeds(small_e.seeds),
                seeds_large=w.seeds(large_e.seeds),
            )
        )
    elif data0 is None:
        s.p(t("discussion.together_missing"))
    # the long run
    s.h3(t("discussion.long_title"))
    if f.long_runs:
        lr = f.long_runs[0]
        key = lr.run.verdict
        s.p(
            t(
                f"discussion.long.{key}",
                name=w.name(lr.run),
                epochs=lr.run.epochs,
                train_acc=w.stat(lr.run, "train_acc"),
                val_loss=w.stat(lr.run, "val_loss"),
                val_acc=w.stat(lr.run, "val_acc"),
                ex_loss=_ref(ctx, "a_long", "val_loss"),
                ex_acc=_ref(ctx, "a_long", "val_acc"),
            )
        )
    else:
        s.p(t("discussion.long_none"))
    s.p(t("discussion.collapse", **ctx["collapse"]))
    # the first layer
    s.h3(t("discussion.layer_title"))
    fashion = next((x for x in layers if not x.inception), None)
    inception = next((x for x in layers if x.inception), None)
    if fashion is not None:
        edges = sum(fashion.edges_by_orientation.values())
        s.p(
            t(
                "discussion.layer_fashion" if fashion.low_frequency else "discussion.layer_fashion_noblob",
                n=fashion.filters,
                edges=edges,
                other=fashion.categories.get("other", 0),
                low=fashion.categories.get("low-frequency", 0),
                partners=fashion.partners,
            )
        )
    else:
        s.p(t("discussion.layer_fashion_missing"))
    if inception is not None and not inception.random_weights:
        s.p(
            t(
                "discussion.layer_inception",
                colour=inception.categories.get("colour", 0) + inception.categories.get("colour-edge", 0),
                edges=sum(inception.edges_by_orientation.values()),
                n=inception.filters,
            )
        )
    else:
        s.p(t("discussion.layer_inception_missing" if inception is None else "discussion.layer_inception_random"))
    # limits
    s.h3(t("discussion.limits_title"))
    seeds = sorted({e.n for e in f.experiments})
    s.p(
        t(
            "discussion.limits",
            seeds=t("unit.or").join(map(str, seeds)),
            val=f"{a.val_images if a else 1000:,}",
            se=f"{100 * math.sqrt(0.87 * 0.13 / max(1, a.val_images if a else 1000)):.1f}",
        )
    )
    return s


def _training_metrics(w: Writer, c: Comparison) -> str:
    t = w.t
    # dropout on and off compared on the same runs: those that measured the training set again
    v = c.other.values
    rows = [
        (on, off, seed)
        for on, off, seed in zip(v.get("train_acc", []), v.get("train_eval_acc", []), c.other.seeds, strict=False)
        if on is not None and off is not None
    ]
    e = c.effects.get("train_acc")
    base = t(
        "discussion.train_metrics",
        base=w.name(c.base),
        other=w.name(c.other),
        acc_base=w.stat(c.base, "train_acc"),
        acc_other=w.stat(c.other, "train_acc"),
        evidence=w.evidence(e) if e else "",
    )
    if rows:
        on = sum(r[0] for r in rows) / len(rows)
        off = sum(r[1] for r in rows) / len(rows)
        which = t("unit.seed_list", seeds=w.join([str(r[2]) for r in rows]))
        key = "discussion.train_eval" if off >= on else "discussion.train_eval_lower"
        return base + t(key, on=w.v(on), off=w.v(off), diff=w.pts(off - on), seeds=which)
    return base + t("discussion.train_eval_missing")


def _ref(ctx: dict[str, Any], rid: str, key: str) -> str:
    ref = next((e for e in ctx["reference"]["experiments"] if e["id"] == rid), None)
    return "-" if ref is None else f"{ref[key]:.4f}"


# --- 5. conclusion -------------------------------------------------------------------------------------------


def conclusion(w: Writer, claims: list[Claim], layers: list[Layer]) -> Section:
    t, f = w.t, w.f
    s = Section(t("conclusion.title"))
    items = []
    a = f.experiment(0.2, 0.0)
    if a is not None:
        items.append(t(f"conclusion.overfit.{a.verdict}", name=w.name(a), epoch=f"{a.min_epoch:g}", seeds=w.seeds(a.n)))
    for c in (f.comparison("dropout", frac=0.2), f.comparison("dropout", frac=1.0), f.comparison("frac", dropout=0.0)):
        if c is not None and c.primary is not None:
            items.append(w.effect_sentence(c, "holdout_best", "conclusion.effect"))
    if f.ranking:
        best, second, vs = f.ranking.order[0], f.ranking.order[1], f.ranking.against_runner_up
        key = vs.verdict.replace(" ", "_") if vs else "one_seed"
        evidence = w.evidence(vs) if vs else w.t("unit.none")
        items.append(
            t(
                f"conclusion.best.{key}",
                name=w.name(best),
                acc=w.stat(best, "holdout_best"),
                second=w.name(second),
                evidence=evidence,
            )
        )
    if f.long_runs:
        lr = f.long_runs[0]
        items.append(t(f"conclusion.long.{lr.run.verdict}", name=w.name(lr.run), epochs=lr.run.epochs))
    fashion = next((x for x in layers if not x.inception and not x.random_weights), None)
    if fashion is not None:
        items.append(
            t(
                "conclusion.layer" if fashion.low_frequency else "conclusion.layer_noblob",
                n=fashion.filters,
                edges=sum(fashion.edges_by_orientation.values()),
                low=fashion.categories.get("low-frequency", 0),
                other=fashion.categories.get("other", 0),
            )
        )
    s.p(t("conclusion.intro"))
    s.ul(items)
    return s
