"""The flat Parquet dataset ``pinlab export`` writes and ``pinlab import`` reads.

Layout: ``DIR/<table>/part-0.parquet`` for each table, then ``DIR/meta/part-0.parquet``.
The meta part is the dataset's manifest and is written **last**: it holds the schema
version and the rows written to every table (``rows:<table>``). Each part is written under
a temporary name, read back, flushed and renamed (:mod:`pinlab.store.atomic`), so a dataset
whose export failed (full disk) or was killed has no meta part, or parts that disagree with
it, and :func:`import_flat` refuses it. A failed export also removes what it wrote.

Imports are idempotent: scans already stored are skipped, certificates are kept once, and
observations are deduplicated on their natural key (:data:`~pinlab.store.schema.OBSERVATION_KEY`),
within the dataset and against the store. A dataset whose observations name certificates it
does not hold is refused, with the count: history and survival would read such chains as
shorter than they were.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pinlab.store.atomic import copy_atomic, write_failure
from pinlab.store.schema import (
    OBSERVATION_KEY,
    SCHEMA_VERSION,
    TABLES,
    StoreError,
    first_line,
    sql_path,
)

__all__ = ["export_flat", "import_flat", "table_counts"]

_ORDER = {
    "certificates": "sha256",
    "scans": "started_at, scan_id",
    "observations": "scan_id, observed_at, host, port",
}
_COUNT_KEY = "rows:"


def table_counts(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows per table of :data:`~pinlab.store.schema.TABLES`."""
    counts = {}
    for table in TABLES:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def export_flat(connection: duckdb.DuckDBPyConnection, directory: str | Path) -> dict[str, int]:
    """Write every table, then the meta part; rows per table. All or nothing on disk.

    The directory may exist but must not already hold a dataset.
    """
    directory = Path(directory)
    for table in ("meta", *TABLES):
        if (directory / table).exists():
            raise StoreError(f"{directory}: already holds a dataset ({table}/); pick a new one")
    created: list[Path] = []
    counts: dict[str, int] = {}
    try:
        for table in (*TABLES, "meta"):
            folder = directory / table
            folder.mkdir(parents=True)
            created.append(folder)
            target = folder / "part-0.parquet"
            if table == "meta":
                copy_atomic(connection, _meta_query(counts), target, options="FORMAT PARQUET")
            else:
                query = f"SELECT * FROM {table} ORDER BY {_ORDER[table]}"
                counts[table] = copy_atomic(connection, query, target, options="FORMAT PARQUET")
    except (OSError, duckdb.Error) as error:
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        raise write_failure(directory, error) from None
    return counts


def _meta_query(counts: dict[str, int]) -> str:
    rows = ", ".join(f"('{_COUNT_KEY}{table}', '{count}')" for table, count in counts.items())
    return (
        f"SELECT key, value FROM meta WHERE key NOT LIKE '{_COUNT_KEY}%' "
        f"UNION ALL SELECT * FROM (VALUES {rows}) ORDER BY key"
    )


def _parts(directory: Path, table: str) -> list[Path]:
    folder = directory / table
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def _source(parts: list[Path]) -> str:
    files = ", ".join(f"'{sql_path(part)}'" for part in parts)
    return f"read_parquet([{files}], union_by_name = true)"


def _check_manifest(directory: Path, parts: dict[str, list[Path]]) -> None:
    """Refuse a dataset that is incomplete or of a newer schema, before reading its rows."""
    if not parts["meta"]:
        raise StoreError(
            f"{directory}: incomplete dataset: no meta/ part, which pinlab export writes last "
            "(the export failed or was interrupted); export it again"
        )
    for table in TABLES:
        if not parts[table]:
            raise StoreError(f"{directory}: incomplete dataset: it lacks its {table} table")
    try:
        rows = pq.read_table(parts["meta"][0], columns=["key", "value"]).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{directory}: unreadable meta part: {error}") from None
    meta = {row["key"]: row["value"] for row in rows}
    version = meta.get("schema_version", "0")
    if not str(version).isdigit():
        raise StoreError(f"{directory}: dataset schema version {version!r} is not a number")
    if int(version) > SCHEMA_VERSION:
        raise StoreError(
            f"{directory}: dataset schema version {version} is newer than this "
            f"pinlab's ({SCHEMA_VERSION}); upgrade pinlab to read it"
        )
    for table in TABLES:
        expected = meta.get(f"{_COUNT_KEY}{table}")
        if expected is None:
            continue  # written before exports recorded their counts
        try:
            held = sum(pq.read_metadata(part).num_rows for part in parts[table])
        except (OSError, pa.ArrowException) as error:
            raise StoreError(f"{directory}: {table} part unreadable: {error}") from None
        if held != int(expected):
            raise StoreError(
                f"{directory}: incomplete dataset: {table}/ holds {held} rows, its export "
                f"wrote {expected}; export it again"
            )


_KEY_MATCH = " AND ".join(
    f"o.{column} IS NOT DISTINCT FROM n.{column}" for column in OBSERVATION_KEY
)


def import_flat(connection: duckdb.DuckDBPyConnection, directory: str | Path) -> dict[str, int]:
    """Merge a dataset written by :func:`export_flat` into a store; rows added per table.

    One transaction: all or nothing.
    """
    directory = Path(directory)
    parts = {table: _parts(directory, table) for table in ("meta", *TABLES)}
    _check_manifest(directory, parts)
    source = {table: _source(parts[table]) for table in TABLES}
    key = ", ".join(OBSERVATION_KEY)
    try:
        dangling = connection.execute(
            f"SELECT count(DISTINCT ({key})), count(DISTINCT sha256) FROM ("
            f"SELECT unnest(chain) AS sha256, {key} FROM {source['observations']}) "
            f"WHERE sha256 NOT IN (SELECT sha256 FROM {source['certificates']})"
        ).fetchone()
        if dangling and dangling[0]:
            raise StoreError(
                f"{directory}: {dangling[0]} observations name {dangling[1]} certificates the "
                "dataset does not hold; refused (export the whole store again)"
            )
        before = table_counts(connection)
        connection.execute("BEGIN TRANSACTION")
        try:
            _merge(connection, source, key)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    except duckdb.Error as error:
        raise StoreError(f"{directory}: cannot import dataset: {first_line(error)}") from None
    after = table_counts(connection)
    return {table: after[table] - before[table] for table in TABLES}


def _merge(connection: duckdb.DuckDBPyConnection, source: dict[str, str], key: str) -> None:
    connection.execute(
        "CREATE TEMP TABLE _new_scans AS SELECT DISTINCT scan_id FROM "
        f"{source['scans']} WHERE scan_id NOT IN (SELECT scan_id FROM scans)"
    )
    connection.execute(
        f"INSERT INTO certificates BY NAME SELECT DISTINCT ON (sha256) * FROM "
        f"{source['certificates']} ON CONFLICT DO NOTHING"
    )
    connection.execute(
        f"INSERT INTO scans BY NAME SELECT DISTINCT ON (scan_id) * FROM {source['scans']} "
        "WHERE scan_id IN (SELECT scan_id FROM _new_scans)"
    )
    connection.execute(
        f"INSERT INTO observations BY NAME SELECT * FROM (SELECT DISTINCT ON ({key}) * FROM "
        f"{source['observations']} WHERE scan_id IN (SELECT scan_id FROM _new_scans)) n "
        f"WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE {_KEY_MATCH})"
    )
    connection.execute("DROP TABLE _new_scans")
