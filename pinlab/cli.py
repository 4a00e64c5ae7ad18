"""The ``pinlab`` command: a thin skin over the library.

Each module of :mod:`pinlab.commands` adds its commands through ``register(app)``; the
group imports a module only when one of its commands runs (:mod:`pinlab.commands._lazy`,
whose table lists every command for ``--help``). Every error pinlab raises on purpose
becomes one line on stderr and exit status 2. So do errors of DuckDB and of the operating
system that reach this edge (a damaged store, a full disk, a missing permission): the user
reads what failed and what to do next, and ``--debug`` (or ``PINLAB_DEBUG=1``) shows the
traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from pinlab.commands._lazy import LazyGroup
from pinlab.commands._output import say, shown
from pinlab.errors import PinlabError

app = typer.Typer(
    name="pinlab",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

EXIT_USAGE = 2
DEBUG_ENV = "PINLAB_DEBUG"


@app.callback()
def _pinlab(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
) -> None:
    """Decide, from data, how to pin TLS public keys."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def _is_duckdb_error(error: BaseException) -> bool:
    # DuckDB is imported by the commands that need it only (start-up stays light), so its
    # errors are recognised through the module already loaded, if any.
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(error, duckdb.Error)


def describe(error: BaseException) -> str:
    """One line for an error of DuckDB or the OS, with what to do next."""
    if _is_duckdb_error(error):
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


def main() -> None:
    """Entry point of the ``pinlab`` script."""
    try:
        app()
    except PinlabError as error:
        say(f"pinlab: error: {shown(error)}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as error:
        if not (_is_duckdb_error(error) or isinstance(error, OSError)):
            raise
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        say(f"pinlab: error: {shown(describe(error))}", err=True)
        sys.exit(EXIT_USAGE)
