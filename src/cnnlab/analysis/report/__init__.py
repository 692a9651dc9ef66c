"""``write_report``: the lab report, from the runs' records alone, in English or Japanese.

The parts, each alone: ``experiments`` groups the runs into experiments with each seed's figures, ``findings``
computes every comparison, verdict and statistic on them (no text), ``claims`` judges the exercise's conclusions,
``layer`` reads Part 2 from a ``cnnlab filters`` folder, ``figures`` draws; ``document`` builds the five sections
(``discussion``: 1, 2, 4 and 5; ``results``: 3) from ``writer``'s blocks and sentences, picked from the catalog
(``cnnlab/text/LANG.toml``) by what the data showed; the Jinja2 templates write REPORT.md and one self-contained
report.html (figures embedded, no scripts, prints to PDF).
"""

from __future__ import annotations

import base64
import datetime
import functools
import html
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ... import __version__
from ...atomic import atomic_write_json, atomic_write_text
from ...errors import CnnlabError
from ...runs import RUN_JSON, best_row
from ...text import LANGS, Catalog, catalog
from ..compare import load_runs
from .claims import Claim, judge
from .document import build
from .findings import Findings, compute
from .layer import Layer, read_layer
from .writer import Document, Writer

LANG_CHOICES = LANGS


def check_lang(lang: str) -> None:
    if lang not in LANG_CHOICES:
        raise CnnlabError(f"--lang {lang!r}: unknown; choose one of {', '.join(LANG_CHOICES)}")


@functools.cache
def reference() -> dict[str, Any]:
    """The original exercise's Keras figures (the exercise's own lab report), shipped with cnnlab."""
    text = resources.files("cnnlab").joinpath("reference/exercise_keras.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def expand_sources(sources: list[str]) -> list[str]:
    """Run names and folders pass through; a study's (or compare's) output folder stands for its runs."""
    out: list[str] = []
    for src in sources:
        path = Path(src)
        summary = path / "summary.json"
        if path.is_dir() and not (path / RUN_JSON).is_file() and summary.is_file():
            try:
                out += [r["run_dir"] for r in json.loads(summary.read_text())["runs"]]
            except (ValueError, KeyError, TypeError) as e:
                raise CnnlabError(f"{summary}: not a cnnlab summary ({e})") from None
        else:
            out.append(src)
    return out


@dataclass
class ReportResult:
    out: Path
    files: list[Path]
    findings: Findings
    claims: list[Claim] = field(default_factory=list)
    document: Document | None = None

    @property
    def conclusions(self) -> list[str]:
        if self.document is None:
            return []
        return [item for b in self.document.sections[4].blocks for item in b.items]


def _hardware(info: dict[str, Any], t: Catalog) -> str:
    hw = info.get("hardware")
    if not hw:
        return t("unit.not_recorded")
    gpu = hw.get("gpu")
    if gpu:
        return t("method.hardware_gpu", cpu=hw.get("cpu"), cores=hw.get("cores"), gpu=gpu)
    return t("method.hardware", cpu=hw.get("cpu"), cores=hw.get("cores"))


def _keras3(path: Path) -> tuple[dict[str, Any], list[list[str]]]:
    try:
        curves = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CnnlabError(
            f"--keras {path}: unreadable ({e}); write it with benchmarks/parity_keras.py --epochs N"
        ) from None
    rows = []
    for name, r in curves.items():
        best_epoch = best_row(r) or r[-1]
        best = next(i for i, row in enumerate(r) if row is best_epoch)
        last = r[-1]
        rows.append(
            [
                name,
                f"{last['train_acc']:.4f}",
                f"{last['val_loss']:.4f}",
                f"{r[best]['val_loss']:.4f} ({best + 1})",
                f"{last['val_acc']:.4f}",
            ]
        )
    return curves, rows


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the catalogs use inline: **bold** and `code`."""
    parts = html.escape(text).split("`")
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    bold = "".join(parts).split("**")
    for i in range(1, len(bold), 2):
        bold[i] = f"<strong>{bold[i]}</strong>"
    return "".join(bold)


def render(doc: Document, t: Catalog, folder: Path) -> tuple[str, str]:
    """REPORT.md and report.html from the templates; the HTML embeds every figure."""
    import jinja2

    def embed(name: str) -> str:
        return "data:image/png;base64," + base64.b64encode((folder / name).read_bytes()).decode("ascii")

    loader = jinja2.PackageLoader("cnnlab.analysis.report", "templates")
    md_env = jinja2.Environment(loader=loader, autoescape=False, keep_trailing_newline=True)
    html_env = jinja2.Environment(loader=loader, autoescape=True, keep_trailing_newline=True)
    html_env.filters["inline"] = lambda s: jinja2.utils.markupsafe.Markup(_inline(str(s)))
    html_env.filters["embed"] = embed
    md = md_env.get_template("report.md.j2").render(doc=doc, t=t)
    page = html_env.get_template("report.html.j2").render(doc=doc, t=t)
    return md, page


def write_report(
    sources: list[str],
    out: str | os.PathLike[str] = "report",
    lang: str = "en",
    filters_dirs: Sequence[str | os.PathLike[str]] | None = None,
    logdir: Path = Path("tb_logs"),
    keras_curves: str | os.PathLike[str] | None = None,
    tensorboard: Path | None = None,  # also write the conclusions and the figures as this TensorBoard run
) -> ReportResult:
    """Write REPORT.md, report.html, findings.json and the figures for these runs into ``out``."""
    from ...model.network import KerasCNN, count_parameters
    from ...plots import figure_lang, plot_curve_sets
    from . import figures as F

    check_lang(lang)
    if not sources:
        raise CnnlabError("report needs at least one run (a name, a run folder or a study's output folder)")
    runs = load_runs(expand_sources(sources), logdir)
    layers: list[Layer] = [read_layer(d) for d in filters_dirs or []]
    keras = _keras3(Path(keras_curves)) if keras_curves else None
    findings = compute(runs)
    claims = judge(findings)
    t = catalog(lang)
    out = Path(out)
    fig_lang = figure_lang(lang)
    names = {e.key: Writer(t, findings).label(e) for e in findings.experiments}
    short = [e for e in findings.experiments if e.epochs < 400]
    # one loss axis and one accuracy axis for every protocol-length figure; a long run's climb gets its own
    lim = F.limits(short or findings.experiments)
    figures: dict[str, str] = {}
    files: list[Path] = []
    if short:
        files.append(F.overview(short, names, out / "curves.png", fig_lang, lim))
        figures["overview"] = "curves.png"
    for e in short:
        files.append(F.experiment(e, names[e.key], out / f"curves_{e.key}.png", fig_lang, lim))
        figures[f"exp:{e.key}"] = f"curves_{e.key}.png"
    for lr in findings.long_runs:
        long_lim = F.limits([lr.run] + ([lr.short] if lr.short else []))
        files.append(F.long_run(lr, names, out / f"curves_{lr.run.key}.png", fig_lang, long_lim))
        figures[f"long:{lr.run.key}"] = f"curves_{lr.run.key}.png"
    if keras:
        files.append(plot_curve_sets(keras[0], out / "keras3_vs_cnnlab.png", lang=fig_lang))
        figures["keras3"] = "keras3_vs_cnnlab.png"
    for layer in layers:
        prefix = "fashion" if not layer.inception else "inception"
        for name in layer.figures:
            if "_overview" in name and name != next((n for n in layer.figures if "_overview" in n), None):
                continue  # one feature-map overview per network in the report; the folder keeps the rest
            target = out / f"{prefix}_{name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(layer.folder / name, target)
            files.append(target)
            figures[f"layer:{layer.network}:{name}"] = target.name
    ref = reference()
    e4000 = next(e for e in ref["experiments"] if e["id"] == "a_very_long")
    cap = -math.log(ref["clip_epsilon"])
    wrong = 1 - e4000["acc"]
    first = runs[0].info
    today = datetime.date.today()
    context = {
        "version": __version__,
        "date": t("unit.date", y=today.year, m=today.month, d=today.day),
        "params": count_parameters(KerasCNN()),
        "lr": f"{findings.experiments[0].settings.get('lr', 1e-4):g}",
        "batch": findings.experiments[0].batch_size,
        "hardware": _hardware(first, t),
        "versions": t("unit.list_sep").join(f"{k} {v}" for k, v in first.get("versions", {}).items())
        or t("unit.not_recorded"),
        "reference": ref,
        "collapse": {
            "loss": e4000["loss"],
            "acc": e4000["acc"],
            "cap": f"{cap:.4f}",
            "wrong": f"{wrong:.4f}",
            "product": f"{wrong * cap:.4f}",
        },
        "keras3_rows": keras[1] if keras else [],
    }
    doc = build(t, findings, claims, layers, context, figures)
    md, page = render(doc, t, out)
    atomic_write_text(out / "REPORT.md", md)
    atomic_write_text(out / "report.html", page)
    payload = {
        "lang": lang,
        **findings.to_dict(),
        "claims": [c.to_dict() for c in claims],
        "layers": [x.to_dict() for x in layers],
    }
    atomic_write_json(out / "findings.json", payload)
    files = [out / "REPORT.md", out / "report.html", out / "findings.json", *files]
    if tensorboard is not None:
        from ...tblog import write_board

        text = "\n".join(f"- {item}" for item in ReportResult(out, [], findings, claims, doc).conclusions)
        write_board(tensorboard, [p for p in files if p.suffix == ".png"], {"findings": text})
    return ReportResult(out, files, findings, claims, doc)
