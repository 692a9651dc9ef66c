"""The command line: a thin Typer layer; each command parses options and calls one library function."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from lightning.fabric.utilities.exceptions import MisconfigurationException
from rich.console import Console
from rich.table import Table

from .errors import CnnlabError, TrainingInterrupted, first_line

app = typer.Typer(
    help="Train the classic Fashion-MNIST CNN lab, compare runs, export to ONNX, look inside InceptionV3's stem.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
F = TypeVar("F", bound=Callable[..., Any])
PRECISION_HELP = (
    "32-true (the exercise's float32), bf16-mixed, 16-mixed..., or auto: bf16-mixed where the hardware runs it "
    "natively (a GPU with bf16, a CPU with avx512_bf16 or AMX), else 32-true."
)
# (no square brackets in help texts: Rich would take them for markup and drop them)
THREADS_HELP = "CPU threads (default: PyTorch's, which follows OMP_NUM_THREADS when set)."
TENSORBOARD_HELP = "Also write the figures as TensorBoard images, as the run LOGDIR/{command}/<out folder name>."
CHECKPOINT_HELP = (
    "For a run name or folder: best (the epoch of lowest validation loss) or last (the final epoch's weights)."
)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print cnnlab's version and exit.")] = False,
) -> None:
    if version:
        from . import __version__

        typer.echo(f"cnnlab {__version__}")
        raise typer.Exit()


def _shows_warnings(show: Callable[..., None]) -> Callable[..., None]:
    def show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        """cnnlab's own warnings are one line on stderr; everyone else's as Python shows them."""
        if category.__name__ == "SlowPrecisionWarning":
            typer.echo(f"warning: {message}", err=True)
        else:
            show(message, category, *args, **kwargs)

    return show_warning


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def command(fn: F) -> F:
    """Register a command whose user errors end as one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _shows_warnings(warnings.showwarning)
                return fn(*args, **kwargs)
        except CnnlabError as e:
            raise _fail(str(e)) from None
        except OSError as e:  # a path the system refuses (not a folder, no permission, disk full): the user can fix it
            where = f"{e.filename}: " if e.filename else ""
            raise _fail(f"{where}{e.strerror or first_line(e)}") from None
        except MisconfigurationException as e:  # Lightning's word for option values it cannot use
            raise _fail(f"hardware options: {first_line(e, 300)}") from None
        except TrainingInterrupted as e:
            default = "interrupted; the last finished epoch's checkpoint is kept: rerun with --resume"
            raise _fail(str(e) or default, 130) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None

    app.command()(wrapper)
    return fn


@command
def fit(
    frac: Annotated[float, typer.Option(help="Fraction of the 50,000-image training pool to use (0, 1].")] = 0.2,
    dropout: Annotated[float, typer.Option(help="Dropout after the first Dense layer, [0, 1); 0 = none.")] = 0.0,
    epochs: Annotated[int, typer.Option(help="Epochs to train (with --resume: train up to this many).")] = 40,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    optimizer: Annotated[
        str,
        typer.Option(
            help="rmsprop (Keras 2, the exercise's: / (sqrt(v) + eps)), rmsprop-tf (Keras 3 and tf.keras: "
            "/ sqrt(v + eps)), adam or sgd."
        ),
    ] = "rmsprop",
    init: Annotated[str, typer.Option(help="Weight init: keras (glorot-uniform, zero bias) or torch.")] = "keras",
    seed: Annotated[int, typer.Option(help="Fixes the data subset, the shuffle and the initialization.")] = 42,
    val_split: Annotated[float, typer.Option(help="Keras validation_split: last part of the subset.")] = 0.1,
    eval_train: Annotated[bool, typer.Option(help="Also measure train loss/acc with dropout off each epoch.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the four Fashion-MNIST IDX files.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (default: from the settings, e.g. frac0.2_drop0.0).")
    ] = None,
    logdir: Annotated[Path, typer.Option(help="TensorBoard log folder; runs go to LOGDIR/NAME/version_N.")] = Path(
        "tb_logs"
    ),
    resume: Annotated[
        bool, typer.Option(help="Continue the latest run of this name from its last checkpoint.")
    ] = False,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu, gpu...")] = "auto",
    devices: Annotated[str, typer.Option(help="Devices per node: 1, 2, auto, or a list like 0,1.")] = "1",
    num_nodes: Annotated[int, typer.Option(help="Nodes for multi-node DDP.")] = 1,
    strategy: Annotated[str, typer.Option(help="Lightning strategy: auto, ddp...")] = "auto",
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "32-true",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP, show_default=False)] = None,
    channels_last: Annotated[
        bool, typer.Option(help="Channels-last (NHWC) memory format: faster on some hardware.")
    ] = False,
    compile: Annotated[bool, typer.Option(help="torch.compile the network (costs a compile at start).")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar and model summary.")] = True,
) -> None:
    """Train the exercise's CNN on Fashion-MNIST and record the run for TensorBoard."""
    from .training import FitConfig
    from .training import fit as fit_run

    cfg = FitConfig(frac=frac, dropout=dropout, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                    init=init, seed=seed, val_split=val_split, eval_train=eval_train,
                    data_dir=str(data_dir) if data_dir else None, name=name, logdir=str(logdir), resume=resume,
                    accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                    precision=precision, threads=threads, channels_last=channels_last, compile=compile,
                    progress=progress)  # fmt: skip
    result = fit_run(cfg)
    if not result.history or not result.reporter:  # a DDP worker: rank 0 prints the one summary
        return
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
                what = f"test: {split} ({label}, epoch {measured['epoch']})"
                table.add_row(what, f"{m['loss']:.4f}", f"{m['acc']:.4f}")
    console.print(table)
    secs = result.epoch_seconds
    console.print(f"training time per epoch: {sum(secs) / len(secs):.2f} s (mean of {len(secs)})")


@command
def export(
    source: Annotated[str, typer.Argument(help="A .ckpt file, or a run folder / run name (its best checkpoint).")],
    output: Annotated[Path | None, typer.Option(help="Output file [default: exported/<run name>.onnx].")] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    quantize: Annotated[str | None, typer.Option(help="Also write an int8 model (static QDQ): int8.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Fashion-MNIST folder for the parity check.")] = None,
    logdir: Annotated[Path, typer.Option(help="Where run names are looked up.")] = Path("tb_logs"),
    checkpoint: Annotated[str, typer.Option(help=CHECKPOINT_HELP)] = "best",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Export a trained model to one self-contained ONNX file, verified against PyTorch first."""
    from .export import export_onnx
    from .hardware import set_threads

    set_threads(threads)
    r = export_onnx(source, output, opset, quantize, str(data_dir) if data_dir else None, logdir, checkpoint)
    if r.warning:
        typer.echo(f"warning: {r.warning}", err=True)
    typer.echo(f"wrote {r.output}")
    typer.echo(f"parity on {r.images_checked} {r.parity_images} images: max |onnxruntime - PyTorch| = "
               f"{r.max_abs_diff:.2e} (limit 1e-4), predictions agree on all")  # fmt: skip
    if r.int8_output:
        typer.echo(f"wrote {r.int8_output} (int8 predictions agree with float32 on {r.int8_agreement:.2%})")


@command
def evaluate(
    model: Annotated[str, typer.Argument(help="An .onnx file (onnxruntime), or a .ckpt / run folder (PyTorch).")],
    split: Annotated[
        str, typer.Option(help="holdout (the 10,000 held-out images) or official (the test set).")
    ] = "holdout",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 1024,
    provider: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    compare: Annotated[str | None, typer.Option(help="A second model to evaluate in the same run.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write confusion-matrix PNGs and report JSON here.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Fashion-MNIST folder.")] = None,
    logdir: Annotated[Path, typer.Option(help="Where run names are looked up.")] = Path("tb_logs"),
    checkpoint: Annotated[str, typer.Option(help=CHECKPOINT_HELP)] = "best",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Evaluate a model in fast batches: accuracy, per-class accuracy, confusion matrix, images per second."""
    from .hardware import set_threads
    from .reporting import evaluation_outputs

    set_threads(threads)
    evaluation_outputs(model, compare, split, batch_size, provider, str(data_dir) if data_dir else None, logdir,
                       out, json_output, console, checkpoint)  # fmt: skip


@command
def compare(
    runs: Annotated[list[str], typer.Argument(help="Run folders (tb_logs/NAME/version_N) or names (latest version).")],
    out: Annotated[
        Path, typer.Option(help="Folder for curves.png, curves_<run>.png, summary.md, summary.json.")
    ] = Path("comparison"),
    threshold: Annotated[float, typer.Option(help="Overfitting: final val loss this many % above its minimum.")] = 10.0,
    log_loss: Annotated[bool, typer.Option(help="Log scale for the loss panels.")] = False,
    logdir: Annotated[Path, typer.Option(help="Where run names are looked up.")] = Path("tb_logs"),
    tensorboard: Annotated[Path | None, typer.Option(help=TENSORBOARD_HELP.format(command="compare"))] = None,
) -> None:
    """Compare runs: learning curves on shared axes, a summary table and an overfitting verdict."""
    from .compare import compare_runs
    from .tblog import board_dir

    board = board_dir(tensorboard, "compare", out) if tensorboard else None
    result = compare_runs(runs, out, logdir, threshold, log_loss, tensorboard=board)
    console.print(result.table, markup=False, highlight=False, soft_wrap=True)
    typer.echo(f"wrote {', '.join(str(f) for f in result.files)}")


class GridDisplay:
    """``study --jobs``: one live table for the grid, a row per run (state, epoch, validation loss, ETA); on a
    console that is not a terminal (a log file, a batch job), one line per event instead."""

    def __init__(self, out: Console, jobs: int) -> None:
        self.console, self.jobs = out, jobs
        self.rows: dict[int, dict[str, Any]] = {}
        self.live: Any = None

    def __enter__(self) -> GridDisplay:
        if self.jobs > 1 and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=2)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def show(self, e: Any) -> None:
        row = self.rows.setdefault(e.index, {"name": e.name, "epochs": e.epochs, "epoch": 0, "seconds": []})
        row["state"] = {"start": "starting", "ready": "training", "epoch": "training"}.get(e.kind, e.kind)
        if e.kind == "ready":
            row["device"] = e.device
        if e.kind == "epoch":
            row.update(epoch=e.epoch, val_loss=e.val_loss)
            row["seconds"].append(e.seconds)
        if e.kind in ("failed", "diverged"):
            row["message"] = e.message
        if self.live is not None:
            self.live.update(self._table())
        elif e.kind != "ready":
            loss = f", val loss {e.val_loss:.4f}" if e.val_loss is not None else ""
            what = f"epoch {e.epoch}/{e.epochs}{loss}" if e.kind == "epoch" else row["state"]
            extra = f": {e.message}" if e.message else ""
            self.console.print(f"[{e.index}] {e.name}: {what}{extra}", markup=False, highlight=False)

    def _table(self) -> Table:
        from .study import format_duration

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


@command
def study(
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = 40,
    fracs: Annotated[str, typer.Option(help="Comma-separated data fractions.")] = "0.2,1.0",
    dropouts: Annotated[str, typer.Option(help="Comma-separated dropout rates.")] = "0,0.5",
    seeds: Annotated[int, typer.Option(help="Seeds per setting (seed, seed+1, ...); >1 draws mean and bands.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for README.md, the figures and the tables.")] = Path("study_out"),
    seed: Annotated[int, typer.Option(help="First seed.")] = 42,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    optimizer: Annotated[str, typer.Option(help="rmsprop (Keras 2 form), rmsprop-tf (Keras 3 form), adam or sgd.")] = (
        "rmsprop"
    ),
    eval_train: Annotated[bool, typer.Option(help="Also measure train metrics with dropout off.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the Fashion-MNIST files.")] = None,
    logdir: Annotated[Path, typer.Option(help="TensorBoard log folder for the runs.")] = Path("tb_logs"),
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu, gpu...")] = "auto",
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "32-true",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP, show_default=False)] = None,
    progress: Annotated[bool, typer.Option(help="Show each run's progress bar.")] = True,
    lang: Annotated[
        str, typer.Option(help="Language of the report written at the end: en, ja, or both (report_en/, report_ja/).")
    ] = "both",
    shard: Annotated[
        str | None,
        typer.Option(help="K/N: train only this machine's share of the grid (runs K, K+N, ...) into a shared logdir."),
    ] = None,
    collect: Annotated[
        bool, typer.Option(help="Train nothing: once every shard is done, write the comparison and the report.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(help="Runs trained at once, each in its own process with cores/N threads (or its own GPU)."),
    ] = 1,
    jobs_per_gpu: Annotated[int, typer.Option(help="With --jobs on GPUs: runs that share one GPU.")] = 1,
) -> None:
    """Run the exercise's grid (fractions x dropouts x seeds), resumably, and write the comparison and the report."""
    from .study import parse_list, parse_shard, run_study
    from .training import FitConfig

    if shard is not None and collect:
        raise CnnlabError("--shard and --collect: give one; each shard trains, --collect then compares the grid")
    which = parse_shard(shard) if shard is not None else None

    if lang not in ("en", "ja", "both"):
        raise CnnlabError(f"--lang {lang!r}: unknown; choose en, ja or both")

    base = FitConfig(epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     eval_train=eval_train, data_dir=str(data_dir) if data_dir else None, logdir=str(logdir),
                     accelerator=accelerator, precision=precision, threads=threads, progress=progress)  # fmt: skip
    log: Callable[[str], None] = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    with GridDisplay(console, jobs) as display:
        result = run_study(base, parse_list(fracs, "--fracs"), parse_list(dropouts, "--dropouts"), seeds, out,
                           log=log, shard=which, collect=collect, jobs=jobs, jobs_per_gpu=jobs_per_gpu,
                           on_event=display.show)  # fmt: skip
    if result is None:  # a shard: the comparison waits for --collect
        return
    console.print(result.table, markup=False, highlight=False, soft_wrap=True)
    from .report import write_report
    from .tblog import board_dir

    for code in ("en", "ja") if lang == "both" else (lang,):
        board = board_dir(logdir, "study", out) / f"report_{code}"
        write_report([str(out)], out / f"report_{code}", code, logdir=logdir, tensorboard=board)
    typer.echo(f"wrote {out / 'README.md'} and the report in {out}/report_{'{en,ja}' if lang == 'both' else lang}/")


@command
def report(
    runs: Annotated[
        list[str], typer.Argument(help="Run names, run folders, or a study's output folder (all its runs).")
    ],
    out: Annotated[Path, typer.Option(help="Folder for REPORT.md, report.html, findings.json and figures.")] = Path(
        "report"
    ),
    lang: Annotated[str, typer.Option(help="Language: en (English) or ja (Japanese).")] = "en",
    threshold: Annotated[float, typer.Option(help="Overfitting: final val loss this many % above its minimum.")] = 10.0,
    filters_dir: Annotated[
        Path | None, typer.Option("--filters", help="A `cnnlab filters` output folder: adds Part 2.")
    ] = None,
    keras: Annotated[
        Path | None, typer.Option(help="Curves JSON from benchmarks/parity_keras.py --epochs N: adds Keras 3.")
    ] = None,
    logdir: Annotated[Path, typer.Option(help="Where run names are looked up.")] = Path("tb_logs"),
    tensorboard: Annotated[Path | None, typer.Option(help=TENSORBOARD_HELP.format(command="report"))] = None,
) -> None:
    """Write the lab report from the runs: setup, curves, results, findings, the exercise's claims tested."""
    from .report import write_report
    from .tblog import board_dir

    board = board_dir(tensorboard, "report", out) if tensorboard else None
    result = write_report(runs, out, lang, threshold, filters_dir, logdir, keras, tensorboard=board)
    for f in result.findings:
        console.print(("  " if f.holds else "- ") + f.sentence[lang], markup=False, highlight=False, soft_wrap=True)
    typer.echo(f"wrote {out / 'REPORT.md'}, {out / 'report.html'}, {out / 'findings.json'}")


@command
def filters(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Images to feed (JPEG, PNG, ...).", show_default=False)
    ] = None,
    probe: Annotated[
        list[str] | None,
        typer.Option(help="Probe image: rainbow, hues, gratings, shapes, checker or all (repeatable)."),
    ] = None,
    weights: Annotated[
        str, typer.Option(help="imagenet (torch hub cache or download), random, or a .pth / Keras .h5 file.")
    ] = "imagenet",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("filters_out"),
    normalize: Annotated[str, typer.Option(help="Filter tile scaling: per-filter or global.")] = "per-filter",
    tensorboard: Annotated[Path | None, typer.Option(help=TENSORBOARD_HELP.format(command="filters"))] = None,
    model: Annotated[str | None, typer.Option(help="Study a cnnlab checkpoint's first layer instead.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --weights random.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Fashion-MNIST folder (with --model and no images).")] = None,
) -> None:
    """Show what InceptionV3's first conv layer sees: filters, feature maps, taxonomy, tuning curves."""
    from .filters import run_filters

    result = run_filters([str(p) for p in images or []], probe, weights, out, normalize,
                         str(tensorboard) if tensorboard else None, model, seed,
                         str(data_dir) if data_dir else None)  # fmt: skip
    table = Table(title=f"{result.title}: first conv layer")
    for col in ("filter", "category", "L2 norm", "mean", "colour", "orient.", "partner"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for f in result.filters:
        orient = "-" if f["orientation_deg"] is None else f"{f['orientation_deg']:.0f}°"
        partner = "-" if f["partner"] is None else f"{f['partner']} ({f['partner_cosine']:+.2f})"
        table.add_row(str(f["index"]), f["category"], f"{f['l2_norm']:.3f}", f"{f['mean_weight']:+.3f}",
                      f"{f['colour_energy']:.0%}", orient, partner)  # fmt: skip
    console.print(table)
    for name, info in result.images.items():
        acts = info["mean_activation"]
        strongest = sorted(range(len(acts)), key=lambda i: -acts[i])[:5]
        dead = f"; dead channels: {info['dead_channels']}" if info["dead_channels"] else ""
        console.print(f"{name}: strongest mean activation in filters {strongest}{dead}", markup=False)
    typer.echo(f"wrote {len(result.files)} files to {result.out}/")


def main() -> None:
    app()
