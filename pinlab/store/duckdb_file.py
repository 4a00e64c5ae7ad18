"""The DuckDB store: certificates (once, by SHA-256), observations, scans.

Tables are derived once from the record types of :mod:`pinlab.store.records`; ``meta`` holds the
schema version, and a store written by a newer pinlab is refused rather than misread.
Writes come in batches, one transaction each (certificates and the observations naming
them together), so a ``kill -9`` loses at most the batch in flight, never a committed row.
DuckDB allows one writing process per file; a second one gets a clear :class:`StoreError`.

Reading is meant to be easy for the later stages: ``observations_df()``,
``certificates_df()``, ``chain_certificates_df()`` return pandas frames, and
``store.connection`` is a plain DuckDB connection for SQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import duckdb
import pandas as pd
import pyarrow as pa

from pinlab.errors import PinlabError
from pinlab.store.records import CertificateRow, Observation, Scan

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "StoreError", "arrow_table", "pinlab_version"]

SCHEMA_VERSION = 1

TABLES: dict[str, tuple[type[Any], str | None]] = {
    "certificates": (CertificateRow, "sha256"),
    "scans": (Scan, "scan_id"),
    "observations": (Observation, None),
}
"""Table name -> (record type, primary key)."""

_SCALARS: dict[type, tuple[str, pa.DataType]] = {
    str: ("VARCHAR", pa.string()),
    int: ("BIGINT", pa.int64()),
    float: ("DOUBLE", pa.float64()),
    bool: ("BOOLEAN", pa.bool_()),
    bytes: ("BLOB", pa.binary()),
    datetime: ("TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
}


def pinlab_version() -> str:
    """The installed pinlab's version, recorded with every scan."""
    try:
        return importlib.metadata.version("pinlab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class StoreError(PinlabError):
    """The store file cannot be used (unwritable, corrupt, newer schema, in use)."""


def _column_type(hint: Any) -> tuple[str, pa.DataType, bool]:
    """(DuckDB type, Arrow type, nullable) of a record field's type hint."""
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        nullable, hint = True, args[0]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        sql, arrow = _SCALARS[item]
        return f"{sql}[]", pa.list_(arrow), nullable
    sql, arrow = _SCALARS[hint]
    return sql, arrow, nullable


def _columns(record: type[Any]) -> list[tuple[str, str, pa.DataType, bool]]:
    hints = typing.get_type_hints(record)
    return [(f.name, *_column_type(hints[f.name])) for f in dataclasses.fields(record)]


def _ddl(table: str) -> str:
    record, key = TABLES[table]
    parts = [
        f"{name} {sql}{'' if nullable else ' NOT NULL'}"
        for name, sql, _, nullable in _columns(record)
    ]
    if key:
        parts.append(f"PRIMARY KEY ({key})")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})"


def arrow_table(table: str, rows: Sequence[Any]) -> pa.Table:
    """``rows`` (records of ``table``'s type) as an Arrow table with the store's schema."""
    record, _ = TABLES[table]
    columns = _columns(record)
    schema = pa.schema([pa.field(name, arrow, nullable) for name, _, arrow, nullable in columns])
    data = {name: [getattr(row, name) for row in rows] for name, *_ in columns}
    return pa.Table.from_pydict(data, schema=schema)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class Store:
    """An open pinlab store. Use :meth:`open`; close it (or use ``with``)."""

    def __init__(self, path: Path, connection: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self.connection = connection
        """A DuckDB connection for plain SQL (single-threaded use, like the store)."""

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Store:
        """Open or create the store at ``path``; :class:`StoreError` with one line if not.

        An existing file is first inspected read-only, so that a corrupt file or one
        written by a newer schema is refused without a byte being written to it.
        """
        path = Path(path)
        if path.exists():
            if not path.is_file():
                raise StoreError(f"{path}: not a file, cannot hold a store")
            if not read_only and not os.access(path, os.W_OK):
                raise StoreError(f"{path}: store is not writable (check its permissions)")
            cls._inspect(path)
        elif read_only:
            raise StoreError(f"{path}: no such store")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"{path.parent}: cannot create directory: {error.strerror}"
                ) from None
            if not os.access(path.parent, os.W_OK):
                raise StoreError(f"{path.parent}: directory is not writable, cannot create store")
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as error:
            raise StoreError(f"{path}: cannot open store: {_first_line(error)}") from None
        store = cls(path, connection)
        connection.execute("SET TimeZone = 'UTC'")
        if not read_only:
            store._create_schema()
        return store

    @staticmethod
    def _inspect(path: Path) -> None:
        try:
            probe = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as error:
            text = _first_line(error)
            if "lock" in text.lower():
                raise StoreError(f"{path}: store is in use by another process ({text})") from None
            raise StoreError(f"{path}: not a readable pinlab store (corrupt?): {text}") from None
        try:
            tables = {
                row[0] for row in probe.execute("SELECT table_name FROM duckdb_tables()").fetchall()
            }
            if tables and "meta" not in tables:
                raise StoreError(f"{path}: a DuckDB file, but not a pinlab store (no meta table)")
            if "meta" in tables:
                row = probe.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{path}: store schema version {version} is newer than this pinlab's "
                        f"({SCHEMA_VERSION}); upgrade pinlab to use it"
                    )
        finally:
            probe.close()

    def _create_schema(self) -> None:
        with self.transaction():
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
            )
            for table in TABLES:
                self.connection.execute(_ddl(table))
            self.connection.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                [str(SCHEMA_VERSION)],
            )

    def close(self) -> None:
        """Close the connection (everything written is already committed)."""
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``with store.transaction():`` commit on success, roll back on error."""
        self.connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------

    def write(
        self, observations: Sequence[Observation], certificates: Iterable[CertificateRow] = ()
    ) -> None:
        """Store one batch in one transaction; certificates already stored are skipped."""
        distinct = {row.sha256: row for row in certificates}
        with self.transaction():
            if distinct:
                self._insert("certificates", list(distinct.values()), conflict=True)
            if observations:
                self._insert("observations", observations)

    def _insert(self, table: str, rows: Sequence[Any], *, conflict: bool = False) -> None:
        batch = arrow_table(table, rows)
        self.connection.register("_pinlab_batch", batch)
        try:
            suffix = " ON CONFLICT DO NOTHING" if conflict else ""
            self.connection.execute(
                f"INSERT INTO {table} BY NAME SELECT * FROM _pinlab_batch{suffix}"
            )
        finally:
            self.connection.unregister("_pinlab_batch")

    def write_scan(
        self,
        scan: Scan,
        observations: Sequence[Observation],
        certificates: Iterable[CertificateRow] = (),
    ) -> None:
        """Store a whole scan (its row, certificates and observations) in one transaction."""
        distinct = {row.sha256: row for row in certificates}
        with self.transaction():
            self._insert("scans", [scan])
            if distinct:
                self._insert("certificates", list(distinct.values()), conflict=True)
            if observations:
                self._insert("observations", observations)

    def add_scan(self, scan: Scan) -> None:
        """Record the start of a scan."""
        with self.transaction():
            self._insert("scans", [scan])

    def finish_scan(self, scan_id: str, *, at: datetime) -> None:
        """Mark a scan finished at ``at`` (UTC)."""
        self.connection.execute(
            "UPDATE scans SET finished_at = ? WHERE scan_id = ?", [at.astimezone(UTC), scan_id]
        )

    # -- resuming --------------------------------------------------------------------------

    def redate_certificates(self, dates: Mapping[str, tuple[datetime, datetime]]) -> None:
        """Set the stored ``not_before``/``not_after`` of certificates (by SHA-256).

        For certificates dated on another clock than their observations: the rotation lab's
        Pebble dates them by the real clock while its rounds run on a virtual one, so the lab
        restates each on the virtual clock (see :mod:`pinlab.lab.record`). The DER, and so
        path validation, keeps the certificate's own dates.
        """
        if not dates:
            return
        rows = [(nb, na, digest) for digest, (nb, na) in dates.items()]
        with self.transaction():
            self.connection.executemany(
                "UPDATE certificates SET not_before = ?, not_after = ? WHERE sha256 = ?", rows
            )

    def unfinished_scan(self, targets: str) -> Scan | None:
        """The latest unfinished scan of the target file ``targets`` (absolute path)."""
        cursor = self.connection.execute(
            "SELECT * FROM scans WHERE targets = ? AND finished_at IS NULL AND source = 'scan' "
            "ORDER BY started_at DESC LIMIT 1",
            [targets],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cursor.description or ()]
        return Scan(**dict(zip(names, row, strict=True)))

    def done_keys(self, scan_id: str) -> set[tuple[str, int, str | None, str | None]]:
        """Keys (``Target.key``) of the targets a scan has already committed."""
        rows = self.connection.execute(
            "SELECT DISTINCT host, port, sni, target_ip FROM observations WHERE scan_id = ?",
            [scan_id],
        ).fetchall()
        return {(host, int(port), sni, ip) for host, port, sni, ip in rows}

    # -- reading ---------------------------------------------------------------------------

    def validation_counts(self, scan_id: str) -> dict[str, int]:
        """Observations of ``scan_id`` that read a chain, by validation outcome."""
        rows = self.connection.execute(
            "SELECT coalesce(validation, 'not validated'), count(*) FROM observations "
            "WHERE scan_id = ? AND status = 'ok' GROUP BY 1",
            [scan_id],
        ).fetchall()
        return {str(outcome): int(count) for outcome, count in rows}

    def observations_df(self, scan_id: str | None = None) -> pd.DataFrame:
        """Observations (all, or one scan's) in time order."""
        where, params = ("WHERE scan_id = ?", [scan_id]) if scan_id else ("", [])
        return self.connection.execute(
            f"SELECT * FROM observations {where} ORDER BY observed_at, host, port", params
        ).df()

    def certificates_df(self) -> pd.DataFrame:
        """Distinct certificates (DER included)."""
        return self.connection.execute("SELECT * FROM certificates ORDER BY sha256").df()

    def scans_df(self) -> pd.DataFrame:
        """Scans, oldest first."""
        return self.connection.execute("SELECT * FROM scans ORDER BY started_at").df()

    def chain_certificates_df(self) -> pd.DataFrame:
        """One row per certificate of each ok observation's chain, with its ``position``
        (0 = leaf) and the certificate's fields: the join the history stage starts from."""
        return self.connection.execute(
            "WITH c AS (SELECT scan_id, host, port, sni, ip, observed_at, "
            "  unnest(chain) AS sha256, generate_subscripts(chain, 1) - 1 AS position "
            "  FROM observations WHERE status = 'ok') "
            "SELECT c.*, k.subject, k.issuer, k.serial, k.not_before, k.not_after, "
            "k.spki_sha256, k.key_type, k.key_size, k.curve, k.is_ca "
            "FROM c JOIN certificates k USING (sha256) "
            "ORDER BY c.observed_at, c.host, c.port, c.position"
        ).df()

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {
            table: int(self.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in TABLES
        }

    # -- Parquet ---------------------------------------------------------------------------

    def export_parquet(self, directory: str | Path) -> dict[str, int]:
        """Write every table as ``DIRECTORY/<table>/part-0.parquet``; rows per table.

        The directory may exist but must not already hold a dataset.
        """
        directory = Path(directory)
        for table in ("meta", *TABLES):
            if (directory / table).exists():
                raise StoreError(f"{directory}: already holds a dataset ({table}/); pick a new one")
        order = {"certificates": "sha256", "scans": "started_at, scan_id", "meta": "key"}
        order["observations"] = "scan_id, observed_at, host, port"
        try:
            for table in ("meta", *TABLES):
                (directory / table).mkdir(parents=True)
                target = directory / table / "part-0.parquet"
                self.connection.execute(
                    f"COPY (SELECT * FROM {table} ORDER BY {order[table]}) "
                    f"TO '{_sql_path(target)}' (FORMAT PARQUET)"
                )
        except OSError as error:
            raise StoreError(f"{directory}: cannot write dataset: {error.strerror}") from None
        except duckdb.Error as error:
            raise StoreError(f"{directory}: cannot write dataset: {_first_line(error)}") from None
        return self.counts()

    def import_parquet(self, directory: str | Path) -> dict[str, int]:
        """Read a dataset written by :meth:`export_parquet` (or by Parquet-writing workers).

        Certificates already stored are skipped, and so are scans already stored, with
        their observations: importing the same dataset twice adds nothing. Returns the
        rows added per table. All or nothing: one transaction.
        """
        directory = Path(directory)
        sources = {}
        for table in ("meta", *TABLES):
            parts = sorted((directory / table).glob("*.parquet"))
            if not parts and table != "meta":
                raise StoreError(f"{directory}: not a pinlab dataset (no {table}/*.parquet)")
            sources[table] = "[" + ", ".join(f"'{_sql_path(part)}'" for part in parts) + "]"
        try:
            if sources["meta"] != "[]":
                row = self.connection.execute(
                    f"SELECT value FROM read_parquet({sources['meta']}) "
                    "WHERE key = 'schema_version'"
                ).fetchone()
                if row and int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(
                        f"{directory}: dataset schema version {row[0]} is newer than this "
                        f"pinlab's ({SCHEMA_VERSION}); upgrade pinlab to read it"
                    )
            before = self.counts()
            with self.transaction():
                self.connection.execute(
                    "CREATE TEMP TABLE _new_scans AS SELECT scan_id FROM "
                    f"read_parquet({sources['scans']}) WHERE scan_id NOT IN "
                    "(SELECT scan_id FROM scans)"
                )
                self.connection.execute(
                    f"INSERT INTO certificates BY NAME SELECT * FROM "
                    f"read_parquet({sources['certificates']}) ON CONFLICT DO NOTHING"
                )
                for table in ("scans", "observations"):
                    self.connection.execute(
                        f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet({sources[table]}) "
                        "WHERE scan_id IN (SELECT scan_id FROM _new_scans)"
                    )
                self.connection.execute("DROP TABLE _new_scans")
        except duckdb.Error as error:
            raise StoreError(f"{directory}: cannot import dataset: {_first_line(error)}") from None
        after = self.counts()
        return {table: after[table] - before[table] for table in TABLES}


def _sql_path(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")
