"""crt.sh as a source: its JSON search output, its certificate downloads, files on disk.

``https://crt.sh/?q=example.com&output=json`` lists one record per certificate crt.sh has
seen for a name (precertificates and final certificates alike) with the CT timestamp of
its first log entry; ``https://crt.sh/?d=<id>`` returns the certificate as PEM. A domain's
history is one search plus one download per record, so downloads are rate-limited (crt.sh
is a shared service) and cached in a directory when one is given: a rerun, or an import of
files fetched earlier by other means (``<id>.pem``, ``<id>.crt``, ``<id>.der``), reads them
from there. crt.sh gives no chain: the observations hold the certificate alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinlab.ct.backfill import BackfillResult, Progress
from pinlab.ct.client import HttpSource
from pinlab.ct.domains import DomainFilter
from pinlab.ct.entries import EntryType, LogEntry
from pinlab.ct.errors import CTError, LogFetchError
from pinlab.ct.ingest import IssuanceWriter
from pinlab.ct.rows import (
    POISON_OID,
    SCT_LIST_OID,
    issuer_and_aki,
    rewrite_issuer,
    strip_extension,
    tbs_of,
)
from pinlab.store import Scan, Store, pinlab_version

__all__ = ["CrtSh", "CrtShRecord", "import_crtsh", "read_crtsh_json"]

DEFAULT_URL = "https://crt.sh/"
_FRACTION = re.compile(r"\.(\d+)")


@dataclass(frozen=True, slots=True)
class CrtShRecord:
    """One row of crt.sh's JSON output (the fields pinlab uses)."""

    id: int
    entry_timestamp: datetime | None
    """When the certificate first entered a CT log (null for certificates crt.sh crawled)."""
    not_before: datetime | None
    issuer_name: str
    name_value: str
    serial_number: str


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), str(value).rstrip("Z"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CTError(f"crt.sh time {value!r} is not ISO-8601") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def read_crtsh_json(data: bytes | str, *, source: str = "crt.sh") -> list[CrtShRecord]:
    """Parse crt.sh's ``output=json``; :class:`CTError` naming ``source`` if it is not that."""
    try:
        rows = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CTError(f"{source}: not JSON (crt.sh answers HTML when it is overloaded)") from None
    if not isinstance(rows, list):
        raise CTError(f"{source}: expected a JSON array of crt.sh records")
    records = []
    for number, row in enumerate(rows, start=1):
        try:
            records.append(
                CrtShRecord(
                    id=int(row["id"]),
                    entry_timestamp=_time(row.get("entry_timestamp")),
                    not_before=_time(row.get("not_before")),
                    issuer_name=str(row.get("issuer_name", "")),
                    name_value=str(row.get("name_value", "")),
                    serial_number=str(row.get("serial_number", "")),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise CTError(f"{source}: record {number} has no numeric id") from None
    return records


class CrtSh:
    """crt.sh's search and download endpoints (``base`` for a mirror or a test server)."""

    def __init__(self, source: HttpSource, *, cache: Path | None = None) -> None:
        self.source = source
        self.cache = cache

    @classmethod
    def at(
        cls, url: str = DEFAULT_URL, *, rate: float | None = 1.0, cache: Path | None = None
    ) -> CrtSh:
        """crt.sh (or ``url``), at most ``rate`` requests per second."""
        return cls(HttpSource(url, rate=rate, timeout=60.0), cache=cache)

    def search(self, domain: str) -> list[CrtShRecord]:
        """Every record crt.sh has for the identity ``domain`` (``%.`` prefix: subdomains)."""
        body = self.source.get("", {"q": domain, "output": "json"})
        return read_crtsh_json(body, source=f"crt.sh search {domain!r}")

    def certificate(self, record_id: int) -> bytes:
        """The DER of crt.sh certificate ``record_id``, from the cache or downloaded."""
        if self.cache is not None:
            cached = cached_certificate(self.cache, record_id)
            if cached is not None:
                return cached
        body = self.source.get("", {"d": record_id})
        der = _der(body, f"crt.sh certificate {record_id}")
        if self.cache is not None:
            self.cache.mkdir(parents=True, exist_ok=True)
            (self.cache / f"{record_id}.der").write_bytes(der)
        return der


def _der(data: bytes, source: str) -> bytes:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        x509.load_der_x509_certificate(data)
        return data
    except ValueError:
        raise LogFetchError(f"{source}: not a PEM or DER certificate") from None


def cached_certificate(directory: Path, record_id: int) -> bytes | None:
    """``<id>.pem``, ``<id>.crt`` or ``<id>.der`` from ``directory``, as DER, if present."""
    for suffix in (".der", ".pem", ".crt"):
        path = directory / f"{record_id}{suffix}"
        if path.is_file():
            return _der(path.read_bytes(), str(path))
    return None


def _pairing(tbs: bytes) -> bytes:
    """A TBS without issuer, authority key identifier, poison and SCT list: what a
    precertificate shares with its final certificate whoever signed it."""
    bare = strip_extension(strip_extension(tbs, POISON_OID), SCT_LIST_OID)
    return hashlib.sha256(rewrite_issuer(bare, b"\x30\x00", None)).digest()


def _finals(ders: Sequence[bytes]) -> dict[bytes, list[tuple[bytes, bytes | None, bytes]]]:
    """Final certificates by :func:`_pairing`: (issuer, AKI, TBS without SCT list)."""
    found: dict[bytes, list[tuple[bytes, bytes | None, bytes]]] = {}
    for der in ders:
        if POISON_OID in der:
            continue
        try:
            tbs = tbs_of(der)
            issuer, aki = issuer_and_aki(der)
            found.setdefault(_pairing(tbs), []).append(
                (issuer, aki, strip_extension(tbs, SCT_LIST_OID))
            )
        except (ValueError, IndexError):
            continue  # the writer counts it as unparsable
    return found


def _precert_tbs(der: bytes, finals: dict[bytes, list[tuple[bytes, bytes | None, bytes]]]) -> bytes:
    """The TBS a log would have logged for this precertificate (RFC 6962 section 3.2).

    crt.sh gives no chain, so a Precertificate Signing Certificate is not seen. Its issuer
    and authority key identifier are the final certificate's, though: the final
    certificate's TBS must equal the logged one. So a final certificate of the same
    import that differs from the precertificate in those two fields only stands in for
    it, and the precertificate takes them from it, as the log did from the signing
    certificate.
    """
    tbs = strip_extension(tbs_of(der), POISON_OID)
    for issuer, aki, final in finals.get(_pairing(tbs), ()):
        if final != tbs and rewrite_issuer(tbs, issuer, aki) == final:
            return final
    return tbs


def _entry(
    position: int,
    record: CrtShRecord,
    der: bytes,
    finals: dict[bytes, list[tuple[bytes, bytes | None, bytes]]],
) -> LogEntry:
    at = record.entry_timestamp or record.not_before
    if at is None:
        raise CTError(f"crt.sh record {record.id}: neither entry_timestamp nor not_before")
    timestamp = int(at.timestamp() * 1000)
    if POISON_OID in der:
        try:
            tbs = _precert_tbs(der, finals)
        except (ValueError, IndexError):
            tbs = b""  # not DER: stored as unparsable, as an x509 entry
        if tbs and tbs != tbs_of(der):
            return LogEntry(position, timestamp, EntryType.PRECERT, der, (), b"", tbs, None)
    return LogEntry(position, timestamp, EntryType.X509, der, (), b"")


def import_crtsh(
    store: Store,
    records: Sequence[CrtShRecord],
    *,
    certificate: Callable[[int], bytes],
    domains: DomainFilter | None,
    source: str,
    clock: Callable[[], datetime],
    label: str | None = None,
    batch_size: int = 100,
    progress: Progress | None = None,
) -> BackfillResult:
    """Store crt.sh records (certificates from ``certificate(id)``) as CT issuances.

    Records are taken in CT time order, so a precertificate meets its final certificate;
    issuances already in the store (from a log backfill or an earlier import) are skipped.
    """
    ordered = sorted(records, key=lambda r: (r.entry_timestamp or r.not_before or clock(), r.id))
    scan = Scan(
        scan_id=uuid.uuid4().hex, source="ct", label=label or f"crt.sh:{source}",
        targets=source, parameters=json.dumps({"kind": "crtsh", "records": len(ordered),
        "domains": domains.entries if domains is not None else None}, sort_keys=True),
        started_at=clock(), finished_at=None, pinlab_version=pinlab_version(),
    )  # fmt: skip
    writer = IssuanceWriter(
        store, scan=scan, log=f"crt.sh:{source}", domains=domains,
        merge_window=len(ordered) + 1, check_entries=False,
    )  # fmt: skip
    total = len(ordered)
    ders = []  # every certificate first: a precertificate is paired with a later final one
    for number, record in enumerate(ordered, start=1):
        ders.append(certificate(record.id))
        if progress is not None and (number % batch_size == 0 or number == total):
            progress(number, total)
    finals = _finals(ders)
    for first in range(0, total, batch_size):
        batch = ordered[first : first + batch_size]
        entries = [_entry(first + i, r, ders[first + i], finals) for i, r in enumerate(batch)]
        prepared = [p for entry in entries if (p := writer.prepare(entry)) is not None]
        done = first + len(batch)
        writer.commit(prepared, next_index=done, sth=None, now=clock(), flush_all=done >= total)
    if not total:
        writer.commit([], next_index=0, sth=None, now=clock(), flush_all=True)
    store.finish_scan(scan.scan_id, at=clock())
    return BackfillResult(scan.scan_id, f"crt.sh:{source}", 0, total, total, False, 0, writer.stats)
