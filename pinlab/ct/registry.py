"""The backfill's own tables, and an in-memory index of the issuances already recorded.

``ct_state`` keeps, per (log, domain filter), the next entry to read (``resume_index``:
the oldest precertificate still waiting for its final certificate when the run stopped)
and the last tree head seen, which is how a log that rewinds or forks is caught.
``ct_issuances`` is the issuance registry: one row per (issuance, host) recorded, whatever
the source, with the precertificate and final certificate that stand for it, and
``chain_error`` when the entry's chain does not sign in order. ``ct_unparsable`` names the
entries whose certificate does not parse (their bytes are in ``certificates``).

Checking every entry against the registry in SQL would scan it once per batch, which
grows with the store, and holding every recorded key in memory grows with the store too.
:class:`KeyIndex` is a Bloom filter of fixed size over the first 8 bytes of every recorded
issuance key: it answers "certainly not recorded" for almost every new key without the
database, and "maybe" otherwise, which the writer settles with one exact lookup in
``ct_issuances`` per batch. Its memory is its size (16 MiB by default) whatever the store
holds; a store far beyond its capacity only makes the "maybe" answers, and the lookups,
more frequent, never a duplicate or a lost row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pinlab.store import Store

__all__ = [
    "CT_COLUMNS",
    "CT_TABLES",
    "DEFAULT_INDEX_BYTES",
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


DEFAULT_INDEX_BYTES = 16 << 20
"""Size of the issuance index: one in a million new keys asks the database at 1M recorded
issuances, one in 200 at 10M."""
_HASHES = 4


class KeyIndex:
    """A Bloom filter over the ``key64`` of registered issuances, ``size`` bytes."""

    def __init__(self, size: int = DEFAULT_INDEX_BYTES) -> None:
        if size < 8:
            raise ValueError("the issuance index needs at least 8 bytes")
        self._bits = np.zeros(size, dtype=np.uint8)
        self._nbits = np.uint64(size * 8)
        self._count = 0

    @classmethod
    def load(cls, store: Store, *, size: int = DEFAULT_INDEX_BYTES) -> KeyIndex:
        """The index of ``store``'s registry, read in chunks (memory: ``size``)."""
        create_ct_tables(store)
        index = cls(size)
        reader = store.connection.sql("SELECT key64 FROM ct_issuances").to_arrow_reader(1 << 16)
        for batch in reader:
            index._insert(batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64))
        return index

    def __len__(self) -> int:
        """Keys added (with repeats)."""
        return self._count

    def _positions(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        # key64 is already a slice of SHA-256: its halves are independent hashes, and
        # h1 + i * h2 (Kirsch and Mitzenmacher) gives the filter's other positions.
        raw = keys.view(np.uint64)
        low, high = raw & np.uint64(0xFFFFFFFF), (raw >> np.uint64(32)) | np.uint64(1)
        steps = np.arange(_HASHES, dtype=np.uint64)
        with np.errstate(over="ignore"):
            mixed = low[:, None] + steps[None, :] * high[:, None]
        return mixed % self._nbits

    def _insert(self, keys: npt.NDArray[np.int64]) -> None:
        positions = self._positions(keys).ravel()
        np.bitwise_or.at(
            self._bits,
            (positions >> np.uint64(3)).astype(np.intp),
            (np.uint8(1) << (positions & np.uint64(7)).astype(np.uint8)),
        )
        self._count += len(keys)

    def add(self, keys: list[int]) -> None:
        """Register keys (call after they are committed)."""
        if keys:
            self._insert(np.fromiter(keys, dtype=np.int64, count=len(keys)))

    def hits(self, keys: list[int]) -> set[int]:
        """The keys among ``keys`` that may be registered already; every key registered
        is among them (some that are not may be too: the caller checks those exactly)."""
        if not keys:
            return set()
        wanted = np.fromiter(keys, dtype=np.int64, count=len(keys))
        positions = self._positions(wanted)
        bits = self._bits[(positions >> np.uint64(3)).astype(np.intp)]
        present = (bits >> (positions & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
        return {int(k) for k in wanted[present.all(axis=1)]}


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
