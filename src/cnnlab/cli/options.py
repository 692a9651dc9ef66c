"""Options written once. `fit`'s options are FitConfig's fields (name, type, default, help: training/config.py); `study`
takes the same options, with the same help, for every field that makes sense for a grid. The options several
other commands share are Annotated aliases here."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from ..errors import CnnlabError
from ..training.config import FitConfig

F = TypeVar("F", bound=Callable[..., Any])


def _parameter(name: str) -> inspect.Parameter:
    f = next(f for f in fields(FitConfig) if f.name == name)
    kind = get_type_hints(FitConfig)[name]
    default = f.default
    if f.metadata.get("path"):  # the command line takes paths; FitConfig keeps them as strings
        kind = Path | None if default is None else Path
        default = None if default is None else Path(str(default))
    option = typer.Option(help=f.metadata["help"], show_default=default is not None)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])


def fit_options(exclude: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Give a command FitConfig's fields as options, after its own; it receives them as ``**options``."""

    def decorate(fn: F) -> F:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [_parameter(f.name) for f in fields(FitConfig) if f.name not in exclude]
        fn.__signature__ = inspect.Signature([*own, *added], return_annotation=None)  # type: ignore[attr-defined]
        return fn

    return decorate


def fit_config(options: dict[str, Any], **overrides: Any) -> FitConfig:
    """The FitConfig the parsed options describe (paths back to strings), its ranges checked before torch loads."""
    values: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    cfg = FitConfig(**(values | overrides))
    cfg.validate()
    return cfg


# --- study's own options ----------------------------------------------------------------------------------


def parse_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CnnlabError(f"{option} {text!r}: give comma-separated numbers, e.g. 0.2,1.0") from None
    if not values:
        raise CnnlabError(f"{option} {text!r}: give at least one value")
    return values


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise CnnlabError(f"--shard {text!r}: give K/N with 1 <= K <= N, e.g. 2/4 for the second of four shards")
    return int(m[1]), int(m[2])


def parse_jobs(text: str | int) -> int | None:
    """--jobs: a count, or "auto" (None: as many runs at once as the machine holds, see auto_jobs)."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        jobs = int(text)
    except ValueError:
        raise CnnlabError(f"--jobs {text!r}: give a number of runs at once, or auto") from None
    if jobs < 1:
        raise CnnlabError(f"--jobs {jobs}: must be at least 1 (or auto)")
    return jobs


def _help(name: str) -> str:
    return next(f.metadata["help"] for f in fields(FitConfig) if f.name == name)


# Shared by export, evaluate, compare, report, filters.
Threads = Annotated[int | None, typer.Option(help=_help("threads"), show_default=False)]
DataDir = Annotated[Path | None, typer.Option(help=_help("data_dir"), show_default=False)]
LookupLogdir = Annotated[Path, typer.Option(help="Where run names are looked up.")]
Checkpoint = Annotated[
    str,
    typer.Option(
        help="For a run name or folder: best (the epoch of lowest validation loss) or last (the final epoch's weights)."
    ),
]
Threshold = Annotated[
    float, typer.Option(help="Overfitting: the median of the last 5 val losses this many % above the smoothed minimum.")
]


# (no square brackets in help texts: Rich would take them for markup and drop them)
TensorBoardOut = Annotated[
    Path | None,
    typer.Option(
        help="Also write the figures as TensorBoard images, as the run LOGDIR/<command>/<out folder name>.",
        metavar="LOGDIR",
        show_default=False,
    ),
]
