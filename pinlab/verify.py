"""Path validation: the verified chain that pins are checked against.

Built on :mod:`cryptography.x509.verification` (the WebPKI rules of rustls-webpki/Chromium:
basic constraints, path length, name constraints, key usage, validity at a given time,
hostname). A pin never replaces this step: a chain that fails here fails, whatever its pins.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import (
    PolicyBuilder,
    Store,
    VerificationError,
)

from pinlab.certs import Certificate, load_certificate_file
from pinlab.errors import MalformedCertificateError, PinlabError
from pinlab.explain import explain_failure
from pinlab.names import name_matches

__all__ = ["TrustStore", "Verification", "VerificationFailure", "verify_chain", "wrong_name"]


class VerificationFailure(enum.Enum):
    """Why validation failed."""

    UNTRUSTED = "untrusted"
    """No valid path to a trust anchor (unknown CA, bad signature, constraints, expiry)."""
    HOSTNAME = "hostname"
    """The chain is valid, but not for the requested name."""
    NO_CERTIFICATE = "no_certificate"


@dataclass(frozen=True, slots=True)
class TrustStore:
    """A set of trust anchors. Default: Mozilla's roots as shipped by certifi."""

    roots: tuple[Certificate, ...]
    name: str
    _store: Store = field(repr=False, compare=False)
    _by_x509: dict[x509.Certificate, Certificate] = field(repr=False, compare=False)

    @classmethod
    def from_certificates(cls, roots: Iterable[Certificate], *, name: str) -> TrustStore:
        """A store of the given anchors."""
        anchors = tuple(roots)
        if not anchors:
            raise PinlabError(f"trust store {name!r} holds no certificate")
        return cls(
            roots=anchors,
            name=name,
            _store=Store([root.x509 for root in anchors]),
            _by_x509={root.x509: root for root in anchors},
        )

    @classmethod
    def from_pem_file(cls, path: str | Path) -> TrustStore:
        """Anchors from a PEM bundle (``--ca-file``)."""
        return cls.from_certificates(load_certificate_file(path), name=str(path))

    @classmethod
    def certifi(cls) -> TrustStore:
        """Mozilla's root store, as the installed certifi release carries it."""
        return cls.from_certificates(
            load_certificate_file(certifi.where()), name=f"certifi {certifi.__version__}"
        )

    def contains(self, certificate: Certificate) -> bool:
        """Whether ``certificate`` is one of the anchors."""
        return certificate.x509 in self._by_x509


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of path validation: the built path, or the failure and its reason."""

    path: tuple[Certificate, ...]
    """Leaf to trust anchor, as built; empty when validation failed."""
    failure: VerificationFailure | None = None
    error: str | None = None
    """Why validation failed, in one line a person understands (:mod:`pinlab.explain`)."""
    hostname: str | None = None
    detail: str | None = None
    """The verifier's own error text (cryptography's), for ``--verbose``."""

    @property
    def ok(self) -> bool:
        """A path to a trust anchor was built and the name matched."""
        return self.failure is None

    def added_from_store(self, presented: Sequence[Certificate]) -> set[int]:
        """Positions in :attr:`path` of certificates the server did not send."""
        sent = {certificate.sha256 for certificate in presented}
        return {i for i, c in enumerate(self.path) if c.sha256 not in sent}


def verify_chain(
    chain: Sequence[Certificate],
    *,
    hostname: str | None,
    at: datetime,
    trust_store: TrustStore,
) -> Verification:
    """Validate ``chain`` (leaf first, as presented) for ``hostname`` at time ``at``.

    ``hostname`` may be a DNS name or an IP address. ``None`` skips the name check by
    validating for the leaf's own first SAN (used to show the path of a certificate file).
    """
    if not chain:
        return Verification((), VerificationFailure.NO_CERTIFICATE, "no certificate presented")
    if at.tzinfo is None:
        raise ValueError("validation time must be timezone-aware (UTC)")
    leaf, intermediates = chain[0], [c.x509 for c in chain[1:]]
    if hostname is not None and hostname.endswith("."):
        hostname = hostname[:-1]  # the absolute form of the same name (pinlab.names)
    name = hostname if hostname is not None else _own_name(leaf)
    if name is None:
        return Verification(
            (), VerificationFailure.UNTRUSTED, "the leaf names no host to validate it for"
        )
    try:
        built = _verifier(name, at, trust_store).verify(leaf.x509, intermediates)
    except (VerificationError, ValueError) as error:
        own = _own_name(leaf)
        if hostname is not None and own is not None and own != hostname:
            try:
                _verifier(own, at, trust_store).verify(leaf.x509, intermediates)
            except (VerificationError, ValueError):
                pass
            else:
                return Verification(
                    (),
                    VerificationFailure.HOSTNAME,
                    wrong_name(leaf, hostname),
                    hostname,
                    detail=str(error),
                )
        explained = explain_failure(
            chain,
            name=hostname or (leaf.sans[0] if leaf.sans else leaf.subject),
            at=at,
            anchors=trust_store.roots,
            detail=str(error),
        )
        return Verification(
            (), VerificationFailure.UNTRUSTED, explained, hostname, detail=str(error)
        )
    if hostname is not None and not name_matches(hostname, leaf.sans):
        # cryptography accepts a wildcard over one label (*.com); clients do not.
        return Verification(
            (),
            VerificationFailure.HOSTNAME,
            f"{wrong_name(leaf, hostname)}: a wildcard must stand under a name of at least "
            "two labels",
            hostname,
        )
    known = {c.x509: c for c in chain}
    path = tuple(
        known.get(c) or trust_store._by_x509.get(c) or Certificate.from_cryptography(c)
        for c in built
    )
    return Verification(path, hostname=hostname)


def wrong_name(leaf: Certificate, hostname: str) -> str:
    """The one line for a leaf that does not cover ``hostname``."""
    return f"certificate is for {', '.join(leaf.sans) or leaf.subject}, not {hostname}"


def _verifier(name: str, at: datetime, trust_store: TrustStore) -> x509.verification.ServerVerifier:
    subject: DNSName | IPAddress
    try:
        subject = IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = DNSName(name)
    builder = PolicyBuilder().store(trust_store._store).time(at)
    return builder.build_server_verifier(subject)


def _own_name(leaf: Certificate) -> str | None:
    try:
        sans = leaf.sans
    except MalformedCertificateError:
        return None  # a SAN that does not parse names nothing; the verifier says why
    for name in sans:
        if not name.startswith("*."):
            return name
    for name in sans:
        return "wildcard-check" + name[1:]
    return None
