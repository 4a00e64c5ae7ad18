"""The backfill's own tables, and an in-memory index of the issuances already recorded.

``ct_state`` keeps, per (log, domain filter), the next entry to read (``resume_index``:
the oldest precertificate still waiting for its final certificate when the run stopped)
and the last tree head seen, which is how a log that rewinds or forks is caught.
``ct_issuances`` is the issuance registry: one row per (issuance, host) recorded, whatever
the source, with the precertificate and final certificate that stand for it, and
``chain_error`` when the entry's chain does not sign in order. ``ct_unparsable`` names the
entries whose certificate does not parse (their bytes are in ``certificates``).

Checking every entry against the registry in SQL would scan it once per batch, which
grows with the store. :class:`KeyIndex` keeps instead the first 8 bytes of every recorded
issuance key in a sorted array (8 bytes per issuance: 8 MB per million), so a batch asks
the database only about the keys it may already hold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pinlab.store import Store

__all__ = [
    "CT_COLUMNS",
    "CT_TABLES",
    "KeyIndex",
    "create_ct_tables",
    "key64",
    "last_tree_head",
    "state_of",
]

CT_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "ct_state": (
        ("log", "VARCHAR NOT NULL"), ("filter", "VARCHAR NOT NULL"),
        ("next_index", "BIGINT NOT NULL"), ("resume_index", "BIGINT NOT NULL"),
        ("tree_size", "BIGINT"), ("sth_timestamp", "BIGINT"), ("root_hash", "BLOB"),
        ("scan_id", "VARCHAR"), ("updated_at", "TIMESTAMPTZ"),
    ),
    # No primary key: uniqueness is the writer's (one writing process per store), and an
    # index over millions of random hashes would live in memory. ``chain_error`` is set
    # when a certificate of the entry's chain (extra_data, outside the Merkle tree) does
    # not sign the one before it.
    "ct_issuances": (
        ("key64", "BIGINT NOT NULL"), ("issuance", "VARCHAR NOT NULL"),
        ("host", "VARCHAR NOT NULL"), ("issuer", "VARCHAR"), ("serial", "VARCHAR"),
        ("precert_sha256", "VARCHAR"), ("final_sha256", "VARCHAR"),
        ("observed_at", "TIMESTAMPTZ NOT NULL"), ("log", "VARCHAR"),
        ("precert_index", "BIGINT"), ("final_index", "BIGINT"),
        ("scan_id", "VARCHAR NOT NULL"), ("chain_error", "VARCHAR"),
    ),
    # Entries whose certificate does not parse: the raw bytes are in ``certificates``
    # (``parse_error`` set), this row says where they came from.
    "ct_unparsable": (
        ("log", "VARCHAR NOT NULL"), ("entry_index", "BIGINT NOT NULL"),
        ("entry_type", "VARCHAR NOT NULL"), ("sha256", "VARCHAR NOT NULL"),
        ("error", "VARCHAR"), ("observed_at", "TIMESTAMPTZ"), ("scan_id", "VARCHAR NOT NULL"),
    ),
}  # fmt: skip
"""Table name -> (column, DuckDB type) of the backfill's own tables."""
_KEYS = {
    "ct_state": ", PRIMARY KEY (log, filter)",
    "ct_unparsable": ", PRIMARY KEY (log, entry_index, sha256)",  # a resume reads it again
}

CT_TABLES = {
    name: f"CREATE TABLE IF NOT EXISTS {name} ("
    + ", ".join(f"{column} {kind}" for column, kind in columns)
    + _KEYS.get(name, "")
    + ")"
    for name, columns in CT_COLUMNS.items()
}
"""Table name -> DDL."""


def create_ct_tables(store: Store) -> None:
    """Create the CT tables if missing (they live beside the store's tables).

    A store written by an earlier pinlab gets the nullable columns added since, so it
    stays readable and writable (old rows read them as null).
    """
    with store.transaction():
        for name, ddl in CT_TABLES.items():
            store.connection.execute(ddl)
            present = {
                row[0]
                for row in store.connection.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                    "AND schema_name = current_schema()",
                    [name],
                ).fetchall()
            }
            for column, kind in CT_COLUMNS[name]:
                if column not in present and "NOT NULL" not in kind:
                    store.connection.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")


def key64(issuance: str) -> int:
    """The signed 64-bit prefix of a hex issuance key (its ``key64`` column)."""
    return int.from_bytes(bytes.fromhex(issuance[:16]), "big", signed=True)


class KeyIndex:
    """The ``key64`` of every registered issuance: sorted, plus a set of recent additions."""

    _MERGE_AT = 65_536

    def __init__(self, keys: npt.NDArray[np.int64]) -> None:
        self._sorted = np.sort(keys.astype(np.int64))
        self._recent: set[int] = set()

    @classmethod
    def load(cls, store: Store) -> KeyIndex:
        """The index of ``store``'s registry."""
        create_ct_tables(store)
        column = store.connection.execute("SELECT key64 FROM ct_issuances").fetchnumpy()["key64"]
        return cls(np.asarray(column, dtype=np.int64))

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, keys: list[int]) -> None:
        """Register keys (call after they are committed)."""
        self._recent.update(keys)
        if len(self._recent) >= self._MERGE_AT:
            merged = np.concatenate([self._sorted, np.fromiter(self._recent, dtype=np.int64)])
            self._sorted = np.sort(merged)
            self._recent.clear()

    def hits(self, keys: list[int]) -> set[int]:
        """The keys among ``keys`` that may be registered already (exact on 64 bits)."""
        found = {key for key in keys if key in self._recent}
        if len(self._sorted) and keys:
            wanted = np.fromiter(keys, dtype=np.int64, count=len(keys))
            positions = np.searchsorted(self._sorted, wanted).clip(max=len(self._sorted) - 1)
            found.update(int(k) for k in wanted[self._sorted[positions] == wanted])
        return found


def state_of(store: Store, log: str, filter_key: str) -> tuple[int, int] | None:
    """(next_index, resume_index) of a backfill of ``log`` with that filter, if any."""
    create_ct_tables(store)
    row = store.connection.execute(
        "SELECT next_index, resume_index FROM ct_state WHERE log = ? AND filter = ?",
        [log, filter_key],
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def last_tree_head(store: Store, log: str) -> tuple[int, bytes] | None:
    """The largest (tree size, root hash) recorded for ``log`` by any backfill."""
    create_ct_tables(store)
    row = store.connection.execute(
        "SELECT tree_size, root_hash FROM ct_state WHERE log = ? AND tree_size IS NOT NULL "
        "ORDER BY tree_size DESC LIMIT 1",
        [log],
    ).fetchone()
    return (int(row[0]), bytes(row[1])) if row else None
