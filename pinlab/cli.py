"""The ``pinlab`` command: a thin skin over the library.

Each module of :mod:`pinlab.commands` adds its commands through ``register(app)``, so a new
stage plugs in without editing this file. Every error pinlab raises on purpose becomes one
line on stderr and exit status 2. So do errors of DuckDB and of the operating system that
reach this edge (a damaged store, a full disk, a missing permission): the user reads what
failed and what to do next, and ``--debug`` (or ``PINLAB_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Annotated

import duckdb
import typer

import pinlab.commands
from pinlab.errors import PinlabError

app = typer.Typer(
    name="pinlab",
    help="Decide, from data, how to pin TLS public keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EXIT_USAGE = 2
DEBUG_ENV = "PINLAB_DEBUG"


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


def describe(error: BaseException) -> str:
    """One line for an error of DuckDB or the OS, with what to do next."""
    if isinstance(error, duckdb.Error):
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            f"DuckDB: {text}; if a store is damaged, run `pinlab store check DB` "
            "(--debug shows the traceback)"
        )
    assert isinstance(error, OSError)
    where = f"{error.filename}: " if error.filename else ""
    return (
        f"{where}{error.strerror or error}; check the path, its permissions and the free "
        "space (--debug shows the traceback)"
    )


def _register_commands() -> None:
    modules = sorted(pkgutil.iter_modules(pinlab.commands.__path__), key=lambda m: m.name)
    for module_info in modules:
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pinlab.commands.{module_info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    """Entry point of the ``pinlab`` script."""
    try:
        app()
    except PinlabError as error:
        typer.echo(f"pinlab: error: {error}", err=True)
        sys.exit(EXIT_USAGE)
    except (duckdb.Error, OSError) as error:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        typer.echo(f"pinlab: error: {describe(error)}", err=True)
        sys.exit(EXIT_USAGE)
