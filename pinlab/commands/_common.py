"""Helpers shared by the CLI command modules (not a command module itself)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple

import typer

from pinlab.commands._options import parse_time
from pinlab.commands._output import console, err_console, say, shown
from pinlab.errors import PinlabError
from pinlab.verify import TrustStore

if TYPE_CHECKING:
    import pandas as pd  # the analysis commands' frames; pins and check never load pandas

    from pinlab.memory import MemoryBudget

__all__ = [
    "EXIT_USAGE",
    "StoreFrames",
    "console",
    "err_console",
    "interrupt_once",
    "load_store_frames",
    "parse_time",
    "say",
    "shown",
    "trust_store",
    "usage_errors",
]

EXIT_USAGE = 2


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    # The first Ctrl-C starts the clean shutdown; a second one, pressed while the store is
    # committed and the progress bar closed, must not cut that short (exit by signal).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextmanager
def interrupt_once() -> Iterator[None]:
    """Within the block, Ctrl-C raises KeyboardInterrupt once; later ones are ignored (to
    the end of the process once it was interrupted: the shutdown runs to its end)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGINT, _interrupt_once)
    try:
        yield
    finally:
        # Once interrupted, Ctrl-C stays ignored until the process has closed its store.
        if signal.getsignal(signal.SIGINT) is _interrupt_once:
            signal.signal(signal.SIGINT, previous)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn pinlab's deliberate errors into one line on stderr and exit status 2."""
    try:
        yield
    except PinlabError as error:
        say(f"pinlab: error: {shown(error)}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def trust_store(ca_file: Path | None) -> TrustStore:
    """The trust store named by ``--ca-file``, or certifi's."""
    return TrustStore.from_pem_file(ca_file) if ca_file is not None else TrustStore.certifi()


class StoreFrames(NamedTuple):
    """The three tables the analysis commands read from a store."""

    observations: pd.DataFrame
    certificates: pd.DataFrame
    scans: pd.DataFrame


def load_store_frames(db: Path, *, memory: MemoryBudget | None = None) -> StoreFrames:
    """Read a store's observations, certificates and scans (a DuckDB file or a dataset);
    DuckDB within ``memory`` while it reads."""
    from pinlab.store import open_store

    if not db.exists():
        raise PinlabError(f"{db}: no such store (pinlab collect or import-pem makes one)")
    with open_store(db, memory=memory) as store:
        return StoreFrames(store.observations_df(), store.certificates_df(), store.scans_df())
