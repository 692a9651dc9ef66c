"""The report as a document: five sections of blocks (paragraphs, lists, numbered tables and figures), built from
the findings and one language's catalog. Which sentence is said follows the data; the words are the catalog's."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import stats
from ..text import Catalog
from .claims import Claim
from .findings import Comparison, Effect, Experiment, Findings
from .layer import Layer


@dataclass
class Block:
    kind: str  # p | ul | table | figure | h3
    text: str = ""
    items: list[str] = field(default_factory=list)
    head: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    number: int = 0
    caption: str = ""
    file: str = ""
    note: str = ""


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def p(self, text: str) -> None:
        if text:
            self.blocks.append(Block("p", text=text))

    def h3(self, text: str) -> None:
        self.blocks.append(Block("h3", text=text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(Block("ul", items=items))


@dataclass
class Document:
    lang: str
    title: str
    meta: str
    sections: list[Section]
    figures: list[Block]
    tables: list[Block]


class Numbers:
    """Figures and tables are numbered in the order they are announced, so the text can cite them first."""

    def __init__(self) -> None:
        self.fig: dict[str, int] = {}
        self.tab: dict[str, int] = {}

    def f(self, key: str) -> int:
        return self.fig.setdefault(key, len(self.fig) + 1)

    def t(self, key: str) -> int:
        return self.tab.setdefault(key, len(self.tab) + 1)


class Writer:
    """Formats the findings' numbers in one language and picks the catalog's sentences."""

    def __init__(self, t: Catalog, findings: Findings) -> None:
        self.t = t
        self.f = findings
        self.num = Numbers()

    # --- numbers ---------------------------------------------------------------------------------------------

    @staticmethod
    def v(x: float | None, digits: int = 4) -> str:
        return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

    def stat(self, e: Experiment, key: str, digits: int = 4) -> str:
        s = e.stat(key)
        if s is None:
            return "-"
        return self.v(s.mean, digits) if s.std is None else f"{self.v(s.mean, digits)} ± {self.v(s.std, digits)}"

    def pts(self, d: float) -> str:
        return self.t("unit.points", value=f"{100 * d:+.2f}")

    def p(self, p: float | None) -> str:
        if p is None:
            return "-"
        return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"

    def name(self, e: Experiment) -> str:
        """The experiment's name in running text (Japanese quotes it)."""
        return self.t("exp.quote", name=self.label(e))

    def label(self, e: Experiment) -> str:
        """The experiment's name in tables and figures."""
        t = self.t
        drop = t("exp.no_dropout") if e.dropout == 0 else t("exp.dropout", rate=f"{e.dropout:g}")
        text = t("exp.name", pct=f"{100 * e.frac:g}", dropout=drop)
        if e.epochs >= 400 or e.epochs != self.protocol_epochs:
            text = t("exp.with_epochs", name=text, epochs=e.epochs)
        extra = [
            f"{k} {v}"
            for k, v in sorted(e.settings.items())
            if k in ("optimizer", "init", "lr", "batch_size") and v != _DEFAULTS.get(k)
        ]
        return text + (t("exp.extra", extra=", ".join(extra)) if extra else "")

    def join(self, items: list[str]) -> str:
        return self.t("unit.list_sep").join(items)

    def rises(self, e: Experiment) -> str:
        return self.join([f"{x.rise_pct:+.0f}%" for x in e.tails])

    def duration(self, seconds: float) -> str:
        if not seconds:
            return "-"
        m, s = divmod(round(seconds), 60)
        h, m = divmod(m, 60)
        return self.t("unit.duration_h", h=h, m=m) if h else self.t("unit.duration_m", m=m, s=s)

    @property
    def protocol_epochs(self) -> int:
        short = [e.epochs for e in self.f.experiments if e.epochs < 400]
        return max(set(short), key=short.count) if short else 40

    def seeds(self, n: tuple[int, int] | int) -> str:
        if isinstance(n, int):
            return self.t("unit.seeds_one") if n == 1 else self.t("unit.seeds", n=n)
        if n[0] == n[1]:
            return self.seeds(n[0]) + self.t("unit.per_side")
        return self.t("unit.seeds_sides", a=n[0], b=n[1])

    def interval(self, e: Effect, scale: float = 1.0) -> str:
        if e.low is None or e.high is None:
            return "-"
        if e.metric.startswith("holdout") or e.metric.endswith("acc"):
            return f"[{100 * e.low:+.2f}, {100 * e.high:+.2f}]"
        return f"[{e.low:+.4f}, {e.high:+.4f}]"

    def diff(self, e: Effect) -> str:
        if e.metric.startswith("holdout") or e.metric.endswith("acc"):
            return self.pts(e.difference)
        return f"{e.difference:+.4f}"

    def evidence(self, e: Effect) -> str:
        """The test, its strength and the seeds, for the sentence that makes a claim."""
        t = self.t
        if e.test == "exact McNemar":
            seeds = self.join([str(p["seed"]) for p in e.per_pair])
            pairs = t("unit.pairs_one", seeds=seeds) if e.pairs == 1 else t("unit.pairs", n=e.pairs, seeds=seeds)
            return t(
                "evidence.mcnemar",
                images=f"{e.images:,}",
                pairs=pairs,
                diff=self.diff(e),
                ci=self.interval(e),
                p=self.p(e.p_value),
                seeds=self.seeds(e.seeds),
            )
        if e.test == "Welch t":
            return t(
                "evidence.welch", diff=self.diff(e), ci=self.interval(e), p=self.p(e.p_value), seeds=self.seeds(e.seeds)
            )
        return t("evidence.none", diff=self.diff(e), seeds=self.seeds(e.seeds))

    def effect_sentence(self, c: Comparison, metric: str, key: str | None = None) -> str:
        e = c.effects.get(metric)
        if e is None:
            return ""
        verdict = e.verdict.replace(" ", "_")
        return self.t(
            f"{key or 'effect'}.{c.kind}.{verdict}",
            what=self.t(f"metric.{metric}"),
            base=self.name(c.base),
            other=self.name(c.other),
            evidence=self.evidence(e),
            before=self.effect_value(e, e.before.mean),
            after=self.effect_value(e, e.after.mean),
        )

    def effect_value(self, e: Effect, x: float) -> str:
        return self.v(x)


_DEFAULTS = {"optimizer": "rmsprop", "init": "keras", "lr": 1e-4, "batch_size": 32}


def build(
    t: Catalog,
    findings: Findings,
    claims: list[Claim],
    layers: list[Layer],
    context: dict[str, Any],
    figures: dict[str, str],
) -> Document:
    """``figures``: key -> file name of every figure written (overview, exp:KEY, long:KEY, keras3, layer files)."""
    w = Writer(t, findings)
    f = findings
    n = w.num
    # figures are cited before they appear: number them in the order the sections show them
    order = ("overview", "exp:", "long:", "layer:", "keras3")
    for prefix in order:
        for key in figures:
            if key.startswith(prefix):
                n.f(key)
    sections = [
        _objective(w, context),
        _method(w, context),
        _results(w, claims, layers, context, figures),
        _discussion(w, layers, context, figures),
        _conclusion(w, claims, layers),
    ]
    appendix = Section(t("appendix.title"))
    appendix.ul([f"`{d}`" for e in f.experiments for d in e.run_dirs])
    sections.append(appendix)
    figs = [b for s in sections for b in s.blocks if b.kind == "figure"]
    tabs = [b for s in sections for b in s.blocks if b.kind == "table"]
    return Document(
        t.lang,
        t("title"),
        t("meta", version=context["version"], date=context["date"], runs=sum(e.n for e in f.experiments)),
        sections,
        figs,
        tabs,
    )


def _figure(w: Writer, key: str, file: str, caption: str) -> Block:
    return Block("figure", number=w.num.f(key), file=file, caption=caption)


def _table(w: Writer, key: str, caption: str, head: list[str], rows: list[list[str]], note: str = "") -> Block:
    return Block("table", number=w.num.t(key), caption=caption, head=head, rows=rows, note=note)


# --- 1. objective --------------------------------------------------------------------------------------------


def _objective(w: Writer, ctx: dict[str, Any]) -> Section:
    t = w.t
    s = Section(t("objective.title"))
    s.p(t("objective.text"))
    s.p(t("objective.questions"))
    return s


# --- 2. method -----------------------------------------------------------------------------------------------


def _method(w: Writer, ctx: dict[str, Any]) -> Section:
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
    s.blocks.append(_table(w, "setup", t("method.setup_caption"), list(t.raw("method.setup_head")), rows))
    s.p(t("method.machine", hw=ctx["hardware"], versions=ctx["versions"]))
    s.h3(t("method.stats_title"))
    s.p(t("method.tail", k=stats.TAIL_EPOCHS, threshold=f"{stats.RISE_THRESHOLD_PCT:g}"))
    s.p(t("method.compare", alpha=f"{stats.ALPHA:g}"))
    return s


# --- 3. results ----------------------------------------------------------------------------------------------


def _results(
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
        s.blocks.append(_figure(w, "overview", figures["overview"], t("results.overview_caption")))
    for key in per_exp:
        e = next(x for x in f.experiments if x.key == key[4:])
        s.blocks.append(
            _figure(
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
        _table(
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
    sentences = []
    if overfit:
        sentences.append(t("results.overfit_list", names=t("unit.and").join(overfit)))
    if calm:
        sentences.append(t("results.calm_list", names=t("unit.and").join(calm)))
    if mixed:
        sentences.append(t("results.mixed_list", names=t("unit.and").join(mixed)))
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
            _table(
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
        _table(w, "tests", t("results.tests_caption"), list(t.raw("results.tests_head")), rows, t("results.tests_note"))
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
            _table(w, "keras3", t("results.keras3_caption"), list(t.raw("results.keras3_head")), ctx["keras3_rows"])
        )
        s.blocks.append(_figure(w, "keras3", figures["keras3"], t("results.keras3_fig")))
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
                _figure(
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
                    title=layer.title,
                    image=_image_of(t, name.split("_overview")[0]),
                    activation=layer.activation,
                )
                out.append(_figure(w, key, figures[key], caption))
    return out


def _model_of(w: Writer, layer: Layer) -> str:
    """The network a filters folder looked at: the experiment's name when it is one of the report's runs."""
    run = layer.title.removeprefix("cnnlab ")
    e = next((e for e in w.f.experiments if any(Path(d).parent.name == run for d in e.run_dirs)), None)
    return w.name(e) if e is not None else layer.title


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
        out.append(_table(w, "exercise", t("exercise.caption"), list(t.raw("exercise.head")), rows, t("exercise.note")))
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


# --- 4. discussion -------------------------------------------------------------------------------------------


def _discussion(w: Writer, layers: list[Layer], ctx: dict[str, Any], figures: dict[str, str]) -> Section:
    t, f = w.t, w.f
    s = Section(t("discussion.title"))
    a = f.experiment(0.2, 0.0)
    big = f.experiment(1.0, 0.0)
    # overfitting, in epochs and in optimizer steps
    s.h3(t("discussion.overfit_title"))
    fig = w.num.f("overview") if "overview" in figures else 0
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
                    "removed"
                    if verdicts[0] != "none" and verdicts[1] == "none"
                    else "kept"
                    if verdicts[1] != "none"
                    else "neither"
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
    on = c.other.stat("train_acc")
    off = c.other.stat("train_eval_acc")
    e = c.effects.get("train_acc")
    base = t(
        "discussion.train_metrics",
        base=w.name(c.base),
        other=w.name(c.other),
        acc_base=w.stat(c.base, "train_acc"),
        acc_other=w.stat(c.other, "train_acc"),
        evidence=w.evidence(e) if e else "",
    )
    if on is not None and off is not None:
        return base + t("discussion.train_eval", on=w.v(on.mean), off=w.v(off.mean), diff=w.pts(off.mean - on.mean))
    return base + t("discussion.train_eval_missing")


def _ref(ctx: dict[str, Any], rid: str, key: str) -> str:
    ref = next((e for e in ctx["reference"]["experiments"] if e["id"] == rid), None)
    return "-" if ref is None else f"{ref[key]:.4f}"


# --- 5. conclusion -------------------------------------------------------------------------------------------


def _conclusion(w: Writer, claims: list[Claim], layers: list[Layer]) -> Section:
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
