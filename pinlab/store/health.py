"""Is a store file whole? Opening checks, damage messages, and ``pinlab store check``.

A store can be damaged by a full disk, a bad copy or a failing drive: DuckDB then says
``IO Error: Could not read enough bytes`` or ``Corrupt database file: computed checksum``
from deep inside a query. :func:`damaged` turns such an error into one line that names the
file and the way out; :func:`inspect_file` refuses, before anything is written, a file that
is not a pinlab store, that lacks a table, or whose schema version is unreadable or newer;
:func:`check_store` reads every table and reports what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pinlab.store.schema import SCHEMA_VERSION, TABLES, StoreError, first_line

__all__ = ["StoreCheck", "check_store", "damaged", "inspect_file", "is_damage", "is_lock"]

_DAMAGE_MARKERS = (
    "corrupt database file",
    "does not match stored checksum",
    "could not read enough bytes",
    "not a valid duckdb database file",
)


def is_lock(error: BaseException) -> bool:
    """Whether DuckDB refused a file because another process holds it."""
    text = str(error).lower()
    return "could not set lock" in text or "conflicting lock" in text


def is_damage(error: BaseException) -> bool:
    """Whether a DuckDB error means the file's bytes are bad (not a bug, not a lock)."""
    if not isinstance(error, duckdb.Error) or is_lock(error):
        return False
    # Judged by what DuckDB says it could not *read*: an IO error while writing an output
    # (a full disk under simulate --out) is not the store's damage.
    text = str(error).lower()
    return isinstance(error, duckdb.SerializationException) or any(
        marker in text for marker in _DAMAGE_MARKERS
    )


def damaged(path: Path | str, error: BaseException) -> StoreError:
    """The one-line error for a damaged store, with what to do next."""
    return StoreError(
        f"the store {path} is damaged ({first_line(error)}); restore it from its Parquet "
        f"export, or run `pinlab store check {path}`"
    )


def _schema_version(path: Path, connection: duckdb.DuckDBPyConnection) -> int:
    rows = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    if not rows:
        return 0
    row = rows[0]
    try:
        return int(row[0])
    except ValueError:
        raise StoreError(
            f"{path}: the meta table's schema_version is {row[0]!r}, not a number: the store "
            f"is damaged; restore it from its Parquet export, or run `pinlab store check {path}`"
        ) from None


def _inspect(path: Path, connection: duckdb.DuckDBPyConnection) -> list[str]:
    """Missing tables of a pinlab store ([] when whole); StoreError if it is not one."""
    tables = {
        row[0] for row in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    }
    if not tables:
        return []  # an empty DuckDB file: a new store is created in it
    if "meta" not in tables:
        raise StoreError(f"{path}: a DuckDB file, but not a pinlab store (no meta table)")
    version = _schema_version(path, connection)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than this pinlab's "
            f"({SCHEMA_VERSION}); upgrade pinlab to use it"
        )
    return [table for table in TABLES if table not in tables]


def _open_probe(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        if is_lock(error):
            raise StoreError(
                f"{path}: store is in use by another process ({first_line(error)}); to read "
                "a running campaign, collect with --snapshot-every and open its snapshot "
                "(pinlab.store.open_snapshot)"
            ) from None
        if is_damage(error):
            raise damaged(path, error) from None
        raise StoreError(f"{path}: cannot open store: {first_line(error)}") from None


def inspect_file(path: Path) -> None:
    """Refuse, read-only, a file that is not a whole pinlab store of a known schema."""
    probe = _open_probe(path)
    try:
        missing = _inspect(path, probe)
    except duckdb.Error as error:
        if is_damage(error):
            raise damaged(path, error) from None
        raise StoreError(f"{path}: cannot read the store: {first_line(error)}") from None
    finally:
        probe.close()
    if missing:
        raise StoreError(
            f"{path}: the store is incomplete: it lacks the table(s) {', '.join(missing)}; "
            "restore it from its Parquet export, or run `pinlab store check` on it"
        )


@dataclass
class StoreCheck:
    """What :func:`check_store` found: row counts, and problems (none when healthy)."""

    path: Path
    schema_version: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


_DANGLING = (
    "WITH named AS (SELECT DISTINCT unnest(chain) AS sha256, scan_id, host, port, observed_at "
    "FROM observations), missing AS (SELECT * FROM named WHERE sha256 NOT IN "
    "(SELECT sha256 FROM certificates)) "
    "SELECT count(DISTINCT (scan_id, host, port, observed_at)), count(DISTINCT sha256), "
    "min(sha256) FROM missing"
)


def check_store(path: str | Path) -> StoreCheck:
    """Open ``path`` read-only, read every table, and check the store's invariants.

    Checks: DuckDB can open the file; it is a pinlab store of a known schema version; every
    table exists and every row of it can be read (which makes DuckDB verify each block's
    checksum); every certificate an observation's chain names is stored.
    """
    path = Path(path)
    report = StoreCheck(path)
    if not path.is_file():
        report.problems.append(f"{path}: no such store file")
        return report
    try:
        probe = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        held = " (in use by another process)" if is_lock(error) else ""
        report.problems.append(f"DuckDB cannot open it{held}: {first_line(error)}")
        return report
    try:
        missing = _inspect(path, probe)
        report.schema_version = _schema_version(path, probe)
        report.problems += [f"table {table} is missing" for table in missing]
        for table in ("meta", *TABLES):
            if table in missing:
                continue
            try:
                # Reading every column of every row makes DuckDB verify every block.
                reader = probe.sql(f"SELECT * FROM {table}").to_arrow_reader(65536)
                report.counts[table] = sum(batch.num_rows for batch in reader)
            except duckdb.Error as error:
                report.problems.append(f"table {table} cannot be read: {first_line(error)}")
        if not report.problems:
            rows = probe.execute(_DANGLING).fetchall()
            observations, certificates, example = rows[0] if rows else (0, 0, "")
            if observations:
                report.problems.append(
                    f"{observations} observations name {certificates} certificates the store "
                    f"does not hold (e.g. {example})"
                )
    except StoreError as error:
        report.problems.append(str(error))
    except duckdb.Error as error:
        report.problems.append(f"cannot be read: {first_line(error)}")
    finally:
        probe.close()
    return report
