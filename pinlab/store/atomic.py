"""Files that are whole or absent: write under a temporary name, check, fsync, rename.

A full disk, a quota or a file-size limit makes a write fail part-way; the one thing that
must never follow is a file, under its final name, that a reader takes as complete. Every
Parquet part pinlab writes goes through :func:`write_atomic`, and parts written by DuckDB's
``COPY`` through :func:`copy_atomic`, which also checks that the file on disk holds every
row DuckDB says it wrote.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pinlab.store.schema import StoreError, first_line, sql_path

__all__ = ["TMP_SUFFIX", "copy_atomic", "fsync_directory", "write_atomic", "write_failure"]

TMP_SUFFIX = ".tmp"
_DUCKDB_ERRNO = re.compile(r'"errno":\s*"?(\d+)')


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries, so that a rename in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def write_atomic(target: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target``; on success it becomes ``target``.

    The bytes are flushed to disk before the rename and the directory after it, so after a
    crash the name holds the old file or the whole new one. On failure the temporary file
    is removed and the error propagates.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
    try:
        yield temporary
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        fsync_directory(target.parent)
    finally:
        temporary.unlink(missing_ok=True)


def copy_atomic(
    connection: duckdb.DuckDBPyConnection,
    query: str,
    target: Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    options: str = "FORMAT PARQUET, COMPRESSION ZSTD",
) -> int:
    """``COPY (query) TO target`` through :func:`write_atomic`; the rows written.

    Before the rename, the part's footer is read back: a file cut short by a full disk has
    none, and one whose row count differs from what DuckDB wrote is refused (``EIO``).
    """
    with write_atomic(target) as temporary:
        row = connection.execute(
            f"COPY ({query}) TO '{sql_path(temporary)}' ({options})", parameters or {}
        ).fetchone()
        written = int(row[0]) if row else 0
        try:
            on_disk = pq.read_metadata(temporary).num_rows
        except pa.ArrowException as error:  # no footer: the file was cut short
            raise OSError(errno.EIO, f"{target.name} is unreadable: {error}") from None
        if on_disk != written:
            raise OSError(
                errno.EIO, f"{target.name} holds {on_disk} rows on disk, {written} were written"
            )
    return written


def write_failure(where: Path, error: BaseException) -> StoreError:
    """One line for a failed write (disk full, file too large, permissions...)."""
    reason = first_line(error)
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    elif found := _DUCKDB_ERRNO.search(str(error)):
        # DuckDB wraps the OS's error in JSON; the errno is what the user can act on.
        reason = os.strerror(int(found.group(1)))
    return StoreError(
        f"{where}: cannot write dataset: {reason}; nothing was left that import would take "
        "as complete (free space, then export again)"
    )
