"""The ``pinlab`` command: a thin skin over the library.

Each module of :mod:`pinlab.commands` adds its commands through ``register(app)``; the
group imports a module only when one of its commands runs (:mod:`pinlab.commands._lazy`,
whose table lists every command for ``--help``). Every error pinlab raises on purpose
becomes one line on stderr and exit status 2; only bugs print a traceback.
"""

from __future__ import annotations

import sys

import typer

from pinlab.commands._lazy import LazyGroup
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


@app.callback()
def _pinlab() -> None:
    """Decide, from data, how to pin TLS public keys."""


def main() -> None:
    """Entry point of the ``pinlab`` script."""
    try:
        app()
    except PinlabError as error:
        typer.echo(f"pinlab: error: {error}", err=True)
        sys.exit(EXIT_USAGE)
