"""Test PKIs made in code: roots, intermediates, leaves and deliberately odd certificates.

The conformance suite, the benchmarks and the ACME lab build every certificate they need
here, so nothing depends on files that expire or on the internet. Only :mod:`cryptography`
is used (plus :mod:`pinlab.certs` for the pinlab record of a certificate)::

    root = CA.root("Test Root")
    intermediate = root.child_ca("Test Intermediate", path_length=0)
    leaf = intermediate.issue_leaf("localhost", "127.0.0.1")
    write_pem(path, leaf, intermediate)

:meth:`CA.issue` is the low-level door for certificates no sane CA would sign: a non-CA
certificate used as a signer (wrap it with :meth:`Leaf.as_signer`), a rogue intermediate
carrying another CA's subject name, a path that violates a pathLen constraint.

Validity defaults to a fixed window (2020 to 2045) so that nothing depends on the clock.
RSA keys are slow to make: :func:`pooled_key` hands out cached keys, distinct by index,
for callers that only need *some* RSA key.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pinlab.certs import Certificate

__all__ = [
    "CA",
    "DEFAULT_NOT_AFTER",
    "DEFAULT_NOT_BEFORE",
    "KeyType",
    "Leaf",
    "PrivateKey",
    "pem_of",
    "pooled_key",
    "write_pem",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

DEFAULT_NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2045, 1, 1, tzinfo=UTC)
_ORGANIZATION = "pinlab test PKI"


class KeyType(enum.Enum):
    """Key algorithm and size of a generated key."""

    RSA2048 = "rsa2048"
    RSA4096 = "rsa4096"
    P256 = "p256"
    P384 = "p384"
    ED25519 = "ed25519"

    def generate(self) -> PrivateKey:
        """A fresh private key of this type."""
        if self is KeyType.RSA2048:
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if self is KeyType.RSA4096:
            return rsa.generate_private_key(public_exponent=65537, key_size=4096)
        if self is KeyType.P256:
            return ec.generate_private_key(ec.SECP256R1())
        if self is KeyType.P384:
            return ec.generate_private_key(ec.SECP384R1())
        return ed25519.Ed25519PrivateKey.generate()


@functools.cache
def pooled_key(key_type: KeyType, index: int = 0) -> PrivateKey:
    """A key cached for the process: the same ``(key_type, index)`` gives the same key.

    Distinct indexes give distinct keys, so a test that needs two different RSA keys asks
    for indexes 0 and 1. Never use it where a test needs a key no one else holds.
    """
    return key_type.generate()


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # Ed25519 signs the message itself
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _name(name: str | x509.Name) -> x509.Name:
    if isinstance(name, x509.Name):
        return name
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def _general_name(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _sign(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    signing_key: PrivateKey,
    *,
    is_ca: bool,
    path_length: int | None,
    hostnames: tuple[str, ...],
    not_before: datetime,
    not_after: datetime,
    authority_key: PublicKey,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not is_ca and isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key),
            critical=False,
        )
    )
    if hostnames:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hostnames]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signing_key, _hash_for(signing_key))


class _Credential:
    """What a CA and a leaf share: a certificate, its private key, their PEM forms."""

    certificate: x509.Certificate
    private_key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        """PEM of the certificate."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM of the private key."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def der(self) -> bytes:
        """DER of the certificate."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def record(self) -> Certificate:
        """The pinlab record of the certificate."""
        return Certificate.from_der(self.der)

    @property
    def pin(self) -> str:
        """The ``sha256/<base64>`` pin of the certificate's public key."""
        return self.record.pin


@dataclass(frozen=True, eq=False)
class CA(_Credential):
    """A certificate and key that sign other certificates, and its issuer (None for a root).

    The constructor wraps any certificate and key as a signer, even a non-CA one.
    """

    certificate: x509.Certificate
    private_key: PrivateKey
    parent: CA | None = None

    @classmethod
    def root(
        cls,
        name: str | x509.Name = "pinlab test root",
        *,
        key_type: KeyType = KeyType.P256,
        key: PrivateKey | None = None,
        path_length: int | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
    ) -> CA:
        """A self-signed root CA with a fresh key (or ``key``)."""
        private_key = key if key is not None else key_type.generate()
        subject = _name(name)
        certificate = _sign(
            subject,
            subject,
            private_key.public_key(),
            private_key,
            is_ca=True,
            path_length=path_length,
            hostnames=(),
            not_before=not_before,
            not_after=not_after,
            authority_key=private_key.public_key(),
        )
        return cls(certificate, private_key, None)

    def child_ca(
        self,
        name: str | x509.Name,
        *,
        key_type: KeyType = KeyType.P256,
        key: PrivateKey | None = None,
        path_length: int | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
    ) -> CA:
        """An intermediate CA signed by this one.

        Refuses to break this CA's own pathLen (use :meth:`issue` to do it on purpose).
        """
        own = self.path_length
        if own == 0:
            raise ValueError(
                f"Can't create child CA of {self.subject}: its path length is 0 "
                "(use CA.issue(..., is_ca=True) to build a violating path on purpose)"
            )
        if own is not None and path_length is None:
            path_length = own - 1
        private_key = key if key is not None else key_type.generate()
        certificate = self.issue(
            name,
            private_key.public_key(),
            is_ca=True,
            path_length=path_length,
            not_before=not_before,
            not_after=not_after,
        )
        return CA(certificate, private_key, self)

    def issue_leaf(
        self,
        *hostnames: str,
        key_type: KeyType = KeyType.P256,
        key: PrivateKey | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
    ) -> Leaf:
        """A server certificate for ``hostnames`` (DNS names or IP addresses)."""
        if not hostnames:
            raise ValueError("a leaf needs at least one hostname (DNS name or IP address)")
        private_key = key if key is not None else key_type.generate()
        certificate = self.issue(
            hostnames[0],
            private_key.public_key(),
            is_ca=False,
            hostnames=hostnames,
            not_before=not_before,
            not_after=not_after,
        )
        return Leaf(certificate, private_key, self)

    def issue(
        self,
        subject: str | x509.Name,
        public_key: PublicKey,
        *,
        is_ca: bool,
        path_length: int | None = None,
        hostnames: Iterable[str] = (),
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
    ) -> x509.Certificate:
        """Sign any certificate: no check on this CA's constraints, on purpose."""
        return _sign(
            _name(subject),
            self.certificate.subject,
            public_key,
            self.private_key,
            is_ca=is_ca,
            path_length=path_length,
            hostnames=tuple(hostnames),
            not_before=not_before,
            not_after=not_after,
            authority_key=self.certificate.public_key(),  # type: ignore[arg-type]
        )

    @property
    def subject(self) -> str:
        """RFC 4514 subject of the CA certificate."""
        return self.certificate.subject.rfc4514_string()

    @property
    def path_length(self) -> int | None:
        """The pathLen constraint of this CA's certificate (None: unconstrained or absent)."""
        try:
            constraints = self.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            return None
        return constraints.value.path_length

    @property
    def chain(self) -> tuple[CA, ...]:
        """This CA and its issuers, up to the root."""
        return (self, *(self.parent.chain if self.parent is not None else ()))

    @property
    def intermediates(self) -> tuple[CA, ...]:
        """This CA's chain without the root: what a server sends after its leaf."""
        return tuple(ca for ca in self.chain if ca.parent is not None)


@dataclass(frozen=True, eq=False)
class Leaf(_Credential):
    """A server certificate, its key and the CA that signed it."""

    certificate: x509.Certificate
    private_key: PrivateKey
    issuer: CA

    def as_signer(self) -> CA:
        """This leaf wrapped as a signer, to forge certificates a non-CA must not sign."""
        return CA(self.certificate, self.private_key, self.issuer)

    @property
    def chain_pem(self) -> bytes:
        """PEM of the intermediates a server would send after this leaf (root excluded)."""
        return b"".join(ca.cert_pem for ca in self.issuer.intermediates)


PemSource = CA | Leaf | x509.Certificate | Certificate | bytes


def pem_of(item: PemSource) -> bytes:
    """PEM of a CA, leaf, cryptography certificate, pinlab record or DER bytes."""
    if isinstance(item, CA | Leaf):
        return item.cert_pem
    if isinstance(item, Certificate):
        return item.to_pem().encode("ascii")
    if isinstance(item, bytes):
        return x509.load_der_x509_certificate(item).public_bytes(serialization.Encoding.PEM)
    return item.public_bytes(serialization.Encoding.PEM)


def write_pem(path: str | Path, *certs: PemSource) -> Path:
    """Write ``certs`` to ``path`` as concatenated PEM, in order; return the path."""
    target = Path(path)
    target.write_bytes(b"".join(pem_of(cert) for cert in certs))
    return target
