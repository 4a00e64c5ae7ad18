"""The store's schema, derived once from the record types, and its error type.

Every table is derived from a dataclass of :mod:`pinlab.store.records` (field name ->
column, type hint -> DuckDB and Arrow types), so adding a field is the whole schema change
(plus a bump of :data:`SCHEMA_VERSION`). The DuckDB file, the Parquet exports and the
health check all read their table list from here.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import types
import typing
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from pinlab.errors import PinlabError
from pinlab.store.records import CertificateRow, Observation, Scan

__all__ = [
    "OBSERVATION_KEY",
    "SCHEMA_VERSION",
    "TABLES",
    "StoreError",
    "arrow_table",
    "ddl",
    "first_line",
    "pinlab_version",
    "sql_path",
]

SCHEMA_VERSION = 1

TABLES: dict[str, tuple[type[Any], str | None]] = {
    "certificates": (CertificateRow, "sha256"),
    "scans": (Scan, "scan_id"),
    "observations": (Observation, None),
}
"""Table name -> (record type, primary key)."""

OBSERVATION_KEY = ("host", "port", "sni", "target_ip", "observed_at", "chain")
"""The natural key of an observation: what was asked (the target), when, and what came back.

Imports deduplicate on it (:mod:`pinlab.store.parquet`, ``import-pem``). ``scan_id`` is left
out on purpose: the same manifest imported twice gets two scan ids, yet it records the
same sightings, and the history stages would count a renewal twice. The chain is in the key
because a host serving two chains at once (RSA and ECDSA leaves, CDN edges) gives two
facts for one time, and manifests often carry times no finer than a day. Two collect scans
never share an ``observed_at`` to the microsecond for one target, so collected rows are
never merged.
"""

_SCALARS: dict[type, tuple[str, pa.DataType]] = {
    str: ("VARCHAR", pa.string()),
    int: ("BIGINT", pa.int64()),
    float: ("DOUBLE", pa.float64()),
    bool: ("BOOLEAN", pa.bool_()),
    bytes: ("BLOB", pa.binary()),
    datetime: ("TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
}


class StoreError(PinlabError):
    """The store cannot be used (unwritable, damaged, incomplete, newer schema, in use)."""


def pinlab_version() -> str:
    """The installed pinlab's version, recorded with every scan."""
    try:
        return importlib.metadata.version("pinlab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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


def ddl(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one of :data:`TABLES`."""
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


def first_line(error: BaseException) -> str:
    """The first line of an exception's text (DuckDB's messages run to several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def sql_path(path: Path | str) -> str:
    """An absolute path quoted for a DuckDB string literal."""
    return str(Path(path).resolve()).replace("'", "''")
