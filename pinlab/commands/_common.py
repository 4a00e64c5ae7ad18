"""Helpers shared by the CLI command modules (not a command module itself)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import typer
from rich.console import Console

from pinlab.errors import PinlabError
from pinlab.verify import TrustStore

if TYPE_CHECKING:
    import pandas as pd  # the analysis commands' frames; pins and check never load pandas

EXIT_USAGE = 2

# soft_wrap: lines are data (pins, paths) that must survive a pipe unbroken.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn pinlab's deliberate errors into one line on stderr and exit status 2."""
    try:
        yield
    except PinlabError as error:
        err_console.print(f"pinlab: error: {error}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def parse_time(text: str | None) -> datetime:
    """An ISO-8601 time (UTC when no offset is given); now when ``text`` is None."""
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise PinlabError(f"time {text!r} is not ISO-8601 (e.g. 2026-01-31T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def trust_store(ca_file: Path | None) -> TrustStore:
    """The trust store named by ``--ca-file``, or certifi's."""
    return TrustStore.from_pem_file(ca_file) if ca_file is not None else TrustStore.certifi()


class StoreFrames(NamedTuple):
    """The three tables the analysis commands read from a store."""

    observations: pd.DataFrame
    certificates: pd.DataFrame
    scans: pd.DataFrame


def load_store_frames(db: Path) -> StoreFrames:
    """Read a store's observations, certificates and scans (a DuckDB file or a dataset)."""
    from pinlab.store import open_store

    if not db.exists():
        raise PinlabError(f"{db}: no such store (pinlab collect or import-pem makes one)")
    with open_store(db) as store:
        return StoreFrames(store.observations_df(), store.certificates_df(), store.scans_df())
