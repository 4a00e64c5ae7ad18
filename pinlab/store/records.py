"""The facts the store keeps, one frozen record type per table.

:mod:`~pinlab.store.duckdb_file` derives its tables from these dataclasses (field name -> column,
type hint -> DuckDB type), so adding a field here is the whole schema change (plus a bump of
``SCHEMA_VERSION`` there).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from pinlab.certs import Certificate
from pinlab.positional import PickledByPosition

__all__ = ["CertificateRow", "Observation", "Scan", "Status"]


class Status(enum.StrEnum):
    """Observation statuses (their values are the strings the store holds)."""

    OK = "ok"
    DNS_ERROR = "dns_error"
    """No address for another reason (no A/AAAA records, a malformed answer, EAI_AGAIN)."""
    NXDOMAIN = "nxdomain"
    """The name does not exist (an authoritative NXDOMAIN)."""
    SERVFAIL = "servfail"
    """Every name server asked answered SERVFAIL (or refused)."""
    DNS_TIMEOUT = "dns_timeout"
    """No DNS answer within ``--dns-timeout``."""
    REFUSED = "refused"
    TIMEOUT = "timeout"
    RESET = "reset"
    TLS_ALERT = "tls_alert"
    PROTOCOL_ERROR = "protocol_error"
    NO_CERTIFICATE = "no_certificate"
    MALFORMED_CERTIFICATE = "malformed_certificate"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class CertificateRow(PickledByPosition):
    """One distinct certificate, keyed by the hex SHA-256 of its DER.

    A certificate that a server presented but that does not parse is kept too: its DER and
    digest, ``parse_error`` set and every parsed field null.
    """

    sha256: str
    der: bytes
    subject: str | None
    issuer: str | None
    serial: str | None
    not_before: datetime | None
    not_after: datetime | None
    spki_sha256: str | None
    """Hex SHA-256 of the SubjectPublicKeyInfo (the digest of a ``sha256/`` pin)."""
    key_type: str | None
    key_size: int | None
    curve: str | None
    is_ca: bool | None
    path_length: int | None
    sans: tuple[str, ...] | None
    parse_error: str | None = None

    @classmethod
    def from_certificate(cls, certificate: Certificate) -> CertificateRow:
        """The row of a parsed certificate."""
        return cls(
            sha256=certificate.sha256,
            der=certificate.der,
            subject=certificate.subject,
            issuer=certificate.issuer,
            serial=certificate.serial,
            not_before=certificate.not_before,
            not_after=certificate.not_after,
            spki_sha256=certificate.spki_sha256_hex,
            key_type=certificate.key_type,
            key_size=certificate.key_size,
            curve=certificate.curve,
            is_ca=certificate.is_ca,
            path_length=certificate.path_length,
            sans=certificate.sans,
        )

    @classmethod
    def unparsable(cls, sha256: str, der: bytes, error: str) -> CertificateRow:
        """The row of presented bytes that are not a parsable certificate."""
        return cls(
            sha256, der, None, None, None, None, None, None, None, None, None, None, None, None,
            parse_error=error,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Observation(PickledByPosition):
    """One attempt to reach a target in a scan (the last try, after any retries)."""

    scan_id: str
    host: str
    port: int
    sni: str | None
    ip: str | None
    """The peer address connected to (null when the name did not resolve)."""
    target_ip: str | None
    """The address the target list fixed (``ip,sni`` lines), null when resolved by DNS."""
    observed_at: datetime
    """UTC time the handshake started."""
    status: str
    error: str | None
    tls_version: str | None
    cipher: str | None
    chain: tuple[str, ...]
    """The presented chain, as certificate SHA-256 hex digests, in the order sent."""
    validation: str | None
    """``valid``, ``untrusted`` or ``hostname`` against the trust store; null unless ok."""
    validation_error: str | None
    connect_ms: float | None
    handshake_ms: float | None
    attempts: int
    source_extra: str | None = None
    """JSON of what a source knows beyond the columns: extra manifest columns
    (``import-pem``), the log and entry (CT), every address a scanned name resolved to
    (``{"addresses": [...]}``, ``collect`` with DNS); null when there is nothing more."""

    @property
    def key(self) -> tuple[str, int, str | None, str | None]:
        """The target this observation answers (same shape as ``Target.key``)."""
        return (self.host, self.port, self.sni, self.target_ip)


@dataclass(frozen=True, slots=True)
class Scan:
    """One campaign: a collect run, a CT import, a lab run, or a manifest import."""

    scan_id: str
    source: str
    """``scan``, ``ct``, ``lab`` or ``import``."""
    label: str | None
    targets: str | None
    """Absolute path of the target file (or manifest) the scan read."""
    parameters: str
    """JSON of the run's parameters (concurrency, timeout, trust store, ...)."""
    started_at: datetime
    finished_at: datetime | None
    """Null while the scan runs, or if it was interrupted (``--resume`` picks it up)."""
    pinlab_version: str
