"""The DuckDB store: certificates (once, by SHA-256), observations, scans.

Tables are derived once from the record types (:mod:`pinlab.store.schema`); ``meta`` holds the
schema version. A store written by a newer pinlab, one that lacks a table, and a damaged
file are refused with one line naming the file and what to do (:mod:`pinlab.store.health`),
never misread, and never "repaired" by recreating a table.
Writes come in batches, one transaction each (certificates and the observations naming
them together), so a ``kill -9`` loses at most the batch in flight, never a committed row.
DuckDB allows one writing process per file; a second one gets a clear :class:`StoreError`.

Reading is meant to be easy for the later stages: ``observations_df()``,
``certificates_df()``, ``chain_certificates_df()`` return pandas frames, and
``store.connection`` is a plain DuckDB connection for SQL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import duckdb
import pandas as pd
import pyarrow as pa

from pinlab.memory import MemoryBudget, remove_spill
from pinlab.store.health import damaged, inspect_file, is_damage
from pinlab.store.parquet import export_flat, import_flat, table_counts
from pinlab.store.records import CertificateRow, Observation, Scan
from pinlab.store.schema import (
    OBSERVATION_KEY,
    SCHEMA_VERSION,
    TABLES,
    StoreError,
    arrow_table,
    ddl,
    first_line,
    pinlab_version,
)

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "StoreError", "arrow_table", "pinlab_version"]


class Store:
    """An open pinlab store. Use :meth:`open`; close it (or use ``with``)."""

    def __init__(self, path: Path, connection: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self.connection = connection
        """A DuckDB connection for plain SQL (single-threaded use, like the store)."""
        self.spill: Path | None = None
        """DuckDB's private temporary directory, when opened with a memory budget (removed
        on close)."""

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | Path, *, read_only: bool = False, memory: MemoryBudget | None = None
    ) -> Store:
        """Open or create the store at ``path``; :class:`StoreError` with one line if not.

        An existing file is first inspected read-only, so that a corrupt file or one
        written by a newer schema is refused without a byte being written to it. With
        ``memory``, DuckDB gets the budget's ``memory_limit`` and spills to a private
        temporary directory past it (DuckDB's own default is 80 % of the machine, and a
        read-only store's ``.tmp`` folder beside the file may not be writable).
        """
        path = Path(path)
        if path.exists():
            if not path.is_file():
                raise StoreError(f"{path}: not a file, cannot hold a store")
            if not read_only and not os.access(path, os.W_OK):
                raise StoreError(f"{path}: store is not writable (check its permissions)")
            inspect_file(path)
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
            if is_damage(error):
                raise damaged(path, error) from None
            raise StoreError(f"{path}: cannot open store: {first_line(error)}") from None
        store = cls(path, connection)
        connection.execute("SET TimeZone = 'UTC'")
        if memory is not None:
            store.spill = memory.spill_directory()
            memory.configure(connection, store.spill)
        if not read_only:
            store._create_schema()
        return store

    def _create_schema(self) -> None:
        with self.transaction():
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
            )
            for table in TABLES:
                self.connection.execute(ddl(table))
            self.connection.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                [str(SCHEMA_VERSION)],
            )

    def close(self) -> None:
        """Close the connection (everything written is already committed) and remove
        DuckDB's spill files."""
        self.connection.close()
        remove_spill(self.spill)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> None:
        self.close()
        if error is not None and is_damage(error):
            # A bad block surfaces in whichever query reads it; say which file, and what to do.
            raise damaged(self.path, error) from error

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

    @contextlib.contextmanager
    def checkpoints_every(self, mebibytes: int) -> Iterator[None]:
        """``with store.checkpoints_every(256):`` a bulk load lets DuckDB's write-ahead log
        grow to ``mebibytes`` before it is checkpointed into the file, then the setting it
        had is restored.

        A checkpoint of a small append leaves small row groups that later checkpoints
        merge and rewrite (see duckdb/duckdb#18829), so at DuckDB's default of 16 MiB a
        big load's rows are written several times over, more so as the table grows.
        Measured with 1 kB BLOB rows (DuckDB 2.0, 2 cores): a checkpoint every 10,000 rows
        cost 48 µs a row, one every 122,880 rows (a full row group) 13-16. Committed
        transactions stay durable either way: a ``kill -9`` leaves them in the log, which
        the next open replays.
        """
        (previous,) = self.connection.execute(
            "SELECT current_setting('checkpoint_threshold')"
        ).fetchone() or ("16MiB",)
        restore = f"SET checkpoint_threshold = '{previous}'"
        self.connection.execute(f"SET checkpoint_threshold = '{int(mebibytes)}MiB'")
        try:
            yield
        except BaseException:
            # the load's own error is the one to report, even when it left the database
            # unable to take another statement (a full disk invalidates it)
            with contextlib.suppress(duckdb.Error):
                self.connection.execute(restore)
            raise
        self.connection.execute(restore)

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

    def unstored(self, observations: Sequence[Observation]) -> list[Observation]:
        """``observations`` less those already stored or repeated, by their natural key
        (:data:`~pinlab.store.schema.OBSERVATION_KEY`), in their order: what an import adds."""
        if not observations:
            return []
        batch = arrow_table("observations", observations)
        batch = batch.append_column("_pinlab_index", pa.array(range(len(observations))))
        self.connection.register("_pinlab_batch", batch)
        try:
            match = " AND ".join(
                f"o.{column} IS NOT DISTINCT FROM n.{column}" for column in OBSERVATION_KEY
            )
            stored = self.connection.execute(
                "SELECT n._pinlab_index FROM _pinlab_batch n "
                f"WHERE EXISTS (SELECT 1 FROM observations o WHERE {match})"
            ).fetchall()
        finally:
            self.connection.unregister("_pinlab_batch")
        skip = {int(row[0]) for row in stored}
        seen: set[tuple[object, ...]] = set()
        fresh = []
        for index, observation in enumerate(observations):
            key = tuple(getattr(observation, column) for column in OBSERVATION_KEY)
            if index not in skip and key not in seen:
                seen.add(key)
                fresh.append(observation)
        return fresh

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
        return table_counts(self.connection)

    # -- Parquet ---------------------------------------------------------------------------

    def export_parquet(self, directory: str | Path) -> dict[str, int]:
        """Write every table as ``DIRECTORY/<table>/part-0.parquet``, the meta part last;
        rows per table. A failed write leaves no part behind (:mod:`pinlab.store.parquet`).

        The directory may exist but must not already hold a dataset.
        """
        return export_flat(self.connection, directory)

    def import_parquet(self, directory: str | Path) -> dict[str, int]:
        """Read a dataset written by :meth:`export_parquet`; rows added per table.

        Idempotent (scans already stored are skipped, observations are kept once by their
        natural key), all or nothing, and a dataset whose observations name certificates it
        does not hold is refused (:func:`pinlab.store.parquet.import_flat`).
        """
        return import_flat(self.connection, directory)
