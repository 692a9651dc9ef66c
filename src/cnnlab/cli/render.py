"""Everything cnnlab prints: tables, summaries, progress lines and messages. The library returns results and
events; this module alone turns them into text (Rich on the terminal, plain lines elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from ..data.classes import CLASS_NAMES

if TYPE_CHECKING:
    from ..analysis.compare import Comparison
    from ..deploy.evaluation import Evaluation, EvaluationReport
    from ..deploy.export import ExportResult
    from ..filters import FiltersResult
    from ..training.fit import FitResult
    from ..training.jobs import Event
    from ..training.study import StudyResult

console = Console()


def say(text: str) -> None:
    typer.echo(text)


def plain(text: str) -> None:
    """Text that may hold brackets or long lines (tables in Markdown, file names): printed as it is."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


# --- fit -----------------------------------------------------------------------------------------------------


def fit_summary(result: FitResult) -> None:
    last, best = result.history[-1], result.best
    table = Table(title=f"{result.run_dir}  ({len(result.history)} epochs, {result.status})")
    for col in ("", "loss", "accuracy"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("train (last epoch)", f"{last['train_loss']:.4f}", f"{last['train_acc']:.4f}")
    table.add_row("validation (last epoch)", f"{last['val_loss']:.4f}", f"{last['val_acc']:.4f}")
    table.add_row(f"validation (best, epoch {best['epoch']})", f"{best['val_loss']:.4f}", f"{best['val_acc']:.4f}")
    for which, label in (("best", "best checkpoint"), ("last", "last epoch")):
        measured = result.test.get(which, {})
        for split in ("holdout", "official"):
            if split in measured:
                m = measured[split]
                table.add_row(
                    f"test: {split} ({label}, epoch {measured['epoch']})", f"{m['loss']:.4f}", f"{m['acc']:.4f}"
                )
    console.print(table)
    secs = result.epoch_seconds
    console.print(f"training time per epoch: {sum(secs) / len(secs):.2f} s (mean of {len(secs)})")


# --- export and evaluate -------------------------------------------------------------------------------------


def export_summary(r: ExportResult) -> None:
    if r.warning:
        warn(r.warning)
    say(f"wrote {r.output}")
    say(
        f"parity on {r.images_checked} {r.parity_images} images: max |onnxruntime - PyTorch| = "
        f"{r.max_abs_diff:.2e} (limit 1e-4), predictions agree on all"
    )
    if r.int8_output:
        say(f"wrote {r.int8_output} (int8 predictions agree with float32 on {r.int8_agreement:.2%})")


def _report_table(reports: list[EvaluationReport]) -> Table:
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


def _confusion_table(report: EvaluationReport) -> Table:
    table = Table(title=f"confusion matrix: {Path(report.model).name} (rows: true, columns: predicted)")
    table.add_column("")
    for k in range(10):
        table.add_column(str(k), justify="right")
    for k, row in enumerate(report.confusion_matrix):
        table.add_row(f"{k} {CLASS_NAMES[k]}", *(str(v) for v in row))
    return table


def evaluation(result: Evaluation, as_json: bool) -> None:
    if as_json:
        console.file.write(json.dumps(result.payload) + "\n")
        return
    console.print(_report_table(result.reports))
    for r in result.reports:
        console.print(_confusion_table(r))
    if result.agreement is not None:
        a, b = (Path(r.model).name for r in result.reports)
        console.print(
            f"predictions agree on {result.agreement:.2%} of images; accuracy difference "
            f"{result.accuracy_difference:+.4f}; {a} runs at {result.speed_ratio:.2f}x the speed of {b}"
        )


# --- compare, study, report ----------------------------------------------------------------------------------


def comparison(result: Comparison) -> None:
    plain(result.table)
    say(f"wrote {', '.join(str(f) for f in result.files)}")


def study_line(e: Event) -> str | None:
    """A study trained one run at a time: a line per run (its progress bar shows the epochs)."""
    where = f"[{e.index}/{e.total}] {e.name}"
    if e.kind == "skip":
        return f"{where}: {e.message} earlier ({e.run_dir}), skipped"
    if e.kind == "start":
        from ..text.fmt import format_duration

        return f"{where}: {e.message}" + (f", ETA {format_duration(e.eta_s)}" if e.eta_s is not None else "")
    if e.kind == "diverged":
        return f"{where}: {e.message}"
    return None


class GridDisplay:
    """``study --jobs``: one live table for the grid, a row per run (state, epoch, validation loss, ETA); on a
    console that is not a terminal (a log file, a batch job), one line per event instead. One run at a time:
    a line per run, as study_line says."""

    def __init__(self, out: Console = console) -> None:
        self.console, self.jobs = out, 1  # the study's "plan" event says how many runs train at once
        self.rows: dict[int, dict[str, Any]] = {}
        self.live: Any = None

    def __enter__(self) -> GridDisplay:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _plan(self, e: Event) -> None:
        self.jobs = max(1, e.jobs)
        each = f"{e.threads} CPU thread{'s' if e.threads != 1 else ''} each"
        plain(f"{e.total} run{'s' if e.total != 1 else ''} in this study, {self.jobs} at a time, {each}")
        if self.jobs > 1 and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=2)
            self.live.__enter__()

    def show(self, e: Event) -> None:
        if e.kind == "plan":
            self._plan(e)
            return
        if self.jobs == 1:
            line = study_line(e)
            if line is not None:
                plain(line)
            return
        row = self.rows.setdefault(e.index, {"name": e.name, "epochs": e.epochs, "epoch": 0, "seconds": []})
        row["state"] = {"start": e.message, "epoch": "training"}.get(e.kind, e.kind)
        if e.kind == "start":
            row["device"] = e.device
        if e.kind == "epoch":
            row.update(epoch=e.epoch, val_loss=e.val_loss)
            row["seconds"].append(e.seconds)
        if e.kind in ("failed", "diverged"):
            row["message"] = e.message
        if self.live is not None:
            self.live.update(self._table())
        elif e.kind == "skip":
            plain(study_line(e) or "")
        else:
            loss = f", val loss {e.val_loss:.4f}" if e.val_loss is not None else ""
            what = f"epoch {e.epoch}/{e.epochs}{loss}" if e.kind == "epoch" else row["state"]
            plain(f"[{e.index}] {e.name}: {what}" + (f": {e.message}" if e.kind in ("failed", "diverged") else ""))

    def _table(self) -> Table:
        from ..text.fmt import format_duration

        table = Table(title=f"cnnlab study, {self.jobs} jobs at once")
        for col in ("#", "run", "state", "epoch", "val loss", "ETA", "on"):
            table.add_column(col, justify="left" if col in ("run", "state", "on") else "right")
        for index in sorted(self.rows):
            r = self.rows[index]
            eta = ""
            if r["state"] == "training" and r["seconds"]:
                eta = format_duration(sum(r["seconds"]) / len(r["seconds"]) * (r["epochs"] - r["epoch"]))
            loss = f"{r['val_loss']:.4f}" if r.get("val_loss") is not None else ""
            state = r["state"] + (f" ({r['message']})" if r.get("message") else "")
            table.add_row(str(index), r["name"], state, f"{r['epoch']}/{r['epochs']}", loss, eta, r.get("device", ""))
        return table


def study_done(result: StudyResult) -> None:
    """The study's comparison table, then where its README and its reports (one folder per language) are."""
    assert result.comparison is not None
    plain(result.comparison.table)
    codes = list(result.reports)
    which = "{" + ",".join(codes) + "}" if len(codes) > 1 else codes[0]
    say(f"wrote {result.out / 'README.md'} and the report in {result.out}/report_{which}/")


def shard_done(shard: tuple[int, int], trained: int, grid_size: int) -> None:
    plain(
        f"shard {shard[0]}/{shard[1]}: its {trained} of {grid_size} runs are done; once every shard is, "
        "the same command with --collect instead of --shard writes the comparison"
    )


def conclusions(items: list[str]) -> None:
    """The report's conclusion, one line per point, in the report's language (the catalog's words)."""
    for item in items:
        plain(f"- {item}")


# --- filters -------------------------------------------------------------------------------------------------


def filters_summary(result: FiltersResult) -> None:
    table = Table(title=f"first conv layer ({result.title})")
    for col in ("filter", "category", "L2 norm", "mean", "colour", "orient.", "partner"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for f in result.filters:
        orient = "-" if f["orientation_deg"] is None else f"{f['orientation_deg']:.0f}°"
        partner = "-" if f["partner"] is None else f"{f['partner']} ({f['partner_cosine']:+.2f})"
        cells = (f"{f['l2_norm']:.3f}", f"{f['mean_weight']:+.3f}", f"{f['colour_energy']:.0%}", orient, partner)
        table.add_row(str(f["index"]), f["category"], *cells)
    console.print(table)
    for name, info in result.images.items():
        dead = f"; dead channels: {info['dead_channels']}" if info["dead_channels"] else ""
        plain(f"{name}: strongest mean activation in filters {info['strongest']}{dead}")
    say(f"wrote {len(result.files)} files to {result.out}/")
