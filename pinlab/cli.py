"""The ``pinlab`` command: a thin skin over the library.

Each module of :mod:`pinlab.commands` adds its commands through ``register(app)``, so a new
stage plugs in without editing this file. Every error pinlab raises on purpose becomes one
line on stderr and exit status 2; only bugs print a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

import pinlab.commands
from pinlab.commands._output import say, shown
from pinlab.errors import PinlabError

app = typer.Typer(
    name="pinlab",
    help="Decide, from data, how to pin TLS public keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EXIT_USAGE = 2


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
        say(f"pinlab: error: {shown(error)}", err=True)
        sys.exit(EXIT_USAGE)
