"""Section 3 of the report, the results: the curves, the table per experiment, the comparisons, the test sets, the
long runs, the first layer (Part 2) and the exercise's own figures and claims."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...text import Catalog
from .. import stats
from .claims import Claim
from .layer import Layer
from .writer import Block, Section, Writer, figure_block, table_block


def results(
    w: Writer, claims: list[Claim], layers: list[Layer], ctx: dict[str, Any], figures: dict[str, str]
) -> Section:
    t, f = w.t, w.f
    s = Section(t("results.title"))
    short = [e for e in f.experiments if e.epochs < 400]
    names = {e.key: w.name(e) for e in f.experiments}  # in sentences
    labels = {e.key: w.label(e) for e in f.experiments}  # in tables and captions
    # 3.1 curves
    s.h3(t("results.curves_title"))
    per_exp = [k for k in figures if k.startswith("exp:")]
    if "overview" in figures:
        first, last = (w.num.f(per_exp[0]), w.num.f(per_exp[-1])) if per_exp else (0, 0)
        s.p(t("results.curves", overview=w.num.f("overview"), first=first, last=last))
        s.blocks.append(figure_block(w, "overview", figures["overview"], t("results.overview_caption")))
    for key in per_exp:
        e = next(x for x in f.experiments if x.key == key[4:])
        s.blocks.append(
            figure_block(
                w,
                key,
                figures[key],
                t(
                    "results.exp_caption" if e.n > 1 else "results.exp_caption_one",
                    name=labels[e.key],
                    seeds=w.seeds(e.n),
                    epoch=f"{e.min_epoch:g}",
                ),
            )
        )
    # 3.2 per experiment
    s.h3(t("results.table_title"))
    rows = []
    for e in short + [lr.run for lr in f.long_runs]:
        rows.append(
            [
                labels[e.key],
                w.stat(e, "train_loss"),
                w.stat(e, "train_acc"),
                w.stat(e, "val_loss"),
                w.stat(e, "val_acc"),
                f"{w.stat(e, 'min_val_loss')} ({e.min_epoch:g})",
                w.rises(e),
                t(f"verdict.{e.verdict}", k=e.overfitting_seeds, n=e.n),
            ]
        )
    k = stats.TAIL_EPOCHS
    s.p(t("results.table", table=w.num.t("results"), k=k))
    s.blocks.append(
        table_block(
            w,
            "results",
            t("results.table_caption", k=k),
            list(t.raw("results.head")),
            rows,
            t("results.table_note", k=k, threshold=f"{stats.RISE_THRESHOLD_PCT:g}"),
        )
    )
    overfit = [names[e.key] for e in short if e.verdict == "overfits"]
    calm = [names[e.key] for e in short if e.verdict == "none"]
    mixed = [names[e.key] for e in short if e.verdict == "mixed"]
    borderline = [names[e.key] for e in short if e.verdict == "borderline"]
    sentences = []
    if overfit:
        sentences.append(t("results.overfit_list", names=t("unit.and").join(overfit)))
    if calm:
        sentences.append(t("results.calm_list", names=t("unit.and").join(calm)))
    if mixed:
        sentences.append(t("results.mixed_list", names=t("unit.and").join(mixed)))
    if borderline:
        sentences.append(t("results.borderline_list", names=t("unit.and").join(borderline)))
    s.p(" ".join(sentences) if t.lang == "en" else "".join(sentences))
    # 3.3 comparisons
    s.h3(t("results.compare_title"))
    rows = []
    for c in f.comparisons:
        for metric, eff in c.effects.items():
            rows.append(
                [
                    t(f"results.pair.{c.kind}", base=labels[c.base.key], other=labels[c.other.key]),
                    t(f"metric.{metric}"),
                    w.v(eff.before.mean),
                    w.v(eff.after.mean),
                    w.diff(eff),
                    w.interval(eff),
                    t(f"test.{eff.test.replace(' ', '_')}"),
                    w.p(eff.p_value),
                    w.seeds(eff.seeds),
                    t(f"verdict_effect.{eff.verdict.replace(' ', '_')}"),
                ]
            )
    if rows:
        s.p(t("results.compare", table=w.num.t("comparisons")))
        s.blocks.append(
            table_block(
                w,
                "comparisons",
                t("results.compare_caption"),
                list(t.raw("results.compare_head")),
                rows,
                t("results.compare_note"),
            )
        )
        for c in f.comparisons:
            s.p(w.effect_sentence(c, "holdout_best"))
    # 3.4 test sets
    s.h3(t("results.tests_title"))
    rows = [
        [
            labels[e.key],
            w.stat(e, "holdout_best"),
            w.stat(e, "official_best"),
            w.stat(e, "holdout_last"),
            w.stat(e, "official_last"),
        ]
        for e in f.experiments
    ]
    s.p(t("results.tests", table=w.num.t("tests")))
    s.blocks.append(
        table_block(
            w, "tests", t("results.tests_caption"), list(t.raw("results.tests_head")), rows, t("results.tests_note")
        )
    )
    if f.ranking:
        best, second = f.ranking.order[0], f.ranking.order[1]
        vs = f.ranking.against_runner_up
        key = vs.verdict.replace(" ", "_") if vs else "one_seed"
        s.p(
            t(
                f"results.best.{key}",
                best=names[best.key],
                second=names[second.key],
                acc=w.stat(best, "holdout_best"),
                evidence=w.evidence(vs) if vs else "",
            )
        )
    # 3.5 long runs
    s.h3(t("results.long_title"))
    s.blocks += _long_results(w, names, figures)
    # 3.6 the first layer (Part 2)
    s.h3(t("results.layer_title"))
    s.blocks += _layer_results(w, layers, figures)
    # 3.7 against the exercise
    s.h3(t("results.exercise_title"))
    s.blocks += _exercise(w, claims, ctx)
    if "keras3" in figures:
        s.h3(t("results.keras3_title"))
        s.p(t("results.keras3", figure=w.num.f("keras3"), table=w.num.t("keras3")))
        s.blocks.append(
            table_block(
                w, "keras3", t("results.keras3_caption"), list(t.raw("results.keras3_head")), ctx["keras3_rows"]
            )
        )
        s.blocks.append(figure_block(w, "keras3", figures["keras3"], t("results.keras3_fig")))
    return s


def _long_results(w: Writer, names: dict[str, str], figures: dict[str, str]) -> list[Block]:
    t, f = w.t, w.f
    out: list[Block] = []
    if not f.long_runs:
        out.append(Block("p", text=t("results.long_none")))
    for lr in f.long_runs:
        e = lr.run
        tail = e.tails[0]
        done = min(len(r.history) for r in e.runs)
        text = (
            t("results.long_partial", done=done, epochs=e.epochs) + (" " if t.lang == "en" else "")
            if done < e.epochs
            else ""
        )
        text += t(
            "results.long_run",
            name=names[e.key],
            epochs=e.epochs,
            figure=w.num.f(f"long:{e.key}"),
            min_epoch=f"{e.min_epoch:g}",
            steps=f"{e.min_epoch * e.steps_per_epoch:,.0f}",
            min_loss=w.v(tail.smoothed_min),
            tail=w.v(tail.tail),
            rise=f"{tail.rise_pct:+.0f}",
            train_acc=w.stat(e, "train_acc"),
            val_acc=w.stat(e, "val_acc"),
        )
        if lr.short is not None:
            text += t(
                "results.long_short",
                short=names[lr.short.key],
                short_tail=w.stat(lr.short, "val_loss"),
                short_acc=w.stat(lr.short, "val_acc"),
            )
        out.append(Block("p", text=text))
        if lr.best_vs_last is not None:
            b = lr.best_vs_last
            key = "significant" if b.significant else "not_significant"
            out.append(
                Block(
                    "p",
                    text=t(
                        f"results.long_best_last.{key}",
                        best=w.v(b.acc_before),
                        last=w.v(b.acc_after),
                        diff=w.pts(b.difference),
                        ci=f"[{100 * b.low:+.2f}, {100 * b.high:+.2f}]",
                        p=w.p(b.p_value),
                        images=f"{b.images:,}",
                    ),
                )
            )
        if f"long:{e.key}" in figures:
            out.append(
                figure_block(
                    w,
                    f"long:{e.key}",
                    figures[f"long:{e.key}"],
                    t("results.long_caption", name=w.label(e), short=w.label(lr.short) if lr.short else "-"),
                )
            )
    a = f.experiment(0.2, 0.0)
    per_epoch = [sec / max(1, len(r.history)) for sec, r in zip(a.seconds, a.runs, strict=True) if sec] if a else []
    if per_epoch:
        mean = sum(per_epoch) / len(per_epoch)
        out.append(
            Block("p", text=t("results.very_long_not_run", sec=f"{mean:.1f}", hours=f"{4000 * mean / 3600:.0f}"))
        )
    else:
        out.append(Block("p", text=t("results.very_long_unmeasured")))
    return out


def _layer_results(w: Writer, layers: list[Layer], figures: dict[str, str]) -> list[Block]:
    t = w.t
    if not layers:
        return [Block("p", text=t("results.layer_none"))]
    out: list[Block] = []
    for layer in layers:
        which = "inception" if layer.inception else "fashion"
        intro = t(
            f"results.layer_intro.{which}", title=_model_of(w, layer), activation=layer.activation, n=layer.filters
        )
        out.append(Block("p", text=intro))
        if layer.random_weights:
            out.append(Block("p", text=t("results.layer_random")))
        cats = w.join([t("results.category", name=t(f"category.{k}"), n=v) for k, v in layer.categories.items()])
        edges = w.join(
            [t("results.category", name=t(f"orientation.{k}"), n=v) for k, v in layer.edges_by_orientation.items() if v]
        )
        text = t("results.layer_counts", cats=cats, edges=edges or t("unit.none"), partners=layer.partners)
        low = layer.low_frequency
        text += t("results.layer_blobs", list=w.join(list(map(str, low)))) if low else t("results.layer_no_blobs")
        out.append(Block("p", text=text))
        dead = sorted({d for v in layer.images.values() for d in v["dead"]})
        strongest = [set(v["strongest"][:3]) for v in layer.images.values()]
        common = sorted(set.intersection(*strongest)) if strongest else []
        text = (
            t("results.layer_dead", images=len(layer.images), dead=w.join(list(map(str, dead))))
            if dead
            else (t("results.layer_no_dead", images=len(layer.images)))
        )
        if common:
            text += t("results.layer_common", common=w.join(list(map(str, common))))
        out.append(Block("p", text=text))
        if layer.inception and layer.hue_peaks and not layer.random_weights:
            peaks = w.join([f"{h}°: {i}" for h, i in list(layer.hue_peaks.items())[::3]])
            out.append(Block("p", text=t("results.layer_hue", peaks=peaks)))
        for name in layer.figures:
            key = f"layer:{layer.network}:{name}"
            if key in figures:
                kind = _fig_kind(name) + ("_gray" if name.startswith("tuning") and not layer.inception else "")
                caption = t(
                    f"results.layer_fig.{kind}",
                    net=layer.network,
                    title=_model_of(w, layer, quoted=False),
                    image=_image_of(t, name.split("_overview")[0]),
                    activation=layer.activation,
                )
                out.append(figure_block(w, key, figures[key], caption))
    return out


def _model_of(w: Writer, layer: Layer, quoted: bool = True) -> str:
    """The network a filters folder looked at: the experiment's name when it is one of the report's runs."""
    run = layer.title.removeprefix("cnnlab ")
    e = next((e for e in w.f.experiments if any(Path(d).parent.name == run for d in e.run_dirs)), None)
    if e is None:
        return layer.title
    return w.name(e) if quoted else w.label(e)


def _image_of(t: Catalog, name: str) -> str:
    """fashion3_Sneaker -> a holdout image of its class, in the report's language; other inputs keep their name."""
    m = re.fullmatch(r"fashion\d+_(.+)", name)
    return t("results.holdout_image", cls=t(f"classes.{m.group(1)}")) if m and t.has(f"classes.{m.group(1)}") else name


def _fig_kind(name: str) -> str:
    if name.startswith("filters_rgb"):
        return "rgb"
    if name.startswith("filters"):
        return "filters"
    if name.startswith("tuning"):
        return "tuning"
    return "overview"


def _exercise(w: Writer, claims: list[Claim], ctx: dict[str, Any]) -> list[Block]:
    t, f = w.t, w.f
    out: list[Block] = []
    rows = []
    missing = []
    for ref in ctx["reference"]["experiments"]:
        e = f.experiment(ref["frac"], ref["dropout"], ref["epochs"])
        label = t(f"exercise.label.{ref['id']}")
        if e is None:
            missing.append(label)
            continue
        ours = [e.stat(k) for k in ("final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc")]
        theirs = [ref["loss"], ref["acc"], ref["val_loss"], ref["val_acc"]]
        rows.append([label, t("exercise.keras"), *(f"{v:.4f}" for v in theirs)])
        rows.append(["", t("exercise.cnnlab"), *(w.v(o.mean) if o else "-" for o in ours)])
    out.append(Block("p", text=t("exercise.intro", table=w.num.t("exercise"))))
    if rows:
        out.append(
            table_block(w, "exercise", t("exercise.caption"), list(t.raw("exercise.head")), rows, t("exercise.note"))
        )
    if missing:
        out.append(Block("p", text=t("exercise.missing", labels=w.join(missing))))
    items = []
    for c in claims:
        because = c.because(w)
        key = "exercise.claim" if because else "exercise.claim_bare"
        items.append(t(key, verdict=t(f"claim_verdict.{c.verdict}"), claim=t(f"claims.{c.id}"), because=because))
    out.append(Block("p", text=t("exercise.claims_intro")))
    out.append(Block("ul", items=items))
    return out
