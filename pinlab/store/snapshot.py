"""Snapshots a running campaign leaves for readers: a store readable while it is written.

DuckDB lets one process hold a store file for writing, and refuses every other process, even
read-only. So the writer itself publishes what it has committed: ``pinlab collect
--snapshot-every SECONDS`` exports the store, between two batches, as a flat Parquet dataset
``DB.snapshots/<n>/`` (:mod:`pinlab.store.parquet`: every part written whole, the meta part
last), then removes all but the two newest. :func:`open_snapshot` opens the newest whole one
with the read API of :func:`~pinlab.store.open_store`, from any process, while the campaign
runs. Each snapshot costs an export of the whole store, so choose the interval by the
store's size (a minute for millions of observations).

A reader holds a shared ``flock`` on its snapshot's lock file until it closes it, and an old
snapshot is removed only under an exclusive lock taken without waiting: a snapshot being
read is never removed under its reader, however slow the reader or short the interval
(before, a reader slower than two intervals lost its files mid-query). Whoever finds an old
snapshot free removes it, the writer after each export or a reader when it closes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from functools import partial
from pathlib import Path

import duckdb

from pinlab.store.dataset import DatasetStore, open_dataset
from pinlab.store.parquet import export_flat
from pinlab.store.schema import StoreError

__all__ = ["KEEP", "SnapshotWriter", "latest_snapshot", "open_snapshot", "snapshot_dir"]

KEEP = 2
"""Snapshots kept: a reader that opened the previous one can finish reading it."""

_COMPLETE = Path("meta") / "part-0.parquet"  # export_flat writes it last
_LOCK = "readers.lock"
_OPEN_TRIES = 20


def snapshot_dir(db: str | Path) -> Path:
    """The folder holding the snapshots of the store file ``db``."""
    db = Path(db)
    return db.with_name(db.name + ".snapshots")


def _numbered(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    return sorted((int(p.name), p) for p in root.iterdir() if p.name.isdigit() and p.is_dir())


def latest_snapshot(db: str | Path) -> Path | None:
    """The newest whole snapshot of ``db`` (None if there is none)."""
    whole = [path for _, path in _numbered(snapshot_dir(db)) if (path / _COMPLETE).is_file()]
    return whole[-1] if whole else None


def open_snapshot(db: str | Path) -> DatasetStore:
    """The newest whole snapshot of the store ``db``, for reading while a campaign writes it.

    The snapshot stays on disk until the store returned is closed (see the module's text).
    """
    for _ in range(_OPEN_TRIES):
        latest = latest_snapshot(db)
        if latest is None:
            raise StoreError(
                f"{db}: no snapshot to read; run the campaign with pinlab collect "
                "--snapshot-every SECONDS (or, once it has ended, open the store itself)"
            )
        lease = _lease(latest)
        if lease is None:
            continue  # removed between finding it and locking it: take the newer one
        try:
            store = open_dataset(latest)
        except BaseException:
            os.close(lease)
            raise
        store.on_close(partial(_release, lease, latest.parent))
        return store
    raise StoreError(f"{db}: snapshots are removed faster than they can be opened")


def _lock_file(snapshot: Path) -> int | None:
    """A descriptor of ``snapshot``'s lock file, None if the snapshot is gone.

    The writer makes the file with the snapshot (readers need no write access); one made
    before readers took locks gets it now.
    """
    try:
        return os.open(snapshot / _LOCK, os.O_RDONLY)
    except FileNotFoundError:
        try:
            return os.open(snapshot / _LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            return None


def _lease(snapshot: Path) -> int | None:
    """A shared lock on ``snapshot`` (its descriptor), None if it is being or was removed."""
    fd = _lock_file(snapshot)
    if fd is None:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a remover holds it (an rmtree)
    if (snapshot / _COMPLETE).is_file():
        return fd
    os.close(fd)
    return None


def _release(lease: int, root: Path) -> None:
    os.close(lease)
    _prune(root)


def _prune(root: Path) -> None:
    """Remove the snapshots older than the newest :data:`KEEP` that no reader holds."""
    for _, old in _numbered(root)[:-KEEP]:
        fd = _lock_file(old)
        if fd is None:
            continue  # removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a reader holds it: whoever finds it free later removes it
        try:
            # No longer whole first: a reader that finds the lock file already gone makes a
            # new one, and must then see a snapshot being removed, not one to read.
            (old / _COMPLETE).unlink(missing_ok=True)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            os.close(fd)


class SnapshotWriter:
    """Called by the writer of a store after each batch; snapshots every ``every`` seconds."""

    def __init__(self, db: Path, every: float) -> None:
        self.root, self.every = snapshot_dir(db), every
        self.last: float | None = None

    def __call__(self, connection: duckdb.DuckDBPyConnection, *, force: bool = False) -> None:
        """Write a snapshot if ``every`` seconds have passed since the last (or ``force``)."""
        now = time.monotonic()
        if not force and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        existing = _numbered(self.root)
        number = existing[-1][0] + 1 if existing else 1
        snapshot = self.root / f"{number:09d}"
        snapshot.mkdir(parents=True)
        (snapshot / _LOCK).touch()  # before the snapshot is whole, so every reader finds it
        export_flat(connection, snapshot)
        _prune(self.root)
