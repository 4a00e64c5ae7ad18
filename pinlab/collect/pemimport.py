"""Import PEM chain dumps described by a manifest, as researchers save them.

A manifest is a CSV with at least ``host``, ``observed_at`` (ISO 8601; a time without an
offset is taken as UTC) and ``chain_file`` (PEM, leaf first, as ``openssl s_client
-showcerts`` prints it; relative to the manifest). Other columns are kept, as JSON, in the
observations' ``source_extra``. Each line becomes one ``ok`` observation of a scan whose
source is ``import``; the import is one transaction, and a manifest already imported
(same content) is refused rather than duplicated. Rows already stored, by the observations'
natural key (host, port, SNI, time and chain: a manifest that differs only in blank lines,
order or extra columns), are skipped, and a manifest that adds nothing is refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinlab.certs import load_certificate_file
from pinlab.collect.targets import parse_target_line
from pinlab.errors import MalformedCertificateError, TargetError
from pinlab.store import CertificateRow, Observation, Scan, Status, StoreError
from pinlab.verify import TrustStore, verify_chain

if TYPE_CHECKING:
    from pinlab.store import Store

__all__ = ["import_pem"]

_REQUIRED = ("host", "observed_at", "chain_file")


_YEARS = (1950, 9999)
"""Years an observation can carry: those of a certificate's validity (RFC 5280, 4.1.2.5)."""


def _rows(reader: csv.DictReader[str], manifest: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The manifest's rows with their line numbers; a malformed row is an error naming it."""
    number = 1
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # e.g. a field over csv's 131,072-character limit
            raise StoreError(f"{manifest} line {number}: {error}") from None
        yield number, row


def _observed_at(text: str) -> datetime:
    """An ISO 8601 time in UTC (no zone: UTC), inside the years a certificate can carry."""
    observed_at = datetime.fromisoformat(text.strip())
    if observed_at.tzinfo is None:
        observed_at = observed_at.replace(tzinfo=UTC)
    try:
        observed_at = observed_at.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"observed_at {text.strip()!r} is out of range in UTC") from None
    if not _YEARS[0] <= observed_at.year <= _YEARS[1]:
        raise ValueError(
            f"observed_at {text.strip()!r}: years {_YEARS[0]}..{_YEARS[1]} only "
            "(those a certificate can carry)"
        )
    return observed_at


def import_pem(
    store: Store,
    manifest: str | Path,
    *,
    now: datetime,
    trust_store: TrustStore | None = None,
    label: str | None = None,
) -> Scan:
    """Import every chain of ``manifest`` into ``store`` as one scan; return the scan.

    With ``trust_store``, each chain is validated at its ``observed_at`` (the validation
    column); without, validation stays null.
    """
    from pinlab.store import pinlab_version

    manifest = Path(manifest).resolve()
    try:
        content = manifest.read_bytes()
    except OSError as error:
        raise StoreError(f"{manifest}: cannot read manifest: {error.strerror}") from None
    digest = hashlib.sha256(content).hexdigest()
    previous = store.connection.execute(
        "SELECT scan_id FROM scans WHERE source = 'import' AND parameters LIKE ?",
        [f'%"manifest_sha256": "{digest}"%'],
    ).fetchone()
    if previous:
        raise StoreError(f"{manifest}: already imported as scan {previous[0]}")
    scan = Scan(
        scan_id=uuid.uuid4().hex,
        source="import",
        label=label,
        targets=str(manifest),
        parameters=json.dumps(
            {
                "manifest_sha256": digest,
                "trust_store": trust_store.name if trust_store else None,
            }
        ),
        started_at=now,
        finished_at=now,
        pinlab_version=pinlab_version(),
    )
    observations: list[Observation] = []
    certificates: dict[str, CertificateRow] = {}
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise StoreError(f"{manifest}: not UTF-8 text ({error.reason})") from None
    reader = csv.DictReader(text.splitlines())
    try:
        missing = [name for name in _REQUIRED if name not in (reader.fieldnames or ())]
    except csv.Error as error:
        raise StoreError(f"{manifest} line 1: {error}") from None
    if missing:
        raise StoreError(f"{manifest}: manifest lacks the column(s) {', '.join(missing)}")
    for number, row in _rows(reader, manifest):
        where = f"{manifest} line {number}"
        try:
            target = parse_target_line(row["host"] or "")
            if target is None:
                raise TargetError("empty host")
            observed_at = _observed_at(row["observed_at"] or "")
            chain = load_certificate_file(manifest.parent / (row["chain_file"] or "").strip())
        except (TargetError, MalformedCertificateError, ValueError) as error:
            raise StoreError(f"{where}: {error}") from None
        validation = error_text = None
        if trust_store is not None:
            result = verify_chain(
                chain, hostname=target.validation_name, at=observed_at, trust_store=trust_store
            )
            validation = "valid" if result.ok else result.failure.value  # type: ignore[union-attr]
            error_text = result.error
        for certificate in chain:
            certificates[certificate.sha256] = CertificateRow.from_certificate(certificate)
        extra = {k: v for k, v in row.items() if k not in _REQUIRED and k is not None}
        observations.append(
            Observation(
                scan_id=scan.scan_id,
                host=target.host,
                port=target.port,
                sni=target.sni,
                ip=None,
                target_ip=None,
                observed_at=observed_at,
                status=Status.OK,
                error=None,
                tls_version=None,
                cipher=None,
                chain=tuple(certificate.sha256 for certificate in chain),
                validation=validation,
                validation_error=error_text,
                connect_ms=None,
                handshake_ms=None,
                attempts=1,
                source_extra=json.dumps(extra, sort_keys=True) if extra else None,
            )
        )
    fresh = store.unstored(observations)
    if observations and not fresh:
        raise StoreError(
            f"{manifest}: every one of its {len(observations)} rows is already stored; "
            "nothing imported"
        )
    store.write_scan(scan, fresh, certificates.values())
    return scan
