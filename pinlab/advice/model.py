"""The model every configuration reader fills: rules, findings, and a read pin.

A :class:`PinRule` is one domain entry as its platform wrote it (``platform`` says whose
host-matching rules apply, see :mod:`pinlab.advice.platforms`). A :class:`Finding` is
something wrong or notable with a stable ``code``; readers add findings instead of failing
the file, so one bad entry never hides the rest.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pinlab.certs import Certificate
from pinlab.errors import MalformedPinError, PinlabError
from pinlab.pins import Pin

__all__ = ["ConfigError", "Finding", "PinConfig", "PinRule", "read_pin", "to_date"]

SEVERITIES = ("error", "warning", "info")


class ConfigError(PinlabError, ValueError):
    """A pin configuration that cannot be read at all; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding: ``severity`` (error/warning/info), a stable ``code``, the host or domain."""

    severity: str
    code: str
    host: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The JSON shape of ``pinlab audit --json``."""
        return {
            "severity": self.severity,
            "code": self.code,
            "host": self.host,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class PinRule:
    """The pins of one domain entry: anywhere in the chain, or leaf and CA pins (ATS)."""

    domain: str
    include_subdomains: bool
    pins: tuple[Pin, ...] = ()
    """Pins matching any certificate of the verified chain (OkHttp, Android, TrustKit)."""
    leaf_pins: tuple[Pin, ...] = ()
    ca_pins: tuple[Pin, ...] = ()
    expires_at: datetime | None = None
    enforced: bool = True
    """False for report-only rules (``TSKEnforcePinning`` NO, trustkit-config)."""
    where: str = ""
    platform: str = "okhttp"
    """Whose host matching applies: okhttp, android-nsc, trustkit, ns-pinned-domains."""
    excluded: bool = False
    """TrustKit ``TSKExcludeSubdomainFromParentPolicy``: this host is not pinned."""
    override_pins: tuple[str, ...] = ()
    """Android trust-anchor sources with ``overridePins="true"`` (``system``, ``user``, ...)."""

    @property
    def all_pins(self) -> tuple[Pin, ...]:
        """Every distinct pin of the rule."""
        return tuple(dict.fromkeys(self.pins + self.leaf_pins + self.ca_pins))

    @property
    def pattern(self) -> str:
        """The entry as written: OkHttp's pattern, or the domain (``+sub`` when inherited)."""
        if self.platform == "okhttp":
            return self.domain
        return self.domain + (" (and subdomains)" if self.include_subdomains else "")

    def accepts(self, chain: Sequence[Certificate], at: datetime) -> bool | None:
        """Whether a pinned client accepts the verified ``chain``; None: pins not enforced."""
        if not self.enforced or self.excluded or not self.all_pins:
            return None
        if self.expires_at is not None and at >= self.expires_at:
            return None
        # Android: a chain ending at an anchor with overridePins is not pin-checked; every
        # observed chain validated against the system store.
        if "system" in self.override_pins:
            return None
        if self.pins and not _any_match(self.pins, chain):
            return False
        if self.leaf_pins and not _any_match(self.leaf_pins, chain[:1]):
            return False
        return not (self.ca_pins and not _any_match(self.ca_pins, chain[1:]))


def _any_match(pins: Iterable[Pin], chain: Sequence[Certificate]) -> bool:
    return any(pin.matches(certificate) for pin in pins for certificate in chain)


@dataclass(frozen=True, slots=True)
class PinConfig:
    """A parsed configuration: its format, name (the file), rules and reader findings."""

    format: str
    name: str
    rules: tuple[PinRule, ...]
    findings: tuple[Finding, ...] = ()


_BASE64 = re.compile(r"[A-Za-z0-9+/]+=*")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2}")


def read_pin(text: str, *, bare: bool) -> Pin:
    """A pin from ``sha256/...``, or bare base64 of a SHA-256 digest when ``bare``.

    Unpadded base64 is accepted: Android's ``Base64.decode`` and okio's ``decodeBase64``
    accept it. Raises :class:`MalformedPinError` saying why.
    """
    candidate = text.strip()
    if _HEX.fullmatch(candidate):
        return Pin.parse(candidate)
    head, slash, rest = candidate.partition("/")
    # A bare 44-character base64 digest may itself start with "sha1/": length tells.
    written_out = slash and head in {"sha256", "sha1"} and not (bare and len(candidate) == 44)
    if written_out:
        algorithm, encoded = head, rest
    elif bare:
        algorithm, encoded = "sha256", candidate
    else:
        return Pin.parse(candidate)
    if not _BASE64.fullmatch(encoded):
        raise MalformedPinError(f"pin {text!r}: {encoded!r} is not base64")
    body = encoded.rstrip("=")
    try:
        digest = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error as error:
        raise MalformedPinError(f"pin {text!r}: bad base64 ({error})") from None
    return Pin(algorithm, digest)


def to_date(value: Any, where: str) -> datetime:
    """Start of the day (UTC) of a ``yyyy-MM-dd`` text or a plist date."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        day = date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a yyyy-MM-dd date") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
