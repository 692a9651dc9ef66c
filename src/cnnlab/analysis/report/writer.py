"""The report's building blocks (paragraphs, lists, numbered tables and figures, in sections) and the Writer, which
formats the findings' numbers in one language and picks the catalog's sentences."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...text import Catalog
from ...text.fmt import clock_parts
from .experiments import Experiment
from .findings import Comparison, Effect, Findings


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
        h, m, s = clock_parts(round(seconds))  # to the nearest second
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

    def interval(self, e: Effect) -> str:
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
            before=self.v(e.before.mean),
            after=self.v(e.after.mean),
        )


_DEFAULTS = {"optimizer": "rmsprop", "init": "keras", "lr": 1e-4, "batch_size": 32}


def figure_block(w: Writer, key: str, file: str, caption: str) -> Block:
    return Block("figure", number=w.num.f(key), file=file, caption=caption)


def table_block(w: Writer, key: str, caption: str, head: list[str], rows: list[list[str]], note: str = "") -> Block:
    return Block("table", number=w.num.t(key), caption=caption, head=head, rows=rows, note=note)
