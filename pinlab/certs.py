"""Certificates and chains: loading (PEM, DER, PKCS#7) and one frozen record per certificate.

The record carries what every later stage asks of a certificate (digests, names, validity,
key, CA flag, SANs) computed once, so that pin checks, the store and the ledger never parse
again. The SPKI digest is taken over the bytes the certificate itself encodes (see
:mod:`pinlab.der`), the bytes that HPKP, OkHttp and TrustKit hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import Certificate as X509Certificate

from pinlab.der import spki_algorithm_oid, spki_from_certificate
from pinlab.errors import MalformedCertificateError
from pinlab.pem import iter_pem

__all__ = [
    "Certificate",
    "load_certificate_file",
    "load_certificates",
]

# Some roots still in Mozilla's store, and many old leaves, carry a non-positive serial.
# That is a fact we record (the serial column), not something the user can act on.
warnings.filterwarnings(
    "ignore",
    message="Parsed a serial number which wasn't positive",
    category=CryptographyDeprecationWarning,
)

# What cryptography raises for bytes that are DER but not a certificate it accepts.
# Extensions are parsed as a whole, so an unsupported SAN type (x400Address, ediPartyName)
# makes every extension unreadable: such a certificate gets a clean error, not a record.
_REFUSED = (
    ValueError,
    x509.DuplicateExtension,
    x509.InvalidVersion,
    x509.UnsupportedGeneralNameType,
)

_KEY_TYPES_BY_OID = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.113549.1.1.10": "RSA-PSS",
    "1.2.840.10045.2.1": "EC",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
    "1.2.840.10040.4.1": "DSA",
}
_CURVE_LABELS = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CERTIFICATE_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"CMS"}
# Each descriptive field and the part of the certificate it comes from, as users name it.
_DESCRIPTIVE = {"subject": "subject", "issuer": "issuer", "serial": "serialNumber",
                "not_before": "validity", "not_after": "validity", "_key": "subjectPublicKeyInfo",
                "_constraints": "basicConstraints", "sans": "subjectAltName"}  # fmt: skip

_LOCATION = re.compile(r'location: \["(\w+)"')
_PARTS = {"subject_alternative_name": "subjectAltName", "basic_constraints": "basicConstraints",
          "key_usage": "keyUsage", "extended_key_usage": "extKeyUsage",
          "name_constraints": "nameConstraints", "tbs_cert": "tbsCertificate"}  # fmt: skip

_T = TypeVar("_T")


def _field(compute: Callable[[Certificate], _T]) -> functools.cached_property[_T]:
    """A descriptive field: computed once on first use, parse failures made clean errors."""

    @functools.wraps(compute)
    def guarded(self: Certificate) -> _T:
        # cryptography warns, rather than refuses, on real certificates that break its rules
        # (a country name of 8 letters, UTF-8 in a VisibleString): facts about the
        # certificate, kept as data (parse_warnings), not noise for the user.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = compute(self)
            except _REFUSED as error:
                raise MalformedCertificateError(
                    f"certificate fields do not parse: {error}"
                ) from None
        if caught:
            notes = self.__dict__.setdefault("_parse_warnings", {})
            notes.update(dict.fromkeys(str(warning.message) for warning in caught))
        return value

    return functools.cached_property(guarded)


class Certificate:
    """One X.509 certificate. Equality and hashing follow the DER bytes.

    What every check needs (the DER, its SHA-256, the SPKI as encoded and its SHA-256, the
    parsed certificate) is computed when the record is made. The descriptive fields
    (names, validity, key, constraints, SANs) are computed on first use and then kept:
    rendering names and parsing extensions costs several times a pin check, and a client
    checking pins never looks at them. :meth:`from_der` checks them all at once by default,
    so a record is either complete or refused; ``lazy=True`` defers that (and any
    :class:`MalformedCertificateError` it would raise) to the first use.
    """

    __slots__ = ("__dict__", "der", "sha256", "spki", "spki_sha256", "x509")

    der: bytes
    sha256: str
    """Hex SHA-256 of the whole DER certificate (its identity in the store)."""
    spki: bytes
    """The SubjectPublicKeyInfo exactly as encoded in the certificate."""
    spki_sha256: bytes
    """Raw SHA-256 of :attr:`spki`: the digest a ``sha256/`` pin carries."""
    x509: X509Certificate

    def __init__(self, der: bytes, spki: bytes, parsed: X509Certificate) -> None:
        for name, value in (
            ("der", der),
            ("sha256", hashlib.sha256(der).hexdigest()),
            ("spki", spki),
            ("spki_sha256", hashlib.sha256(spki).digest()),
            ("x509", parsed),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Certificate is immutable (cannot set {name})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"Certificate(sha256={self.sha256!r}, subject={self.subject!r})"

    # Immutable: a copy is the same record; pickling (process pools, Dask) re-parses the DER.
    def __copy__(self) -> Certificate:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Certificate:
        return self

    def __reduce__(self) -> tuple[Callable[[bytes], Certificate], tuple[bytes]]:
        return _unpickle, (self.der,)

    @classmethod
    def from_der(cls, der: bytes, *, lazy: bool = False) -> Certificate:
        """Parse one DER certificate; :class:`MalformedCertificateError` if it is not one."""
        der = bytes(der)
        spki = spki_from_certificate(der)
        try:
            parsed = x509.load_der_x509_certificate(der)
        except _REFUSED as error:
            raise MalformedCertificateError(f"not a parsable X.509 certificate: {error}") from None
        certificate = cls(der, spki, parsed)
        return certificate if lazy else certificate.check_fields()

    @classmethod
    def from_cryptography(cls, certificate: X509Certificate, *, lazy: bool = False) -> Certificate:
        """Wrap a certificate already parsed by cryptography."""
        der = certificate.public_bytes(serialization.Encoding.DER)
        record = cls(der, spki_from_certificate(der), certificate)
        return record if lazy else record.check_fields()

    def check_fields(self) -> Certificate:
        """Compute every descriptive field now; :class:`MalformedCertificateError` if one fails."""
        for name in _DESCRIPTIVE:
            getattr(self, name)
        return self

    @functools.cached_property
    def unparsed_fields(self) -> tuple[str, ...]:
        """What could not be parsed, one ``"subjectAltName: could not be parsed (...)"`` each.

        Empty for a complete record. A lazy record of a certificate that real servers send
        but cryptography refuses in part (a SAN dNSName with bytes 0xff) still has its DER,
        SPKI and pin: this says what else is missing.
        """
        failed: dict[str, str] = {}
        for name, part in _DESCRIPTIVE.items():
            try:
                getattr(self, name)
            except MalformedCertificateError as error:
                reason = str(error).removeprefix("certificate fields do not parse: ")
                # Extensions parse as a whole: name the one cryptography's error points at.
                located = _LOCATION.search(reason)
                if located is not None:
                    part = _PARTS.get(located.group(1), located.group(1))
                failed.setdefault(part, f"{part}: could not be parsed ({reason})")
        return tuple(failed.values())

    @_field
    def subject(self) -> str:
        """Subject name, RFC 4514."""
        return self.x509.subject.rfc4514_string()

    @_field
    def issuer(self) -> str:
        """Issuer name, RFC 4514."""
        return self.x509.issuer.rfc4514_string()

    @_field
    def serial(self) -> str:
        """Serial number as lower-case hex, without leading zeros."""
        return format(self.x509.serial_number, "x")

    @_field
    def not_before(self) -> datetime:
        """Start of validity, UTC."""
        return self.x509.not_valid_before_utc

    @_field
    def not_after(self) -> datetime:
        """End of validity, UTC."""
        return self.x509.not_valid_after_utc

    @_field
    def _key(self) -> tuple[str, int | None, str | None]:
        return _describe_key(self.spki, self.x509)

    @property
    def key_type(self) -> str:
        """``RSA``, ``RSA-PSS``, ``EC``, ``Ed25519``, ``Ed448``, ``DSA`` or the algorithm OID."""
        return self._key[0]

    @property
    def key_size(self) -> int | None:
        """Key size in bits (None where cryptography cannot load the key)."""
        return self._key[1]

    @property
    def curve(self) -> str | None:
        """Named curve of an EC key (``secp256r1``...)."""
        return self._key[2]

    @_field
    def _constraints(self) -> tuple[bool, int | None]:
        return _basic_constraints(self.x509)

    @property
    def is_ca(self) -> bool:
        """BasicConstraints says CA."""
        return self._constraints[0]

    @property
    def path_length(self) -> int | None:
        """BasicConstraints pathLenConstraint."""
        return self._constraints[1]

    @_field
    def sans(self) -> tuple[str, ...]:
        """DNS names and IP addresses of the SubjectAlternativeName extension."""
        return _subject_alternative_names(self.x509)

    @property
    def pin(self) -> str:
        """The ``sha256/<base64>`` pin of this certificate's public key."""
        return "sha256/" + base64.b64encode(self.spki_sha256).decode("ascii")

    @property
    def spki_sha256_hex(self) -> str:
        """Hex form of :attr:`spki_sha256`, as zgrab2 and certspotter print it."""
        return self.spki_sha256.hex()

    @property
    def key_label(self) -> str:
        """Short human label of the key: ``RSA-2048``, ``P-256``, ``Ed25519``..."""
        if self.curve is not None:
            return _CURVE_LABELS.get(self.curve, self.curve)
        if self.key_size is not None and self.key_type in {"RSA", "RSA-PSS", "DSA"}:
            return f"{self.key_type}-{self.key_size}"
        return self.key_type

    @property
    def parse_warnings(self) -> tuple[str, ...]:
        """What cryptography warned about while reading the descriptive fields read so far
        (all of them unless the record is lazy): malformations it tolerates, e.g. a country
        name longer than 2 letters. Empty for a well-formed certificate."""
        return tuple(self.__dict__.get("_parse_warnings", ()))

    @property
    def self_issued(self) -> bool:
        """Subject and issuer names are equal (a root, or a self-signed leaf)."""
        return self.x509.subject == self.x509.issuer

    def spki_digest(self, algorithm: str) -> bytes:
        """Digest of the SPKI with ``sha256`` (cached) or ``sha1`` (legacy pins)."""
        if algorithm == "sha256":
            return self.spki_sha256
        return hashlib.new(algorithm, self.spki).digest()

    def to_pem(self) -> str:
        """PEM text of the certificate."""
        return self.x509.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _unpickle(der: bytes) -> Certificate:
    return Certificate.from_der(der, lazy=True)


def _describe_key(spki: bytes, parsed: x509.Certificate) -> tuple[str, int | None, str | None]:
    oid = spki_algorithm_oid(spki)
    key_type = _KEY_TYPES_BY_OID.get(oid, oid)
    try:
        key = parsed.public_key()
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
        # Explicit EC parameters, unknown algorithms: the pin is still well defined.
        return key_type, None, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key_type, key.curve.key_size, key.curve.name
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        return key_type, key.key_size, None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key_type, 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return key_type, 456, None
    return key_type, None, None


def _basic_constraints(parsed: x509.Certificate) -> tuple[bool, int | None]:
    try:
        constraints = parsed.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return constraints.ca, constraints.path_length


def _subject_alternative_names(parsed: x509.Certificate) -> tuple[str, ...]:
    try:
        names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = names.get_values_for_type(x509.DNSName)
    ips = [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    return tuple(dns) + tuple(ips)


def load_certificates(
    data: bytes, *, source: str = "input", lazy: bool = False
) -> list[Certificate]:
    """Load every certificate in ``data``: PEM (any number of blocks), DER, or PKCS#7.

    Order is preserved (a served chain stays leaf first). Anything that is not a
    certificate raises :class:`MalformedCertificateError` naming ``source`` and the block.
    ``lazy`` records (see :meth:`Certificate.from_der`) keep certificates whose descriptive
    fields do not all parse: their :attr:`Certificate.unparsed_fields` say which.
    """
    if b"-----BEGIN" in data:
        return _load_pem(data, source, lazy)
    if not data:
        raise MalformedCertificateError(f"{source}: empty, no certificate in it")
    try:
        return [Certificate.from_der(data, lazy=lazy)]
    except MalformedCertificateError as der_error:
        try:
            return _from_cryptography(pkcs7.load_der_pkcs7_certificates(data), lazy)
        except ValueError:
            raise MalformedCertificateError(
                f"{source}: neither PEM, a DER certificate nor DER PKCS#7 ({der_error})"
            ) from None


def _load_pem(data: bytes, source: str, lazy: bool) -> list[Certificate]:
    certificates: list[Certificate] = []
    number = 0
    for block in iter_pem(data):
        number, label, text = block.number, block.label, block.text
        if not block.complete and number == 1:
            raise MalformedCertificateError(f"{source}: a PEM header without a complete block")
        if not block.complete:
            raise MalformedCertificateError(
                f"{source}: PEM block {number} is truncated (no matching END line)"
            )
        try:
            if label in _CERTIFICATE_LABELS:
                parsed = x509.load_pem_x509_certificate(text)
                certificates.append(Certificate.from_cryptography(parsed, lazy=lazy))
            elif label in _PKCS7_LABELS:
                parsed_all = pkcs7.load_pem_pkcs7_certificates(text)
                certificates.extend(_from_cryptography(parsed_all, lazy))
        except (*_REFUSED, MalformedCertificateError) as error:
            raise MalformedCertificateError(
                f"{source}: PEM block {number} ({label.decode()}) is malformed: {error}"
            ) from None
    if number == 0:
        raise MalformedCertificateError(f"{source}: a PEM header without a complete block")
    if not certificates:
        raise MalformedCertificateError(f"{source}: PEM without any CERTIFICATE block")
    return certificates


def _from_cryptography(parsed: Iterable[x509.Certificate], lazy: bool) -> list[Certificate]:
    return [Certificate.from_cryptography(certificate, lazy=lazy) for certificate in parsed]


def load_certificate_file(path: str | Path, *, lazy: bool = False) -> list[Certificate]:
    """Load every certificate of a PEM, DER or PKCS#7 file (see :func:`load_certificates`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MalformedCertificateError(f"{path}: cannot read: {error.strerror}") from None
    return load_certificates(data, source=str(path), lazy=lazy)


def chain_pins(chain: Sequence[Certificate]) -> list[str]:
    """The pins of a chain, in order."""
    return [certificate.pin for certificate in chain]
