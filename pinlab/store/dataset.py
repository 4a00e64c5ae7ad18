"""A store as a Parquet dataset, partitioned by campaign date, read through DuckDB.

Layout (the table names and columns are the store's, :mod:`pinlab.store.duckdb_file`)::

    DATASET/meta/part-0.parquet                                schema version
    DATASET/scans/date=2025-06-01/<scan_id>.parquet            one per campaign
    DATASET/observations/date=2025-06-01/<scan_id>-00017.parquet   one part per shard
    DATASET/certificates/date=2025-06-01/<scan_id>-00017.parquet   that shard's certificates
    DATASET/_campaigns/<scan_id>/   the shard plan (pinlab.collect.cluster)

The date is the campaign's start (UTC), so a campaign's parts stay together and a daily
campaign adds one folder. Every file is written under a hidden temporary name and renamed
into place (atomic on one filesystem): a part is complete or absent. A shard writes its
certificates part first and its observations part last; the observations part is the
shard's commit, and a retried shard rewrites both under the same names, so a shard is never
counted twice. Certificates repeat across parts (every shard sees the same intermediates);
readers see them once.

Reading: :func:`open_store` gives a :class:`~pinlab.store.Store` for a DuckDB file or a
dataset alike. For a dataset, ``store.connection`` is an in-memory DuckDB whose views
``observations``, ``certificates`` (distinct by ``sha256``), ``scans`` and ``meta`` read the
parts present when it was opened, in place: SQL over them runs out of core (DuckDB spills to
a temporary directory past its memory limit), and ``observations_df()`` and the other
readers of the store work unchanged. A dataset opened this way is read-only.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pinlab.memory import MemoryBudget
from pinlab.store.atomic import TMP_SUFFIX, copy_atomic, write_atomic, write_failure
from pinlab.store.duckdb_file import Store
from pinlab.store.records import Scan
from pinlab.store.schema import (
    SCHEMA_VERSION,
    TABLES,
    StoreError,
    arrow_table,  # the one place the schema is derived
)

__all__ = [
    "DatasetStore",
    "campaign_dir",
    "export_dataset",
    "import_dataset",
    "init_dataset",
    "is_dataset",
    "open_dataset",
    "open_store",
    "part_path",
    "read_scans",
    "write_atomic",
    "write_scan",
    "write_shard_parts",
]

CAMPAIGNS = "_campaigns"
_TMP_SUFFIX = TMP_SUFFIX


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a dataset directory (rather than a DuckDB file)."""
    return Path(path).is_dir()


def partition(scan: Scan) -> str:
    """The ``date=YYYY-MM-DD`` folder of a campaign (its UTC start date)."""
    return f"date={scan.started_at.astimezone(UTC).date().isoformat()}"


def part_path(dataset: str | Path, table: str, scan: Scan, shard: int) -> Path:
    """Where shard ``shard`` of ``scan`` keeps its part of ``table``."""
    return Path(dataset) / table / partition(scan) / f"{scan.scan_id}-{shard:05d}.parquet"


def campaign_dir(dataset: str | Path, scan_id: str) -> Path:
    """The folder of a campaign's shard plan."""
    return Path(dataset) / CAMPAIGNS / scan_id


def _write_rows(target: Path, table: str, rows: Sequence[Any]) -> None:
    with write_atomic(target) as temporary:
        pq.write_table(arrow_table(table, rows), temporary)


def init_dataset(path: str | Path) -> Path:
    """Create a dataset folder (or check an existing one); :class:`StoreError` if unusable."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: a file, not a dataset folder (pass a directory)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        meta = root / "meta" / "part-0.parquet"
        if meta.exists():
            _check_version(root, [meta])
        else:
            with write_atomic(meta) as temporary:
                pq.write_table(
                    pa.table({"key": ["schema_version"], "value": [str(SCHEMA_VERSION)]}),
                    temporary,
                )
    except OSError as error:
        raise StoreError(f"{root}: cannot create dataset: {error.strerror}") from None
    return root


def write_scan(dataset: str | Path, scan: Scan) -> Path:
    """Record (or update: ``finished_at``) a campaign's row."""
    target = Path(dataset) / "scans" / partition(scan) / f"{scan.scan_id}.parquet"
    _write_rows(target, "scans", [scan])
    return target


def write_shard_parts(store: Store, dataset: str | Path, scan: Scan, shard: int) -> int:
    """Copy a shard's store (a private DuckDB file) to its two parts; observations written.

    Certificates go first, observations last: the observations part commits the shard.
    """
    con = store.connection
    order = {"certificates": "sha256", "observations": "observed_at, host, port, sni"}
    for table in ("certificates", "observations"):
        query = f"SELECT * FROM {table} ORDER BY {order[table]}"
        copy_atomic(con, query, part_path(dataset, table, scan, shard))
    row = con.execute("SELECT count(*) FROM observations").fetchone()
    return int(row[0]) if row else 0


def read_scans(dataset: str | Path) -> list[Scan]:
    """The campaigns recorded in a dataset, oldest first."""
    files = _parts(Path(dataset), "scans")
    if not files:
        return []
    table = pq.ParquetDataset(files).read()
    rows = table.to_pylist()
    scans = [Scan(**{name: row.get(name) for name in Scan.__dataclass_fields__}) for row in rows]
    return sorted(scans, key=lambda scan: (scan.started_at, scan.scan_id))


def remove_temporaries(dataset: str | Path, scan: Scan) -> int:
    """Delete temporary files left by killed writers of ``scan``; how many."""
    removed = 0
    for table in ("certificates", "observations"):
        folder = Path(dataset) / table / partition(scan)
        for leftover in folder.glob(f".{scan.scan_id}-*{_TMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


# -- reading -------------------------------------------------------------------------------


def _parts(root: Path, table: str) -> list[str]:
    folder = root / table
    if not folder.is_dir():
        return []
    return sorted(
        str(part.resolve()) for part in folder.rglob("*.parquet") if not part.name.startswith(".")
    )


def _sql_path(path: Path | str) -> str:
    return str(Path(path).resolve()).replace("'", "''")


def _sql_list(files: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{_sql_path(name)}'" for name in files) + "]"


def _check_version(root: Path, meta: Sequence[Path | str]) -> None:
    for part in meta:
        table = pq.read_table(part).to_pylist()
        for row in table:
            if row.get("key") != "schema_version":
                continue
            if not str(row["value"]).isdigit():
                raise StoreError(f"{root}: dataset schema version {row['value']!r} is not a number")
            if int(row["value"]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{root}: dataset schema version {row['value']} is newer than this "
                    f"pinlab's ({SCHEMA_VERSION}); upgrade pinlab to read it"
                )


class DatasetStore(Store):
    """A Parquet dataset behind the read API of :class:`~pinlab.store.Store` (read-only).

    Build it with :func:`open_dataset` (or :func:`open_store`). The views see the parts
    present when it was opened: a campaign writing meanwhile does not change what a
    running analysis reads.
    """

    def __init__(self, path: Path, connection: duckdb.DuckDBPyConnection, spill: Path) -> None:
        super().__init__(path, connection)
        self.spill = spill
        self._on_close: list[Callable[[], None]] = []

    def on_close(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the store is closed (a snapshot's reader releases its lease)."""
        self._on_close.append(action)

    def close(self) -> None:
        """Close the connection, then run what :meth:`on_close` registered."""
        try:
            super().close()
        finally:
            actions, self._on_close = self._on_close, []
            for action in actions:
                action()

    def _read_only(self, *_args: object, **_kwargs: object) -> Any:
        raise StoreError(
            f"{self.path}: a Parquet dataset is read-only here; collect into it with "
            "pinlab collect --workers/--cluster, or merge it into a DuckDB store first"
        )

    write = _read_only
    add_scan = _read_only
    finish_scan = _read_only
    import_parquet = _read_only
    write_scan = _read_only


def open_dataset(
    path: str | Path,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    memory: MemoryBudget | None = None,
) -> DatasetStore:
    """Open a Parquet dataset (this module's layout, or a flat ``pinlab export``) for reading.

    ``memory_limit`` (DuckDB syntax, ``"4GB"``) caps DuckDB's memory; past it, joins and
    sorts spill to a private temporary directory. ``memory``, a whole analysis's budget,
    sets DuckDB's share of it instead (:class:`pinlab.memory.MemoryBudget`).
    """
    root = Path(path)
    if not root.is_dir():
        raise StoreError(f"{root}: no such dataset folder")
    parts = {table: _parts(root, table) for table in ("meta", *TABLES)}
    if not parts["observations"] and not parts["scans"]:
        raise StoreError(f"{root}: not a pinlab dataset (no observations/ or scans/ parts)")
    if parts["observations"]:
        # Workers and exports write certificates before observations and the scan row
        # around them: observations without either are a dataset cut short, not a dataset.
        for table in ("certificates", "scans"):
            if not parts[table]:
                raise StoreError(f"{root}: incomplete dataset: it lacks its {table} table")
    _check_version(root, parts["meta"])
    spill = Path(tempfile.mkdtemp(prefix="pinlab-duckdb-"))
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = '{_sql_path(spill)}'")
        con.execute("SET preserve_insertion_order = false")  # lets big scans stream
        if memory is not None:
            memory.configure(con, spill)
        elif memory_limit is not None:
            con.execute("SET memory_limit = ?", [memory_limit])
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        for table in TABLES:
            _create_view(con, table, parts[table])
        if parts["meta"]:
            meta = _sql_list(parts["meta"])
            con.execute(f"CREATE VIEW meta AS SELECT * FROM read_parquet({meta})")
        else:
            con.execute(
                f"CREATE VIEW meta AS SELECT 'schema_version' AS key, '{SCHEMA_VERSION}' AS value"
            )
    except BaseException:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
        raise
    return DatasetStore(root, con, spill)


def _create_view(con: duckdb.DuckDBPyConnection, table: str, files: list[str]) -> None:
    if not files:
        con.register(f"_pinlab_empty_{table}", arrow_table(table, []))
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM _pinlab_empty_{table}")
        return
    source = f"read_parquet({_sql_list(files)}, union_by_name = true, hive_partitioning = false)"
    if table == "certificates" and len(files) > 1:
        # Every shard stores the certificates it saw; the table has one row per sha256.
        con.execute(f"CREATE VIEW {table} AS SELECT DISTINCT ON (sha256) * FROM {source}")
    else:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")


def open_store(path: str | Path, *, memory: MemoryBudget | None = None) -> Store:
    """The store at ``path`` for reading: a DuckDB file, or a Parquet dataset folder.

    The one call ``pinlab history``, ``pinlab simulate`` and notebooks need to read either.
    ``memory`` bounds DuckDB's share of an analysis's budget (the CLI passes
    ``--memory-limit``); without it, the budget ``PINLAB_MEMORY_LIMIT`` names (``pinlab
    report`` sets it for the notebooks), else DuckDB's own default (80 % of the machine).
    """
    if memory is None:
        memory = MemoryBudget.from_environment()
    if is_dataset(path):
        return open_dataset(path, memory=memory)
    return Store.open(path, read_only=True, memory=memory)


def export_dataset(store: Store, directory: str | Path) -> dict[str, int]:
    """Write a DuckDB store as a dataset of this layout (one part per campaign); rows per table.

    Each campaign's certificates are those its chains name; certificates no chain names go
    to one more part, written first. A campaign's scan row is written after its parts, so a
    reader never sees a campaign without them. A failed write (full disk) removes every part
    this export wrote and raises :class:`StoreError`. The folder may exist but must hold no
    campaign of the store yet.
    """
    root = init_dataset(directory)
    written: list[Path] = []
    try:
        _export_campaigns(store, root, written)
    except (OSError, duckdb.Error) as error:
        for part in reversed(written):
            part.unlink(missing_ok=True)
        raise write_failure(root, error) from None
    return store.counts()


def _export_campaigns(store: Store, root: Path, written: list[Path]) -> None:
    con = store.connection
    scans = [
        Scan(**{name: _plain(record[name]) for name in Scan.__dataclass_fields__})
        for record in store.scans_df().to_dict("records")
    ]
    for scan in scans:
        if part_path(root, "observations", scan, 0).exists():
            raise StoreError(f"{root}: already holds scan {scan.scan_id}; pick a new folder")
    if scans:
        unreferenced = (
            "SELECT * FROM certificates WHERE sha256 NOT IN "
            "(SELECT unnest(chain) FROM observations) ORDER BY sha256"
        )
        target = root / "certificates" / "unreferenced" / f"{uuid.uuid4().hex}.parquet"
        written.append(target)
        copy_atomic(con, unreferenced, target, options="FORMAT PARQUET")
    queries = {
        "certificates": "SELECT * FROM certificates WHERE sha256 IN (SELECT unnest(chain) "
        "FROM observations WHERE scan_id = $scan) ORDER BY sha256",
        "observations": "SELECT * FROM observations WHERE scan_id = $scan "
        "ORDER BY observed_at, host, port, sni",
    }
    for scan in scans:
        for table, query in queries.items():
            target = part_path(root, table, scan, 0)
            written.append(target)
            copy_atomic(con, query, target, {"scan": scan.scan_id})
        written.append(write_scan(root, scan))


def _plain(value: Any) -> Any:
    """A pandas cell as the record field wants it (NaT/NaN to None, Timestamp to datetime)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def import_dataset(dataset: str | Path, store: Store) -> dict[str, int]:
    """Merge a dataset into a DuckDB store (campaigns already there are skipped); rows added.

    Goes through a flat temporary export so that :meth:`Store.import_parquet`'s rules (all
    or nothing, no scan twice) apply unchanged.
    """
    with open_dataset(dataset) as source, tempfile.TemporaryDirectory() as folder:
        source.export_parquet(folder)
        return store.import_parquet(folder)
