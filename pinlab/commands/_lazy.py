"""The ``pinlab`` command group, importing a command's module only when it runs.

Importing every command module at start-up imported pandas, DuckDB, lifelines and Dask
for ``pinlab --help`` and ``pinlab pins FILE`` (0.6 s quiet, several seconds loaded). Here
``--help`` lists :data:`COMMANDS` (name, module, one-line help) without importing a module,
and a command's module is imported, and its ``register(app)`` run, when it is invoked or
its own help is asked for. ``tests/test_cli_start.py`` holds the table equal to what the
modules register, so a one-line help cannot drift from its command's docstring.

Help is plain click text (``rich_markup_mode=None``): flags show no type, options show the
type of their value, and RST literals of docstrings (````text````) print as ``text``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, NamedTuple

import typer
import typer.main
from typer.core import TyperGroup

# typer vendors click as a private module (typer._click): its command and context types are
# not public, so they are Any here.
Command = Any
Context = Any

__all__ = ["COMMANDS", "LazyGroup", "plain_help"]


class Entry(NamedTuple):
    """Where a top-level command lives and what ``pinlab --help`` says of it."""

    module: str
    help: str


COMMANDS: dict[str, Entry] = {
    "collect": Entry(
        "collect", "Collect the certificate chains of every target into the store (a new scan)."
    ),
    "export": Entry("collect", "Write the store as a Parquet dataset (one folder per table)."),
    "import": Entry(
        "collect", "Add a Parquet dataset to the store (scans already present are skipped)."
    ),
    "import-pem": Entry(
        "collect", "Import PEM chain dumps listed by a manifest as one scan (source import)."
    ),
    "demo": Entry("demo", "Write the pins of every certificate of the shared data, host by host."),
    "demo-campaign": Entry(
        "demo",
        "Run a collection campaign on loopback: pinlab collect against an nginx farm whose "
        "answers are known (valid chains, an untrusted root, hostname mismatches, a closed "
        "port).",
    ),
    "store": Entry("store", "Look after a store file: check it."),
    "history": Entry(
        "history", "The renewal ledger: key reuse and issuer changes across renewals."
    ),
    "pins": Entry(
        "pins",
        "List the pins of every certificate a host serves, or a file holds, or of a public key.",
    ),
    "check": Entry("pins", "Validate a host's chain, then check pins against it."),
    "recommend": Entry(
        "recommend",
        "Suggest a pin set with a backup for HOST, ranked within the history the store has.",
    ),
    "audit": Entry(
        "recommend", "Lint a pin configuration and replay it against the history in the store."
    ),
    "report": Entry(
        "report", "Execute the notebooks against a store; write each as HTML plus an index.html."
    ),
    "updates": Entry(
        "scenarios",
        "Users stranded by broken pins, given releases every N days and slow updaters.",
    ),
    "forward": Entry(
        "scenarios",
        "Survival per strategy under SC-081, 6-day certificates and random rotation.",
    ),
    "simulate": Entry(
        "simulate", "When would each pinning strategy have broken the app? One row per pin."
    ),
    "bench": Entry(
        "bench", "Measure what a pin check costs, against its limit and its surroundings."
    ),
    "ct": Entry(
        "ct",
        "Backfill issuance history from Certificate Transparency (issuance, not deployment).",
    ),
    "lab": Entry("lab", "Make real ACME renewals happen on loopback and record them."),
    "truststores": Entry("truststores", "Mozilla's root store over the years (certifi releases)."),
}
"""Every top-level command, in the order ``pinlab --help`` lists them."""

_RST_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def plain_help(text: str | None) -> str | None:
    """Help text as a terminal shows it: RST literals (````x````) become plain ``x``."""
    return None if text is None else _RST_LITERAL.sub(r"\1", text)


def load_module_commands(module: str) -> dict[str, Command]:
    """The click commands ``pinlab.commands.<module>`` registers, by name, with plain help."""
    scratch = typer.Typer(rich_markup_mode=None, add_completion=False)
    importlib.import_module(f"pinlab.commands.{module}").register(scratch)
    built = typer.main.get_command(scratch)
    commands = dict(built.commands) if isinstance(built, TyperGroup) else {built.name: built}
    for command in commands.values():
        _plain(command)
    return {name: command for name, command in commands.items() if name is not None}


def _plain(command: Command) -> None:
    """No rich panels, no RST: for this command and, in a group, every subcommand."""
    command.rich_markup_mode = None
    command.help = plain_help(command.help)
    command.short_help = plain_help(command.short_help)
    for param in command.params:
        if getattr(param, "help", None):  # options, and typer's arguments
            setattr(param, "help", plain_help(getattr(param, "help")))  # noqa: B009, B010
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _plain(sub)


class LazyGroup(TyperGroup):
    """A typer group whose commands are imported on first use (see the module docstring)."""

    def list_commands(self, ctx: Context) -> list[str]:
        """Every command, in :data:`COMMANDS` order, without importing any."""
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The real command, its module imported now (once)."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands.update(load_module_commands(COMMANDS[cmd_name].module))
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Context, formatter: Any) -> None:
        """The command list of ``--help``, from :data:`COMMANDS` alone."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.help) for name, entry in COMMANDS.items()])
