"""CT log entries: RFC 6962 ``MerkleTreeLeaf`` and ``extra_data``, static-ct ``TileLeaf``.

Parsing is strict (every length checked, nothing left over) because a malformed entry is
evidence of a misbehaving log, never something to guess around. Encoders are here too, for
the test logs that pinlab stands up on loopback: the structures are written by the same
module that reads them, and an independent client (certspotter) reads them in the tests.

Layout (RFC 6962 section 3.4, TLS presentation language)::

    MerkleTreeLeaf  = version(1) leaf_type(1) TimestampedEntry
    TimestampedEntry = timestamp(8) entry_type(2) signed_entry extensions<0..2^16-1>
    signed_entry     = x509_entry:    ASN.1Cert<1..2^24-1>
                       precert_entry: issuer_key_hash[32] TBSCertificate<1..2^24-1>
    extra_data       = x509_entry:    ASN.1Cert certificate_chain<0..2^24-1>
                       precert_entry: ASN.1Cert pre_certificate, precertificate_chain<0..2^24-1>
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pinlab.ct.errors import LogMisbehaviourError
from pinlab.ct.merkle import leaf_hash
from pinlab.positional import PickledByPosition

__all__ = [
    "EntryType",
    "LogEntry",
    "TileLeaf",
    "encode_extra_data",
    "encode_leaf",
    "encode_tile_leaf",
    "parse_entry",
    "parse_leaf",
    "parse_tile_leaves",
]


class EntryType(enum.IntEnum):
    """``LogEntryType`` of RFC 6962."""

    X509 = 0
    PRECERT = 1


_TYPES = (EntryType.X509, EntryType.PRECERT)  # indexing beats calling the enum, per entry


@dataclass(frozen=True, slots=True)
class LogEntry(PickledByPosition):
    """One parsed log entry.

    ``certificate`` is the DER of the logged certificate (``x509_entry``) or of the
    precertificate the CA submitted (``precert_entry``, from ``extra_data``); ``tbs`` and
    ``issuer_key_hash`` are the precertificate's leaf fields. ``chain`` holds the issuing
    certificates, nearest first, as the submitter sent them.
    """

    index: int
    timestamp: int
    """Milliseconds since the epoch: the log's timestamp of the entry (its SCT time)."""
    entry_type: EntryType
    certificate: bytes = field(repr=False)
    chain: tuple[bytes, ...] = field(repr=False)
    leaf_input: bytes = field(repr=False)
    tbs: bytes | None = field(default=None, repr=False)
    issuer_key_hash: bytes | None = field(default=None, repr=False)

    @property
    def observed_at(self) -> datetime:
        """The entry's timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)

    @property
    def leaf_hash(self) -> bytes:
        """The entry's Merkle leaf hash."""
        return leaf_hash(self.leaf_input)

    @property
    def is_precert(self) -> bool:
        """Whether the entry logs a precertificate."""
        return self.entry_type is EntryType.PRECERT


def _u24(data: bytes, pos: int, end: int, what: str, index: int) -> tuple[bytes, int]:
    if pos + 3 > end:
        raise LogMisbehaviourError(f"entry {index}: {what} truncated (no length)")
    length = int.from_bytes(data[pos : pos + 3], "big")
    stop = pos + 3 + length
    if stop > end:
        raise LogMisbehaviourError(
            f"entry {index}: {what} claims {length} bytes, {end - pos - 3} remain"
        )
    return data[pos + 3 : stop], stop


def parse_leaf(leaf: bytes, index: int) -> tuple[int, EntryType, bytes, bytes | None]:
    """Parse a ``MerkleTreeLeaf``: ``(timestamp, type, certificate or TBS, issuer key hash)``."""
    if len(leaf) < 2 or leaf[0] != 0 or leaf[1] != 0:
        raise LogMisbehaviourError(f"entry {index}: not a v1 timestamped_entry MerkleTreeLeaf")
    timestamp, kind, body, issuer_key_hash, pos = _timestamped(leaf, 2, index)
    if pos != len(leaf):
        raise LogMisbehaviourError(f"entry {index}: {len(leaf) - pos} bytes after the leaf")
    return timestamp, kind, body, issuer_key_hash


def _timestamped(
    data: bytes, pos: int, index: int
) -> tuple[int, EntryType, bytes, bytes | None, int]:
    """Parse the ``TimestampedEntry`` at ``pos``; also return where it ends."""
    end = len(data)
    if pos + 10 > end:
        raise LogMisbehaviourError(f"entry {index}: MerkleTreeLeaf truncated")
    timestamp = int.from_bytes(data[pos : pos + 8], "big")
    kind = int.from_bytes(data[pos + 8 : pos + 10], "big")
    pos += 10
    issuer_key_hash = None
    if kind == EntryType.X509:
        body, pos = _u24(data, pos, end, "certificate", index)
    elif kind == EntryType.PRECERT:
        if pos + 32 > end:
            raise LogMisbehaviourError(f"entry {index}: issuer_key_hash truncated")
        issuer_key_hash = data[pos : pos + 32]
        body, pos = _u24(data, pos + 32, end, "TBSCertificate", index)
    else:
        raise LogMisbehaviourError(f"entry {index}: unknown entry type {kind}")
    if not body:
        raise LogMisbehaviourError(f"entry {index}: empty certificate")
    if pos + 2 > end:
        raise LogMisbehaviourError(f"entry {index}: extensions truncated")
    pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
    if pos > end:
        raise LogMisbehaviourError(f"entry {index}: extensions truncated")
    return timestamp, _TYPES[kind], body, issuer_key_hash, pos


def _chain(data: bytes, pos: int, index: int, what: str) -> tuple[tuple[bytes, ...], int]:
    body, stop = _u24(data, pos, len(data), what, index)
    items, cursor = [], 0
    while cursor < len(body):
        item, cursor = _u24(body, cursor, len(body), what, index)
        items.append(item)
    return tuple(items), stop


def parse_entry(index: int, leaf_input: bytes, extra_data: bytes) -> LogEntry:
    """Parse one ``get-entries`` item (both fields already base64-decoded)."""
    timestamp, kind, body, issuer_key_hash = parse_leaf(leaf_input, index)
    if kind is EntryType.X509:
        chain, stop = _chain(extra_data, 0, index, "certificate_chain")
        certificate, tbs = body, None
    else:
        certificate, pos = _u24(extra_data, 0, len(extra_data), "pre_certificate", index)
        chain, stop = _chain(extra_data, pos, index, "precertificate_chain")
        tbs = body
    if stop != len(extra_data):
        raise LogMisbehaviourError(
            f"entry {index}: {len(extra_data) - stop} bytes after extra_data"
        )
    return LogEntry(index, timestamp, kind, certificate, chain, leaf_input, tbs, issuer_key_hash)


@dataclass(frozen=True, slots=True)
class TileLeaf:
    """One entry of a static-ct-api data tile: the chain is by SHA-256 fingerprint."""

    entry: LogEntry
    fingerprints: tuple[bytes, ...]


def parse_tile_leaves(data: bytes, first_index: int, count: int) -> list[TileLeaf]:
    """Parse a data tile holding exactly ``count`` ``TileLeaf`` structures."""
    leaves: list[TileLeaf] = []
    pos, end = 0, len(data)
    for index in range(first_index, first_index + count):
        start = pos
        timestamp, kind, body, issuer_key_hash, pos = _timestamped(data, pos, index)
        leaf_input = b"\x00\x00" + data[start:pos]
        if kind is EntryType.PRECERT:
            certificate, pos = _u24(data, pos, end, "pre_certificate", index)
            tbs: bytes | None = body
        else:
            certificate, tbs = body, None
        if pos + 2 > end:
            raise LogMisbehaviourError(f"entry {index}: data tile truncated (chain length)")
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if length % 32 or pos + length > end:
            raise LogMisbehaviourError(f"entry {index}: bad fingerprint list in data tile")
        fingerprints = tuple(data[i : i + 32] for i in range(pos, pos + length, 32))
        pos += length
        entry = LogEntry(index, timestamp, kind, certificate, (), leaf_input, tbs, issuer_key_hash)
        leaves.append(TileLeaf(entry, fingerprints))
    if pos != end:
        raise LogMisbehaviourError(
            f"data tile at entry {first_index}: {end - pos} bytes after {count} entries"
        )
    return leaves


# -- encoding (test logs) ------------------------------------------------------------------


def _len24(data: bytes) -> bytes:
    return len(data).to_bytes(3, "big") + data


def _timestamped_entry(
    timestamp: int, certificate: bytes, *, tbs: bytes | None, issuer_key_hash: bytes | None
) -> bytes:
    if tbs is None:
        signed = (0).to_bytes(2, "big") + _len24(certificate)
    else:
        if issuer_key_hash is None or len(issuer_key_hash) != 32:
            raise ValueError("a precert entry needs the 32-byte issuer key hash")
        signed = (1).to_bytes(2, "big") + issuer_key_hash + _len24(tbs)
    return timestamp.to_bytes(8, "big") + signed + b"\x00\x00"


def encode_leaf(
    timestamp: int,
    certificate: bytes,
    *,
    tbs: bytes | None = None,
    issuer_key_hash: bytes | None = None,
) -> bytes:
    """A ``MerkleTreeLeaf``: of an ``x509_entry`` for ``certificate``, or of a
    ``precert_entry`` when ``tbs`` and ``issuer_key_hash`` are given."""
    entry = _timestamped_entry(timestamp, certificate, tbs=tbs, issuer_key_hash=issuer_key_hash)
    return b"\x00\x00" + entry


def encode_extra_data(chain: Sequence[bytes], *, precertificate: bytes | None = None) -> bytes:
    """``extra_data`` of an entry: the chain, led by the precertificate for a precert entry."""
    body = _len24(b"".join(_len24(item) for item in chain))
    return body if precertificate is None else _len24(precertificate) + body


def encode_tile_leaf(
    timestamp: int,
    certificate: bytes,
    chain: Sequence[bytes],
    *,
    tbs: bytes | None = None,
    issuer_key_hash: bytes | None = None,
) -> bytes:
    """A static-ct ``TileLeaf``; ``certificate`` is the precertificate for a precert entry."""
    entry = _timestamped_entry(timestamp, certificate, tbs=tbs, issuer_key_hash=issuer_key_hash)
    if tbs is not None:
        entry += _len24(certificate)
    fingerprints = b"".join(hashlib.sha256(item).digest() for item in chain)
    return entry + len(fingerprints).to_bytes(2, "big") + fingerprints
