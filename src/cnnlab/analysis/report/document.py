"""The report as a document: five sections of blocks (paragraphs, lists, numbered tables and figures), built from
the findings and one language's catalog. Which sentence is said follows the data; the words are the catalog's."""

from __future__ import annotations

from typing import Any

from ...text import Catalog
from .claims import Claim
from .discussion import conclusion, discussion, method, objective
from .findings import Findings
from .layer import Layer
from .results import results
from .writer import Document, Section, Writer


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
        objective(w, context),
        method(w, context),
        results(w, claims, layers, context, figures),
        discussion(w, layers, context, figures),
        conclusion(w, claims, layers),
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
