"""The operations of ``pinlab bench pins``, each a zero-argument callable on a fixed chain.

Every case is built once (chains, pin sets, verifiers, stores), so that what is timed is the
operation alone. The names below are the contract of the output file: the benchmark
notebook and the CI test select rows by them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store
from OpenSSL import crypto

from pinlab.bench.chains import AT, HOSTNAME, BenchChain
from pinlab.certs import Certificate
from pinlab.der import spki_from_certificate
from pinlab.pins import Pin, PinSet
from pinlab.verify import verify_chain

__all__ = [
    "CHECK_OPERATIONS",
    "OP_EXTRACT",
    "OP_HANDSHAKE",
    "OP_LIMIT",
    "OP_PEER",
    "OP_VALIDATE",
    "OP_VALIDATE_PINS",
    "REQUIRED_OPERATIONS",
    "Case",
    "certificate_cases",
    "chain_cases",
    "check_with_pins",
    "limit_case",
    "pin_set",
]

OP_LIMIT = "limit"
OP_EXTRACT = "SPKI extraction"
OP_CHECK_FIRST = "pin check: first match"
OP_CHECK_ANCHOR = "pin check: match at anchor"
OP_CHECK_NONE = "pin check: no match"
OP_VALIDATE = "path validation"
OP_VALIDATE_PINS = "validation + pins"
OP_PEER = "peer check"
OP_HANDSHAKE = "TLS handshake (loopback)"
CHECK_OPERATIONS = (OP_CHECK_FIRST, OP_CHECK_ANCHOR, OP_CHECK_NONE)
REQUIRED_OPERATIONS = (
    OP_LIMIT,
    OP_EXTRACT,
    *CHECK_OPERATIONS,
    OP_VALIDATE,
    OP_VALIDATE_PINS,
    OP_PEER,
    OP_HANDSHAKE,
)

IMPL_LIMIT = "sha256(SPKI DER) + set lookup"
IMPL_CACHED = "PinSet.check, cached"
IMPL_UNCACHED = "PinSet.check, uncached (slice+hash)"
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_DER = serialization.Encoding.DER


@dataclass(frozen=True, slots=True)
class Case:
    """One row of the table to be: what is measured, on what, and the callable to time."""

    operation: str
    implementation: str
    key_type: str
    chain_length: int
    pin_set_size: int
    examined: int
    """Certificates the operation looks at; the per-certificate ratio divides by it."""
    run: Callable[[], object]


def _filler(count: int) -> list[Pin]:
    return [
        Pin("sha256", hashlib.sha256(b"pinlab bench filler %d" % i).digest()) for i in range(count)
    ]


def pin_set(match: Certificate | None, size: int) -> PinSet:
    """A pin set of ``size`` pins: ``match``'s pin (if any) plus pins of no certificate."""
    pins = [Pin.of(match)] if match is not None else []
    return PinSet.of(pins + _filler(size - len(pins)))


def limit_case(chain: BenchChain) -> Case:
    """The physical limit of a pin check per certificate: hash the SPKI, look it up."""
    spki = chain.verified[0].spki
    digests = frozenset({chain.verified[0].spki_sha256})
    sha256 = hashlib.sha256

    def limit() -> bool:
        return sha256(spki).digest() in digests

    return Case(OP_LIMIT, IMPL_LIMIT, chain.label, 1, 1, 1, limit)


def certificate_cases(chain: BenchChain) -> Iterator[Case]:
    """Per-certificate operations on the leaf: SPKI extraction and the peers' checks."""
    leaf = chain.verified[0]
    der, parsed = leaf.der, leaf.x509
    digests = frozenset({leaf.spki_sha256})
    fingerprint = hashlib.sha256(der).digest()
    sha256 = hashlib.sha256
    label = chain.label

    def cryptography_spki() -> bytes:
        return parsed.public_key().public_bytes(_DER, _SPKI)

    def urllib3_fingerprint() -> bool:
        # urllib3.util.ssl_.assert_fingerprint: digest of the whole DER certificate.
        return hmac.compare_digest(sha256(der).digest(), fingerprint)

    def sslyze_spki() -> bool:
        # sslyze: SPKI re-serialised by cryptography, then hashed.
        return sha256(parsed.public_key().public_bytes(_DER, _SPKI)).digest() in digests

    yield Case(OP_EXTRACT, "pinlab der slice", label, 1, 0, 1, lambda: spki_from_certificate(der))
    yield Case(OP_EXTRACT, "cryptography public_bytes", label, 1, 0, 1, cryptography_spki)
    yield Case(OP_PEER, "urllib3-style cert fingerprint", label, 1, 1, 1, urllib3_fingerprint)
    yield Case(OP_PEER, "sslyze-style public_bytes+hash", label, 1, 1, 1, sslyze_spki)


class _UncachedCertificate:
    """A certificate whose SPKI digest is recomputed from its DER at every access.

    It stands in for a :class:`Certificate` inside :meth:`PinSet.check`, so the uncached
    variant runs the very same check code, plus the slice and the hash OkHttp does lazily.
    """

    __slots__ = ("der",)

    def __init__(self, der: bytes) -> None:
        self.der = der

    @property
    def spki_sha256(self) -> bytes:
        return hashlib.sha256(spki_from_certificate(self.der)).digest()

    def spki_digest(self, algorithm: str) -> bytes:
        return hashlib.new(algorithm, spki_from_certificate(self.der)).digest()


def _check_cases(chain: BenchChain, sizes: Sequence[int]) -> Iterator[Case]:
    cached = chain.verified
    uncached = cast(
        tuple[Certificate, ...], tuple(_UncachedCertificate(c.der) for c in chain.verified)
    )
    length = chain.length
    scenarios = (
        (OP_CHECK_FIRST, chain.verified[0], 1),
        (OP_CHECK_ANCHOR, chain.verified[-1], length),
        (OP_CHECK_NONE, None, length),
    )
    for operation, match, examined in scenarios:
        for size in sizes:
            pins = pin_set(match, size)
            expected = match is not None
            for implementation, certificates in ((IMPL_CACHED, cached), (IMPL_UNCACHED, uncached)):
                result = pins.check(certificates, at=AT)
                if result.passed is not expected or (
                    expected and result.matched_index != examined - 1
                ):
                    raise RuntimeError(f"bench pin set gave {result.status} for {operation}")
                yield Case(
                    operation,
                    implementation,
                    chain.label,
                    length,
                    size,
                    examined,
                    _bind_check(pins, certificates),
                )


def _bind_check(pins: PinSet, certificates: Sequence[Certificate]) -> Callable[[], object]:
    check = pins.check

    def run() -> object:
        return check(certificates, at=AT)

    return run


def check_with_pins(chain: BenchChain, pins: PinSet) -> Callable[[Sequence[bytes]], bool]:
    """What a pinning client adds after the handshake: parse, validate, check pins."""
    store = chain.trust_store
    from_der = functools.partial(Certificate.from_der, lazy=True)  # as `pinlab check` parses

    def validate_and_pin(presented: Sequence[bytes]) -> bool:
        certificates = [from_der(der) for der in presented]
        verification = verify_chain(certificates, hostname=HOSTNAME, at=AT, trust_store=store)
        return verification.ok and pins.check(verification.path, at=AT).passed

    return validate_and_pin


def _validation_cases(chain: BenchChain) -> Iterator[Case]:
    leaf, intermediates = chain.presented[0].x509, [c.x509 for c in chain.presented[1:]]
    root = chain.root.certificate
    name = DNSName(HOSTNAME)
    warm = PolicyBuilder().store(chain.trust_store._store).time(AT).build_server_verifier(name)
    openssl_store = crypto.X509Store()
    openssl_store.add_cert(crypto.X509.from_cryptography(root))
    openssl_store.set_time(AT)
    openssl_leaf = crypto.X509.from_cryptography(leaf)
    openssl_chain = [crypto.X509.from_cryptography(c) for c in intermediates]
    presented, store = chain.presented, chain.trust_store
    ders = [c.der for c in presented]
    anchor_pins = pin_set(chain.verified[-1], 2)
    full_check = check_with_pins(chain, anchor_pins)

    anchor_digests = frozenset({chain.verified[-1].spki_sha256})
    load = x509.load_der_x509_certificate
    sha256 = hashlib.sha256

    def lean(presented: Sequence[bytes]) -> bool:
        # The floor with these libraries, not pinlab's API: no records, a verifier kept
        # per host, the pins of the built path hashed from its DER.
        path = warm.verify(load(presented[0]), [load(der) for der in presented[1:]])
        return any(
            sha256(spki_from_certificate(c.public_bytes(_DER))).digest() in anchor_digests
            for c in path
        )

    def cold() -> list[x509.Certificate]:
        verifier = PolicyBuilder().store(Store([root])).time(AT).build_server_verifier(name)
        return verifier.verify(leaf, intermediates)

    def pyopenssl() -> None:
        crypto.X509StoreContext(
            openssl_store, openssl_leaf, chain=openssl_chain
        ).verify_certificate()

    def pinlab_verify() -> object:
        return verify_chain(presented, hostname=HOSTNAME, at=AT, trust_store=store)

    def pinlab_verify_and_pin() -> bool:
        path = verify_chain(presented, hostname=HOSTNAME, at=AT, trust_store=store).path
        return anchor_pins.check(path, at=AT).passed

    label, length = chain.label, chain.length
    yield Case(
        OP_VALIDATE,
        "cryptography, warm verifier",
        label,
        length,
        0,
        length,
        lambda: warm.verify(leaf, intermediates),
    )
    yield Case(OP_VALIDATE, "cryptography, cold verifier", label, length, 0, length, cold)
    yield Case(OP_VALIDATE, "pinlab verify_chain", label, length, 0, length, pinlab_verify)
    yield Case(OP_VALIDATE, "pyOpenSSL X509Store (no name)", label, length, 0, length, pyopenssl)
    yield Case(
        OP_VALIDATE_PINS,
        "verify_chain + check",
        label,
        length,
        2,
        length,
        pinlab_verify_and_pin,
    )
    yield Case(
        OP_VALIDATE_PINS,
        "parse DER + verify_chain + check",
        label,
        length,
        2,
        length,
        lambda: full_check(ders),
    )
    yield Case(
        OP_VALIDATE_PINS,
        "floor: load DER + warm verifier + slice+hash",
        label,
        length,
        1,
        length,
        lambda: lean(ders),
    )


def chain_cases(chain: BenchChain, sizes: Sequence[int]) -> Iterator[Case]:
    """Every operation on a whole verified chain: pin checks and path validation."""
    yield from _check_cases(chain, sizes)
    yield from _validation_cases(chain)
