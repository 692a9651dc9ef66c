"""The command line: a thin Typer layer. app.py holds the app and its error rule, options.py the options
written once, commands.py the commands (each calls one library function), render.py everything printed."""

from __future__ import annotations

from . import commands  # noqa: F401  (registers the commands on the app)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
