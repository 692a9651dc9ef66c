"""The Typer app and the one rule every command shares: a mistake the user can fix is one line and exit code 2."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from ..errors import CnnlabError, TrainingInterrupted, first_line
from . import render

app = typer.Typer(
    help="Train the classic Fashion-MNIST CNN lab, compare runs, export to ONNX, look inside InceptionV3's stem.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print cnnlab's version and exit.")] = False,
) -> None:
    if version:
        from .. import __version__

        render.say(f"cnnlab {__version__}")
        raise typer.Exit()


def _shows_warnings(show: Callable[..., None]) -> Callable[..., None]:
    def show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        """cnnlab's own warnings are one line on stderr; everyone else's as Python shows them."""
        if category.__name__ == "SlowPrecisionWarning":
            render.warn(str(message))
        else:
            show(message, category, *args, **kwargs)

    return show_warning


def _is_misconfiguration(e: Exception) -> bool:
    """Lightning's MisconfigurationException, looked up only if Lightning is loaded: `--help` and option errors
    never import it (it brings torch: seconds)."""
    module = sys.modules.get("lightning.fabric.utilities.exceptions")
    return module is not None and isinstance(e, module.MisconfigurationException)


def _fail(message: str, code: int = 2) -> typer.Exit:
    render.error(message)
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
        except Exception as e:
            if _is_misconfiguration(e):  # Lightning's word for option values it cannot use
                raise _fail(f"hardware options: {first_line(e, 300)}") from None
            raise
        except TrainingInterrupted as e:  # exit code 128 + signal, as a shell reports a process a signal ended
            default = "interrupted"  # every stop inside a run says where it stopped and what is kept
            raise _fail(str(e) or default, 128 + e.signum) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None

    app.command()(wrapper)
    return fn
