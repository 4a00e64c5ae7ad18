"""Pins and pin sets, with the semantics of HPKP (RFC 7469), OkHttp and TrustKit.

A :class:`Pin` is a digest of a DER SubjectPublicKeyInfo, written ``sha256/<base64>``.
A :class:`PinSet` passes when **any** of its pins (primary or backup) matches **any**
certificate of the chain it is given. Which chain that is matters more than anything else
here: the caller passes the *verified* path (leaf to trust anchor, built by
:mod:`pinlab.verify`); checking the chain as the server presented it is the OkHttp
CVE-2016-2402 bug and exists only as :attr:`Semantics.PRESENTED` for research comparisons.

The check itself is pure: no I/O, no clock (the time for expiry is an argument).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from pinlab.certs import Certificate
from pinlab.errors import MalformedPinError

__all__ = ["CheckStatus", "Pin", "PinCheckResult", "PinSet", "Semantics"]

_DIGEST_SIZES = {"sha256": 32, "sha1": 20}
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_HEX_COLONS = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){31}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class Semantics(enum.Enum):
    """Which chain a pin set is checked against."""

    VERIFIED = "verified"
    """The path built by validation (leaf to trust anchor): the only safe choice."""
    PRESENTED = "presented"
    """The chain as the server sent it: research comparisons only (CVE-2016-2402)."""


@dataclass(frozen=True, slots=True)
class Pin:
    """One public-key pin. Build with :meth:`parse` or :meth:`of`; ``str()`` round-trips."""

    algorithm: str
    digest: bytes

    def __post_init__(self) -> None:
        size = _DIGEST_SIZES.get(self.algorithm)
        if size is None:
            raise MalformedPinError(
                f"unsupported pin algorithm {self.algorithm!r}: expected sha256 (or legacy sha1)"
            )
        if len(self.digest) != size:
            raise MalformedPinError(
                f"{self.algorithm} pin must hold {size} bytes, not {len(self.digest)}"
            )

    @classmethod
    def parse(cls, text: str) -> Pin:
        """Parse ``sha256/<base64>``, ``sha1/<base64>`` or a 64-digit hex SPKI SHA-256.

        Hex digests (with or without colons, as zgrab2 and certspotter print them) are
        normalised to ``sha256/``. Every malformed form raises :class:`MalformedPinError`
        with the reason.
        """
        if not isinstance(text, str):
            raise TypeError(f"a pin is a string, not {type(text).__name__}")
        stripped = text.strip()
        if _HEX.fullmatch(stripped) or _HEX_COLONS.fullmatch(stripped):
            return cls("sha256", bytes.fromhex(stripped.replace(":", "")))
        algorithm, slash, encoded = stripped.partition("/")
        if not slash:
            raise MalformedPinError(
                f"pin {text!r} is not 'sha256/<base64>' nor a 64-digit hex SHA-256 digest"
            )
        if algorithm not in _DIGEST_SIZES:
            raise MalformedPinError(
                f"pin {text!r}: unsupported algorithm {algorithm!r} (use sha256)"
            )
        if not encoded or not _BASE64.fullmatch(encoded) or len(encoded) % 4:
            raise MalformedPinError(f"pin {text!r}: {encoded!r} is not padded base64")
        try:
            digest = base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise MalformedPinError(f"pin {text!r}: bad base64 ({error})") from None
        if len(digest) != _DIGEST_SIZES[algorithm]:
            raise MalformedPinError(
                f"pin {text!r}: a {algorithm} digest has {_DIGEST_SIZES[algorithm]} bytes, "
                f"this one has {len(digest)}"
            )
        return cls(algorithm, digest)

    @classmethod
    def of(cls, certificate: Certificate) -> Pin:
        """The ``sha256`` pin of a certificate's public key."""
        return cls("sha256", certificate.spki_sha256)

    @classmethod
    def of_spki(cls, spki_der: bytes) -> Pin:
        """The ``sha256`` pin of a DER SubjectPublicKeyInfo."""
        return cls("sha256", hashlib.sha256(spki_der).digest())

    @property
    def legacy(self) -> bool:
        """True for ``sha1/`` pins: read for old configurations, flagged, still checked."""
        return self.algorithm != "sha256"

    def matches(self, certificate: Certificate) -> bool:
        """Whether this pin is the pin of ``certificate``'s public key."""
        return certificate.spki_digest(self.algorithm) == self.digest

    def __str__(self) -> str:
        return f"{self.algorithm}/{base64.b64encode(self.digest).decode('ascii')}"


class CheckStatus(enum.Enum):
    """Outcome of :meth:`PinSet.check`."""

    MATCHED = "matched"
    NO_MATCH = "no_match"
    EXPIRED = "expired"
    """The pin set's expiry has passed: pins are not enforced (Android, TrustKit)."""


@dataclass(frozen=True, slots=True)
class PinCheckResult:
    """What a pin check found: which pin matched which certificate, or why none did."""

    status: CheckStatus
    semantics: Semantics
    chain: tuple[Certificate, ...] = field(repr=False)
    pin_set: PinSet = field(repr=False)
    matched_pin: Pin | None = None
    matched_index: int | None = None
    matched_certificate: Certificate | None = None
    backup: bool = False
    """The match came from a backup pin."""

    @property
    def chain_pins(self) -> tuple[str, ...]:
        """The pins of the chain that was checked, in order (computed on demand)."""
        return tuple(certificate.pin for certificate in self.chain)

    @property
    def configured_pins(self) -> tuple[str, ...]:
        """The pin set's pins, backup pins marked."""
        return tuple(sorted(str(p) for p in self.pin_set.pins)) + tuple(
            sorted(f"{p} (backup)" for p in self.pin_set.backup_pins)
        )

    @property
    def passed(self) -> bool:
        """The connection may proceed (a pin matched, or the pin set has expired)."""
        return self.status is not CheckStatus.NO_MATCH

    def describe(self) -> str:
        """One readable paragraph, OkHttp style on failure."""
        if self.status is CheckStatus.EXPIRED:
            return "pin set has expired: pins are not enforced"
        if self.matched_certificate is not None:
            kind = "backup pin" if self.backup else "pin"
            return (
                f"{kind} {self.matched_pin} matched certificate {self.matched_index} "
                f"({self.matched_certificate.subject}) of the {self.semantics.value} chain"
            )
        lines = [f"certificate pinning failure ({self.semantics.value} chain):", "  chain:"]
        lines += [f"    {pin}" for pin in self.chain_pins]
        lines.append("  pinned:")
        lines += [f"    {pin}" for pin in self.configured_pins]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class PinSet:
    """Pins for some hosts, with optional backup pins and expiry.

    ``hosts`` are patterns with OkHttp's meanings: ``example.com`` exactly; ``*.example.com``
    one more label (``www.example.com``, not ``example.com`` nor ``a.b.example.com``);
    ``**.example.com`` any number of labels, including none. An empty ``hosts`` applies to
    every host.
    """

    pins: frozenset[Pin]
    backup_pins: frozenset[Pin] = frozenset()
    expires_at: datetime | None = None
    hosts: tuple[str, ...] = ()
    _lookup: dict[bytes, tuple[Pin, bool]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _legacy: bool = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.pins and not self.backup_pins:
            raise MalformedPinError("a pin set needs at least one pin")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware (UTC)")
        lookup: dict[bytes, tuple[Pin, bool]] = {}
        for pin in self.backup_pins:
            lookup[pin.digest] = (pin, True)
        for pin in self.pins:
            lookup[pin.digest] = (pin, False)
        object.__setattr__(self, "hosts", tuple(host.lower().rstrip(".") for host in self.hosts))
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_legacy", self.has_legacy_pins)

    @classmethod
    def of(
        cls,
        pins: Iterable[str | Pin],
        *,
        backup: Iterable[str | Pin] = (),
        expires_at: datetime | None = None,
        hosts: Iterable[str] = (),
    ) -> PinSet:
        """Build from pin strings (parsed and validated) or :class:`Pin` objects."""
        return cls(
            pins=frozenset(_as_pin(pin) for pin in pins),
            backup_pins=frozenset(_as_pin(pin) for pin in backup),
            expires_at=expires_at,
            hosts=tuple(hosts),
        )

    @property
    def has_legacy_pins(self) -> bool:
        """Some pin is a legacy ``sha1/`` pin."""
        return any(pin.legacy for pin in self.pins | self.backup_pins)

    def applies_to(self, hostname: str) -> bool:
        """Whether the host patterns cover ``hostname``."""
        if not self.hosts:
            return True
        name = hostname.lower().rstrip(".")
        return any(_host_matches(pattern, name) for pattern in self.hosts)

    def check(
        self,
        chain: Sequence[Certificate],
        *,
        at: datetime | None = None,
        semantics: Semantics = Semantics.VERIFIED,
    ) -> PinCheckResult:
        """Check ``chain``; it must be the verified path unless ``semantics`` says otherwise.

        Returns on the first certificate whose key is pinned, leaf first. ``at`` is the time
        of the connection, used only for the pin set's expiry.
        """
        # The hot path of every pinned connection: one dict lookup per certificate of a
        # digest the Certificate record already holds, then one result record.
        if self.expires_at is not None and at is not None and at >= self.expires_at:
            return self._result(CheckStatus.EXPIRED, semantics, chain)
        lookup = self._lookup
        legacy = self._legacy
        for index, certificate in enumerate(chain):
            found = lookup.get(certificate.spki_sha256)
            if found is None and legacy:
                found = lookup.get(certificate.spki_digest("sha1"))
            if found is not None:
                pin, backup = found
                return _new_result(
                    _MATCHED, semantics, tuple(chain), self, pin, index, certificate, backup
                )
        return _new_result(_NO_MATCH, semantics, tuple(chain), self, None, None, None, False)

    def _result(
        self,
        status: CheckStatus,
        semantics: Semantics,
        chain: Sequence[Certificate],
        pin: Pin | None = None,
        index: int | None = None,
        certificate: Certificate | None = None,
        backup: bool = False,
    ) -> PinCheckResult:
        return PinCheckResult(
            status=status,
            semantics=semantics,
            chain=tuple(chain),
            pin_set=self,
            matched_pin=pin,
            matched_index=index,
            matched_certificate=certificate,
            backup=backup,
        )


_MATCHED, _NO_MATCH = CheckStatus.MATCHED, CheckStatus.NO_MATCH
_RESULT_FIELDS = (
    "status",
    "semantics",
    "chain",
    "pin_set",
    "matched_pin",
    "matched_index",
    "matched_certificate",
    "backup",
)


def _result_constructor() -> Callable[..., PinCheckResult]:
    """A constructor of :class:`PinCheckResult` from its fields in order, several times faster.

    A frozen dataclass's ``__init__`` assigns each field through ``object.__setattr__``,
    which costs more than the rest of a pin check together. Setting the slots through their
    descriptors stores the same values. Should the record ever gain a field or a
    ``__post_init__``, the plain constructor is used instead, so nothing can be skipped.
    """
    layout = tuple(item.name for item in fields(PinCheckResult))
    if layout != _RESULT_FIELDS or hasattr(PinCheckResult, "__post_init__"):
        return PinCheckResult
    new = object.__new__
    slots = vars(PinCheckResult)
    s0, s1, s2, s3, s4, s5, s6, s7 = (slots[name].__set__ for name in _RESULT_FIELDS)

    def construct(
        status: CheckStatus,
        semantics: Semantics,
        chain: tuple[Certificate, ...],
        pin_set: PinSet,
        matched_pin: Pin | None,
        matched_index: int | None,
        matched_certificate: Certificate | None,
        backup: bool,
    ) -> PinCheckResult:
        result: PinCheckResult = new(PinCheckResult)
        s0(result, status)
        s1(result, semantics)
        s2(result, chain)
        s3(result, pin_set)
        s4(result, matched_pin)
        s5(result, matched_index)
        s6(result, matched_certificate)
        s7(result, backup)
        return result

    return construct


_new_result = _result_constructor()


def _as_pin(pin: str | Pin) -> Pin:
    return pin if isinstance(pin, Pin) else Pin.parse(pin)


def _host_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("**."):
        suffix = pattern[3:]
        return name == suffix or name.endswith("." + suffix)
    if pattern.startswith("*."):
        suffix = pattern[2:]
        head, dot, rest = name.partition(".")
        return bool(head) and bool(dot) and rest == suffix
    return name == pattern
