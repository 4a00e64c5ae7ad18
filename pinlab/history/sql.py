"""The renewal ledger derived in DuckDB: the same tables as :mod:`pinlab.history.frames`,
at the scale of a campaign (a million hosts x 12 observations in under a minute on two
cores; ``pinlab bench history``).

The work is set-at-a-time SQL over the store's tables or a Parquet dataset (the statements
are in :mod:`pinlab.history.queries`, with the narrow 64-bit ids they work on):

1. observations are grouped by (host, leaf, rest of the chain): one scan;
2. the leaves' facts come from one pass over ``certificates``; the issuing certificate's
   key and the root's name are resolved once per distinct (leaf issuer, rest of chain);
   the CA organisation once per distinct issuer name;
3. sightings are a ``GROUP BY`` per (host, leaf); precertificates are found by a byte
   search for the poison extension's OID in the leaves' DER, confirmed by parsing those;
4. lineages: a ``LAG`` over each (host, port, SNI), whatever the key type, says whether
   every leaf continues the one before (:data:`pinlab.history.rules.CONTINUES_SQL`): such
   a host, nearly all, is one lineage, ``<first leaf's key label>#0``. Only hosts with
   leaves served in parallel (or an old leaf back) go through the Python greedy
   assignment, which both derivations share, with their leaves' sighting times;
5. the ledger is a ``LAG`` over each lineage; ``key_seen_before`` a windowed minimum.

Results stay in the connection: narrow temporary tables (which DuckDB spills to disk past
its ``memory_limit``) behind the views ``history_sightings`` and ``history_ledger``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from pinlab.errors import PinlabError
from pinlab.history import queries as q
from pinlab.history.frames import (
    HOST_SUMMARY_COLUMNS,
    LIFETIME_COLUMNS,
    POPULATION_COLUMNS,
    tidy,
)
from pinlab.history.rules import (
    LEDGER_COLUMNS,
    SIGHTING_COLUMNS,
    assign_lineages,
    is_precertificate,
)
from pinlab.store import Store

__all__ = ["LEDGER_VIEW", "SIGHTINGS_VIEW", "History", "HistoryError", "ledger_from_connection"]

SIGHTINGS_VIEW = "history_sightings"
LEDGER_VIEW = "history_ledger"


class HistoryError(PinlabError):
    """The ledger cannot be derived from these tables (see the message)."""


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


class History:
    """The renewal ledger of a store or dataset, derived in DuckDB.

    Build it with :meth:`from_store`, :meth:`from_connection`, :meth:`from_parquet` or
    :meth:`from_frames`; read it with :meth:`ledger`, :meth:`sightings`,
    :meth:`key_lifetimes`, :meth:`host_summary`, :meth:`population_summary` (tidy
    DataFrames, equal to what the functions of :mod:`pinlab.history.frames` return), or
    with SQL on :attr:`connection` (views ``history_sightings`` and ``history_ledger``).
    A connection holds one History at a time: building another replaces it.
    """

    def __init__(
        self, connection: duckdb.DuckDBPyConnection, certificates: str, parallel_groups: int
    ) -> None:
        self.connection = connection
        self.certificates = certificates
        self.parallel_groups = parallel_groups
        """Hosts (host, port, SNI) with leaves served in parallel or an old leaf back, which
        the Python lineage assignment handled (all the others were settled in SQL)."""

    @classmethod
    def from_connection(
        cls,
        connection: duckdb.DuckDBPyConnection,
        *,
        observations: str = "observations",
        certificates: str = "certificates",
    ) -> History:
        """Derive from the relations ``observations`` and ``certificates`` (tables, views
        or registered frames with the store's columns); a read-only connection will do.
        Sets the connection's time zone to UTC."""
        con = connection
        names = {"observations": observations, "certificates": certificates}

        def run(sql: str, **extra: str) -> None:
            con.execute(sql.format(**names, **extra))

        def drop(*tables: str) -> None:
            for table in tables:  # as soon as done with: what stays in memory is what spills
                con.execute(f"DROP TABLE IF EXISTS _history_{table}")

        con.execute("SET TimeZone = 'UTC'")
        for sql in (q.GROUPS, q.HOSTS, q.TAILS, q.ISSUER_KEYS, q.NAMES, q.LEAVES):
            run(sql)
        cls._check_ids(con)
        confirmed = cls._confirm_precertificates(con, certificates)
        run(q.SEEN)
        multi: Any = con.execute("SELECT count(*) FROM _history_seen WHERE multi").fetchone()
        if multi[0]:
            run(q.MULTI_CHAIN)
        drop("groups", "tails")
        unknown: Any = con.execute("SELECT count(*) FROM _history_seen WHERE unknown").fetchone()
        if unknown[0]:
            run(q.UNKNOWN_LEAVES)
        else:
            con.execute("CREATE OR REPLACE TEMP TABLE _history_unknown (lid UBIGINT, leaf VARCHAR)")
        if confirmed:
            run(q.DROP_MATCHED_PRECERTIFICATES)
        drop("leaves")
        run(q.KEY_FIRST)
        run(q.STEPS)
        drop("seen")
        run(q.SPLIT)
        parallel_groups = cls._parallel_lineages(con, names)
        run(q.LEDGER_SPLIT)
        drop("split", "parallel", "leaf_names", "times", "key_first")
        for sql in (q.LEDGER, q.LINEAGES):
            run(sql)
        run(q.SIGHTINGS_VIEW)
        run(q.LEDGER_VIEW)
        return cls(con, certificates, parallel_groups)

    @staticmethod
    def _check_ids(con: duckdb.DuckDBPyConnection) -> None:
        row: Any = con.execute(q.CHECKS).fetchone()
        kinds = (
            "hosts", "host names", "leaves", "names", "organisations", "chains", "subjects",
            "issuer keys",
        )  # fmt: skip
        clashes = {name: int(n) for name, n in zip(kinds, row, strict=True)}
        if clashes["leaves"]:
            raise HistoryError(
                f"{clashes['leaves']} leaves appear twice in the certificates table: keep one "
                "row per sha256 (a store does; History.from_parquet deduplicates)"
            )
        if any(clashes.values()):
            raise HistoryError(
                f"64-bit id collision among {', '.join(k for k, n in clashes.items() if n)}; "
                "the ledger would merge distinct values (please report this, with the data)"
            )

    @staticmethod
    def _confirm_precertificates(con: duckdb.DuckDBPyConnection, certificates: str) -> int:
        """Parse the leaves whose DER holds the poison OID; flag the precertificates."""
        candidates = con.execute(
            f"SELECT hash(sha256), der FROM {certificates} WHERE hash(sha256) IN "
            "(SELECT lid FROM _history_leaves WHERE poison)"
        ).fetchall()
        confirmed = [lid for lid, der in candidates if is_precertificate(der)]
        if confirmed:
            con.execute(
                "UPDATE _history_leaves SET precertificate = true "
                "WHERE lid IN (SELECT unnest(?::UBIGINT[]))",
                [confirmed],
            )
        return len(confirmed)

    @staticmethod
    def _parallel_lineages(con: duckdb.DuckDBPyConnection, names: dict[str, str]) -> int:
        """Lineages of the hosts that are not one plain succession, by the shared greedy
        assignment, as ``_history_parallel``; returns how many hosts."""
        count: Any = con.execute("SELECT count(*) FROM _history_split").fetchone()
        if not count[0]:
            return 0
        con.execute(q.LEAF_NAMES.format(**names))
        con.execute(q.TIMES.format(**names))
        rows = con.execute(q.PARALLEL).fetchnumpy()
        columns: dict[str, list[Any]] = {name: values.tolist() for name, values in rows.items()}
        hids = columns["hid"]
        assigned = assign_lineages(
            zip(
                hids,
                columns["first"],
                columns["last"],
                columns["key_label"],
                columns["times"],
                strict=True,
            )
        )
        opened: set[tuple[Any, tuple[str, int]]] = set()
        opens = []
        for hid, lineage in zip(hids, assigned, strict=True):
            opens.append((hid, lineage) not in opened)
            opened.add((hid, lineage))
        parallel = pa.table(
            {
                "hid": pa.array(rows["hid"], pa.uint64()),
                "lid": pa.array(rows["lid"], pa.uint64()),
                "lineage_label": pa.array([label for label, _ in assigned], pa.string()),
                "lineage_index": pa.array([index for _, index in assigned], pa.int64()),
                "opens": pa.array(opens, pa.bool_()),
            }
        )
        con.register("_history_parallel_rows", parallel)
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _history_parallel AS "
                "SELECT * FROM _history_parallel_rows"
            )
        finally:
            con.unregister("_history_parallel_rows")
        con.execute(q.MARK_SPLIT)
        return int(count[0])

    @classmethod
    def from_store(cls, store: Store) -> History:
        """Derive from an open store (read-only is enough)."""
        return cls.from_connection(store.connection)

    @classmethod
    def from_parquet(
        cls, directory: str | Path, *, connection: duckdb.DuckDBPyConnection | None = None
    ) -> History:
        """Derive from a Parquet dataset as :meth:`pinlab.store.Store.export_parquet` writes
        it (``observations/*.parquet``, ``certificates/*.parquet``), read in place."""
        con = connection if connection is not None else duckdb.connect()
        root = Path(directory)
        for table in ("observations", "certificates"):
            parts = sorted((root / table).glob("*.parquet"))
            if not parts:
                raise HistoryError(f"{root}: not a pinlab dataset (no {table}/*.parquet)")
            files = ", ".join("'" + str(p.resolve()).replace("'", "''") + "'" for p in parts)
            # Parts written by separate workers may each hold a certificate: keep one.
            select = "SELECT DISTINCT ON (sha256) *" if table == "certificates" else "SELECT *"
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW _history_{table}_parquet AS "
                f"{select} FROM read_parquet([{files}])"
            )
        return cls.from_connection(
            con,
            observations="_history_observations_parquet",
            certificates="_history_certificates_parquet",
        )

    @classmethod
    def from_frames(cls, observations: pd.DataFrame, certificates: pd.DataFrame) -> History:
        """Derive in a private in-memory DuckDB from the two tables
        :mod:`pinlab.history.frames` takes (the store's columns)."""
        con = duckdb.connect()
        con.register("_history_observations_frame", _arrow(observations, _OBSERVATION_SCHEMA))
        con.register("_history_certificates_frame", _arrow(certificates, _CERTIFICATE_SCHEMA))
        return cls.from_connection(
            con,
            observations="_history_observations_frame",
            certificates="_history_certificates_frame",
        )

    # -- reading -------------------------------------------------------------------------

    def _frame(self, sql: str, columns: list[str]) -> pd.DataFrame:
        return tidy(self.connection.execute(sql).df(), columns)

    def sightings(self) -> pd.DataFrame:
        """Leaf sightings, as :func:`pinlab.history.frames.leaf_sightings` returns them."""
        order = "host, port, sni, first_seen, last_seen, leaf"
        sql = f"SELECT {_quoted(SIGHTING_COLUMNS)} FROM {SIGHTINGS_VIEW} ORDER BY {order}"
        return self._frame(sql, SIGHTING_COLUMNS)

    def ledger(self) -> pd.DataFrame:
        """The renewal ledger, as :func:`pinlab.history.frames.renewal_ledger` returns it."""
        return self._frame(self._ledger_sql(), LEDGER_COLUMNS)

    @staticmethod
    def _ledger_sql() -> str:
        order = "host, port, sni, new_first_seen, lineage, new_sha256"
        return f"SELECT {_quoted(LEDGER_COLUMNS)} FROM {LEDGER_VIEW} ORDER BY {order}"

    def key_lifetimes(self) -> pd.DataFrame:
        """Per (host, lineage, key): ``duration`` and ``observed`` (see
        :func:`pinlab.history.frames.key_lifetimes`)."""
        sql = q.LIFETIMES_VIEW.format(certificates=self.certificates)
        order = "host, port, sni, lineage, spki_sha256"
        return self._frame(f"SELECT * FROM ({sql}) ORDER BY {order}", LIFETIME_COLUMNS)

    def host_summary(self) -> pd.DataFrame:
        """Per host (see :func:`pinlab.history.frames.host_summary`)."""
        return self._frame(q.HOST_SUMMARY, HOST_SUMMARY_COLUMNS)

    def population_summary(self) -> pd.DataFrame:
        """One row for the population (see :func:`pinlab.history.frames.population_summary`)."""
        return self._frame(q.POPULATION, POPULATION_COLUMNS)

    def counts(self) -> dict[str, int]:
        """Hosts (host, port, SNI), leaf sightings and renewals."""
        row: Any = self.connection.execute(
            "SELECT (SELECT count(DISTINCT hid) FROM _history_sightings), "
            "(SELECT count(*) FROM _history_sightings), (SELECT count(*) FROM _history_ledger)"
        ).fetchone()
        return {"hosts": int(row[0]), "sightings": int(row[1]), "renewals": int(row[2])}

    def write_ledger(self, path: str | Path) -> int:
        """Write the ledger to ``path`` (``.csv`` or ``.parquet``) straight from DuckDB;
        returns the rows written."""
        path = Path(path)
        formats = {".csv": "FORMAT CSV, HEADER", ".parquet": "FORMAT PARQUET"}
        if path.suffix not in formats:
            raise HistoryError(f"{path}: write .csv or .parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        target = str(path).replace("'", "''")
        self.connection.execute(
            f"COPY ({self._ledger_sql()}) TO '{target}' ({formats[path.suffix]})"
        )
        return self.counts()["renewals"]


def ledger_from_connection(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The renewal ledger of the store tables ``connection`` sees (see :class:`History`)."""
    return History.from_connection(connection).ledger()


_OBSERVATION_SCHEMA = pa.schema(
    [
        ("host", pa.string()),
        ("port", pa.int64()),
        ("sni", pa.string()),
        ("observed_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("chain", pa.list_(pa.string())),
    ]
)
_CERTIFICATE_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()),
        ("der", pa.binary()),
        ("subject", pa.string()),
        ("issuer", pa.string()),
        ("serial", pa.string()),
        ("not_before", pa.timestamp("us", tz="UTC")),
        ("not_after", pa.timestamp("us", tz="UTC")),
        ("spki_sha256", pa.string()),
        ("key_type", pa.string()),
        ("key_size", pa.int64()),
        ("curve", pa.string()),
    ]
)


def _arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame``'s columns of ``schema`` as Arrow (nulls for NaN/None)."""
    arrays = []
    for field in schema:
        values = frame[field.name]
        if pa.types.is_timestamp(field.type):
            times = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
            arrays.append(pa.array(times, type=field.type, from_pandas=True))
            continue
        items = [None if _null(v) else v for v in values]
        if pa.types.is_list(field.type):
            items = [None if v is None else [str(c) for c in v] for v in items]
        arrays.append(pa.array(items, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
