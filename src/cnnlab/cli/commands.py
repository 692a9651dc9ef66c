"""The commands: each parses its options, calls one library function and hands the result to render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CnnlabError
from ..training.config import study_grid
from . import render
from .app import command
from .options import (
    Checkpoint,
    DataDir,
    LookupLogdir,
    TensorBoardOut,
    Threads,
    Threshold,
    fit_config,
    fit_options,
    parse_jobs,
    parse_list,
    parse_shard,
)


@command
@fit_options()
def fit(**options: Any) -> None:
    """Train the exercise's CNN on Fashion-MNIST and record the run for TensorBoard."""
    cfg = fit_config(options)  # bad values fail here, before torch and Lightning load
    from ..training.fit import fit as fit_run

    result = fit_run(cfg)
    if result.history and result.reporter:  # a DDP worker: rank 0 prints the one summary
        render.fit_summary(result)


@command
def export(
    source: Annotated[str, typer.Argument(help="A .ckpt file, or a run folder / run name (its best checkpoint).")],
    output: Annotated[Path | None, typer.Option(help="Output file (default: exported/<run name>.onnx).")] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    quantize: Annotated[str | None, typer.Option(help="Also write an int8 model (static QDQ): int8.")] = None,
    data_dir: DataDir = None,
    logdir: LookupLogdir = Path("tb_logs"),
    checkpoint: Checkpoint = "best",
    threads: Threads = None,
) -> None:
    """Export a trained model to one self-contained ONNX file, verified against PyTorch first."""
    from ..deploy.export import export_onnx
    from ..hardware import set_threads

    set_threads(threads)
    result = export_onnx(
        source,
        output=output,
        opset=opset,
        quantize=quantize,
        data_dir=str(data_dir) if data_dir else None,
        logdir=logdir,
        checkpoint=checkpoint,
    )
    render.export_summary(result)


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
    data_dir: DataDir = None,
    logdir: LookupLogdir = Path("tb_logs"),
    checkpoint: Checkpoint = "best",
    threads: Threads = None,
) -> None:
    """Evaluate a model in fast batches: accuracy, per-class accuracy, confusion matrix, images per second."""
    from ..deploy.evaluation import evaluate_models
    from ..hardware import set_threads

    set_threads(threads)
    result = evaluate_models(
        model,
        compare=compare,
        split=split,
        batch_size=batch_size,
        provider=provider,
        data_dir=str(data_dir) if data_dir else None,
        logdir=logdir,
        out=out,
        checkpoint=checkpoint,
    )
    render.evaluation(result, json_output)


@command
def compare(
    runs: Annotated[list[str], typer.Argument(help="Run folders (tb_logs/NAME/version_N) or names (latest version).")],
    out: Annotated[
        Path, typer.Option(help="Folder for curves.png, curves_<run>.png, summary.md, summary.json.")
    ] = Path("comparison"),
    threshold: Threshold = 10.0,
    log_loss: Annotated[bool, typer.Option(help="Log scale for the loss panels.")] = False,
    logdir: LookupLogdir = Path("tb_logs"),
    tensorboard: TensorBoardOut = None,
) -> None:
    """Compare runs: learning curves on shared axes, a summary table and an overfitting verdict."""
    from ..analysis.compare import compare_runs
    from ..tblog import board_dir

    if len(runs) < 2:
        raise CnnlabError("compare needs two or more runs (run folders or names); give another RUN")
    board = board_dir(tensorboard, "compare", out) if tensorboard else None
    result = compare_runs(runs, out=out, logdir=logdir, threshold=threshold, log_loss=log_loss, tensorboard=board)
    render.comparison(result)


@command
@fit_options(exclude=("frac", "dropout", "name", "resume"))
def study(
    fracs: Annotated[str, typer.Option(help="Comma-separated data fractions.")] = "0.2,1.0",
    dropouts: Annotated[str, typer.Option(help="Comma-separated dropout rates.")] = "0,0.5",
    seeds: Annotated[int, typer.Option(help="Seeds per setting (seed, seed+1, ...); >1 draws mean and bands.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for README.md, the figures and the tables.")] = Path("study_out"),
    lang: Annotated[
        str, typer.Option(help="Language of the report written at the end: en, ja, or both (report_en/, report_ja/).")
    ] = "both",
    jobs: Annotated[
        str,
        typer.Option(
            help="Runs trained at once, each in its own process (or on its own GPU): a number, or auto (as many as "
            "the cores hold). Each run trains on --threads or cores // grid size threads whatever --jobs, so --jobs "
            "changes the speed, never the results."
        ),
    ] = "auto",
    jobs_per_gpu: Annotated[int, typer.Option(help="With --jobs on GPUs: runs that share one GPU.")] = 1,
    shard: Annotated[
        str | None,
        typer.Option(help="K/N: train only this machine's share of the grid (runs K, K+N, ...) into a shared logdir."),
    ] = None,
    collect: Annotated[
        bool, typer.Option(help="Train nothing: once every shard is done, write the comparison and the report.")
    ] = False,
    **options: Any,
) -> None:
    """Run the exercise's grid (fractions x dropouts x seeds), resumably, and write the comparison and the report."""
    if shard is not None and collect:
        raise CnnlabError("--shard and --collect: give one; each shard trains, --collect then compares the grid")
    if lang not in ("en", "ja", "both"):
        raise CnnlabError(f"--lang {lang!r}: unknown; choose en, ja or both")
    which = parse_shard(shard) if shard is not None else None
    base, n_jobs = fit_config(options), parse_jobs(jobs)
    fracs_, dropouts_ = parse_list(fracs, "--fracs"), parse_list(dropouts, "--dropouts")
    study_grid(base, fracs_, dropouts_, seeds)  # every bad value fails here, before torch and Lightning load
    from ..training.study import run_study

    with render.GridDisplay() as display:
        result = run_study(
            base,
            fracs=fracs_,
            dropouts=dropouts_,
            seeds=seeds,
            out=out,
            on_event=display.show,
            shard=which,
            collect=collect,
            jobs=n_jobs,
            jobs_per_gpu=jobs_per_gpu,
            langs=("en", "ja") if lang == "both" else (lang,),
        )
    if result.comparison is None and which is not None:  # a shard: the comparison waits for --collect
        render.shard_done(which, len(result.run_dirs), result.grid_size)
        return
    render.study_done(result)


@command
def report(
    runs: Annotated[
        list[str], typer.Argument(help="Run names, run folders, or a study's output folder (all its runs).")
    ],
    out: Annotated[Path, typer.Option(help="Folder for REPORT.md, report.html, findings.json and figures.")] = Path(
        "report"
    ),
    lang: Annotated[str, typer.Option(help="Language: en (English) or ja (Japanese).")] = "en",
    filters_dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--filters",
            help="A `cnnlab filters` output folder (repeatable): Part 2 for the trained network and/or InceptionV3.",
        ),
    ] = None,
    keras: Annotated[
        Path | None, typer.Option(help="Curves JSON from benchmarks/parity_keras.py --epochs N: adds Keras 3.")
    ] = None,
    logdir: LookupLogdir = Path("tb_logs"),
    tensorboard: TensorBoardOut = None,
) -> None:
    """Write the lab report from the runs: setup, curves, results, findings, the exercise's claims tested."""
    from ..analysis.report import write_report
    from ..tblog import board_dir

    board = board_dir(tensorboard, "report", out) if tensorboard else None
    result = write_report(
        runs, out, lang=lang, filters_dirs=filters_dirs, logdir=logdir, keras_curves=keras, tensorboard=board
    )
    render.conclusions(result.conclusions)
    render.say(f"wrote {out / 'REPORT.md'}, {out / 'report.html'}, {out / 'findings.json'}")


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
    tensorboard: TensorBoardOut = None,
    model: Annotated[str | None, typer.Option(help="Study a cnnlab checkpoint's first layer instead.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --weights random.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Fashion-MNIST folder (with --model and no images).")] = None,
) -> None:
    """Show what InceptionV3's first conv layer sees: filters, feature maps, taxonomy, tuning curves."""
    from ..filters import run_filters

    result = run_filters(
        [str(p) for p in images or []],
        probes=probe,
        weights=weights,
        out=out,
        normalize=normalize,
        board_logdir=str(tensorboard) if tensorboard else None,
        model=model,
        seed=seed,
        data_dir=str(data_dir) if data_dir else None,
    )
    render.filters_summary(result)
