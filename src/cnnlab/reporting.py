"""Printed tables and written summaries for evaluation and run comparison."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .atomic import atomic_write_json
from .data import CLASS_NAMES
from .evaluation import Report, evaluate


def report_table(reports: list[Report]) -> Table:
    table = Table(title=f"evaluation on {reports[0].split} ({reports[0].images:,} images)")
    table.add_column("")
    for r in reports:
        table.add_column(Path(r.model).name, justify="right")
    rows = [
        ("backend", [f"{r.backend} ({r.provider})" for r in reports]),
        ("weights", [Path(r.checkpoint).name if r.checkpoint else "-" for r in reports]),
        ("accuracy", [f"{r.accuracy:.4f}" for r in reports]),
        *((f"  {name}", [f"{r.per_class_accuracy[name]:.4f}" for r in reports]) for name in CLASS_NAMES),
        ("batch size", [str(r.batch_size) for r in reports]),
        ("seconds", [f"{r.seconds:.3f}" for r in reports]),
        ("images / second", [f"{r.images_per_second:,.0f}" for r in reports]),
    ]
    for label, cells in rows:
        table.add_row(label, *cells)
    return table


def confusion_table(report: Report) -> Table:
    table = Table(title=f"confusion matrix: {Path(report.model).name} (rows: true, columns: predicted)")
    table.add_column("")
    for k in range(10):
        table.add_column(str(k), justify="right")
    for k, row in enumerate(report.confusion_matrix):
        table.add_row(f"{k} {CLASS_NAMES[k]}", *(str(v) for v in row))
    return table


def evaluation_outputs(
    model: str,
    compare: str | None,
    split: str,
    batch_size: int,
    provider: str,
    data_dir: str | None,
    logdir: Path,
    out: str | os.PathLike[str] | None,
    as_json: bool,
    console: Console,
    checkpoint: str = "best",
) -> list[Report]:
    """Evaluate one model (or two, side by side with their agreement) and print / write the results."""
    results = [
        evaluate(m, split, batch_size, provider, data_dir, logdir, checkpoint)
        for m in [model, *([compare] if compare else [])]
    ]
    reports = [r for r, _ in results]
    extra: dict[str, float] = {}
    if compare:
        (a, pa), (b, pb) = results
        extra = {
            "agreement": float(np.mean(pa == pb)),
            "accuracy_difference": a.accuracy - b.accuracy,
            "speed_ratio": a.images_per_second / b.images_per_second,
        }
    payload = reports[0].to_dict() if not compare else {"reports": [r.to_dict() for r in reports], **extra}
    if as_json:
        console.file.write(json.dumps(payload) + "\n")
    else:
        console.print(report_table(reports))
        for r in reports:
            console.print(confusion_table(r))
        if compare:
            console.print(
                f"predictions agree on {extra['agreement']:.2%} of images; accuracy difference "
                f"{extra['accuracy_difference']:+.4f}; {Path(model).name} runs at {extra['speed_ratio']:.2f}x "
                f"the speed of {Path(compare).name}"
            )
    if out:
        from .plots import plot_confusion

        out = Path(out)
        for r in reports:
            stem = Path(r.model).name.replace(".", "_")
            plot_confusion(r.confusion_matrix, f"{Path(r.model).name} on {r.split}: accuracy {r.accuracy:.4f}",
                           out / f"confusion_{stem}.png")  # fmt: skip
        atomic_write_json(out / "evaluation.json", payload)
    return reports
