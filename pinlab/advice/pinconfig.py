"""Pin configurations as apps ship them, read into one model.

Four formats are read into :class:`PinConfig` of :class:`PinRule`:

- **OkHttp** ``CertificatePinner``: Kotlin or Java source whose ``.add("host", "sha256/…",
  …)`` calls carry the pins (several calls for one pattern add up, as in OkHttp);
- **Android Network Security Config** XML: ``<domain-config>`` (nested ones inherit the
  parent's ``<pin-set>``), ``<domain includeSubdomains>``, ``<pin-set expiration>`` (pins
  not enforced from that day, taken as 00:00 UTC), ``<pin digest="SHA-256">``;
- **TrustKit** dictionary, as JSON or plist: ``TSKPinnedDomains`` (optionally under
  ``TSKConfiguration``) with ``TSKPublicKeyHashes``, ``TSKIncludeSubdomains``,
  ``TSKExpirationDate``, ``TSKEnforcePinning``;
- **iOS** ``NSPinnedDomains`` plist (under ``NSAppTransportSecurity`` or alone):
  ``NSPinnedLeafIdentities`` must match the leaf and ``NSPinnedCAIdentities`` a CA of the
  chain; when both are given, ATS requires a match in each.

A configuration that cannot be read raises :class:`ConfigError` with one line saying where
and why. Parsing is pure: the caller reads the bytes.
"""

from __future__ import annotations

import json
import plistlib
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from xml.parsers.expat import ExpatError

from pinlab.certs import Certificate
from pinlab.errors import MalformedPinError, PinlabError
from pinlab.pins import Pin, PinSet

__all__ = ["ConfigError", "PinConfig", "PinRule", "parse_config"]


class ConfigError(PinlabError, ValueError):
    """A pin configuration that cannot be read; the message names the file and the place."""


@dataclass(frozen=True, slots=True)
class PinRule:
    """The pins of one domain: anywhere in the chain, or leaf and CA pins (ATS)."""

    domain: str
    include_subdomains: bool
    pins: tuple[Pin, ...] = ()
    """Pins matching any certificate of the verified chain (OkHttp, Android, TrustKit)."""
    leaf_pins: tuple[Pin, ...] = ()
    ca_pins: tuple[Pin, ...] = ()
    expires_at: datetime | None = None
    enforced: bool = True
    """False for TrustKit's report-only mode (``TSKEnforcePinning`` NO)."""
    where: str = ""

    @property
    def all_pins(self) -> tuple[Pin, ...]:
        """Every distinct pin of the rule."""
        return tuple(dict.fromkeys(self.pins + self.leaf_pins + self.ca_pins))

    @property
    def pattern(self) -> str:
        """The host pattern in OkHttp's syntax (``**.`` covers the domain and below)."""
        if self.include_subdomains and not self.domain.startswith("*"):
            return f"**.{self.domain}"
        return self.domain

    def applies_to(self, host: str) -> bool:
        """Whether this rule covers ``host``."""
        return PinSet.of(self.all_pins, hosts=[self.pattern]).applies_to(host)

    def accepts(self, chain: Sequence[Certificate], at: datetime) -> bool | None:
        """Whether a pinned client accepts the verified ``chain``; None: pins not enforced."""
        if not self.enforced or (self.expires_at is not None and at >= self.expires_at):
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
    """A parsed configuration: its format, its name (the file) and its rules."""

    format: str
    name: str
    rules: tuple[PinRule, ...]


# -- parsing --------------------------------------------------------------------------------


def parse_config(data: bytes, *, name: str = "config") -> PinConfig:
    """Read any of the four formats, recognised by ``name``'s suffix and the content."""
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    text = data.decode("utf-8", errors="replace")
    head = text.lstrip("\ufeff \t\r\n")[:200]
    if suffix in {"kt", "kts", "java"} or "CertificatePinner" in text:
        return _okhttp(text, name)
    if data.startswith(b"bplist") or suffix == "plist" or "<plist" in head:
        return _dictionary(_load_plist(data, name), name)
    if head.startswith("<"):
        return _android(data, name)
    if suffix == "json" or head.startswith("{"):
        return _dictionary(_load_json(text, name), name)
    if ".add(" in text:
        return _okhttp(text, name)
    raise ConfigError(
        f"{name}: not a pin configuration pinlab reads (OkHttp CertificatePinner source, "
        "Android network security config XML, TrustKit JSON/plist, NSPinnedDomains plist)"
    )


_ADD = re.compile(r"\.add\(\s*(\"(?:[^\"\\]|\\.)*\")\s*((?:,\s*\"(?:[^\"\\]|\\.)*\"\s*)+)\)")
_STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")


def _okhttp(text: str, name: str) -> PinConfig:
    by_pattern: dict[str, tuple[list[Pin], str]] = {}
    for match in _ADD.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        pattern = match.group(1)[1:-1]
        pins, _ = by_pattern.setdefault(pattern, ([], f"{name}:{line}"))
        for literal in _STRING.findall(match.group(2)):
            pins.append(_pin(literal, f"{name}:{line}"))
    if not by_pattern:
        raise ConfigError(f'{name}: no CertificatePinner .add("host", "sha256/...") call found')
    rules = []
    for pattern, (pins, where) in by_pattern.items():
        # OkHttp's "**.example.com" covers example.com and every name below it.
        below = pattern.startswith("**.")
        domain = pattern.removeprefix("**.") if below else pattern
        rules.append(PinRule(domain.lower(), below, tuple(pins), where=where))
    return PinConfig("okhttp", name, tuple(rules))


def _pin(text: str, where: str, *, bare: bool = False) -> Pin:
    """A pin from ``sha256/...`` (or bare base64 of a SHA-256 digest when ``bare``)."""
    candidate = text.strip()
    # Bare base64 of a SHA-256 digest (44 characters) gets its algorithm; a "sha256/..."
    # written out, or a hex digest, goes to Pin.parse as it is.
    written_out = candidate.startswith(("sha256/", "sha1/")) and len(candidate) != 44
    if bare and not written_out and not re.fullmatch(r"[0-9a-fA-F:]{64,95}", candidate):
        candidate = "sha256/" + candidate
    try:
        return Pin.parse(candidate)
    except MalformedPinError as error:
        raise ConfigError(f"{where}: {error}") from None


def _android(data: bytes, name: str) -> PinConfig:
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise ConfigError(f"{name}: not well-formed XML ({error})") from None
    if root.tag != "network-security-config":
        raise ConfigError(f"{name}: root element is <{root.tag}>, not <network-security-config>")
    rules: list[PinRule] = []
    for config in root.findall("domain-config"):
        _android_domain_config(config, None, name, rules)
    return PinConfig("android-nsc", name, tuple(rules))


def _android_domain_config(
    config: ElementTree.Element,
    inherited: tuple[tuple[Pin, ...], datetime | None] | None,
    name: str,
    rules: list[PinRule],
) -> None:
    pin_set = config.find("pin-set")
    own = _android_pin_set(pin_set, name) if pin_set is not None else inherited
    domains = config.findall("domain")
    if not domains:
        raise ConfigError(f"{name}: a <domain-config> without <domain>")
    if own is not None:
        pins, expires = own
        for domain in domains:
            host = (domain.text or "").strip().lower()
            if not host:
                raise ConfigError(f"{name}: an empty <domain>")
            subdomains = domain.get("includeSubdomains", "false").strip().lower() == "true"
            where = f"{name}: <domain-config> of {host}"
            rules.append(PinRule(host, subdomains, pins, expires_at=expires, where=where))
    for child in config.findall("domain-config"):
        _android_domain_config(child, own, name, rules)


def _android_pin_set(
    pin_set: ElementTree.Element, name: str
) -> tuple[tuple[Pin, ...], datetime | None]:
    expiration = pin_set.get("expiration")
    expires = _date(expiration, f"{name}: <pin-set expiration>") if expiration else None
    pins = []
    for pin in pin_set.findall("pin"):
        digest = pin.get("digest", "")
        if digest.upper() != "SHA-256":
            raise ConfigError(f'{name}: <pin digest="{digest}">: Android accepts only SHA-256')
        pins.append(_pin(pin.text or "", f"{name}: <pin>", bare=True))
    if not pins:
        raise ConfigError(f"{name}: a <pin-set> without <pin>")
    return tuple(pins), expires


def _date(value: Any, where: str) -> datetime:
    """Start of the day (UTC) of a ``yyyy-MM-dd`` text or a plist date."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        day = date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a yyyy-MM-dd date") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _load_plist(data: bytes, name: str) -> Any:
    try:
        return plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, ExpatError) as error:
        raise ConfigError(
            f"{name}: not a readable plist ({error or type(error).__name__})"
        ) from None


def _load_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{name}: not valid JSON ({error})") from None


def _dictionary(document: Any, name: str) -> PinConfig:
    if not isinstance(document, dict):
        raise ConfigError(f"{name}: the top level is not a dictionary")
    if "TSKConfiguration" in document or "TSKPinnedDomains" in document:
        configuration = document.get("TSKConfiguration", document)
        domains = _mapping(configuration, "TSKPinnedDomains", name)
        return PinConfig("trustkit", name, tuple(_trustkit(d, v, name) for d, v in domains.items()))
    ats = document.get("NSAppTransportSecurity", document)
    if isinstance(ats, dict) and "NSPinnedDomains" in ats:
        domains = _mapping(ats, "NSPinnedDomains", name)
        return PinConfig(
            "ns-pinned-domains", name, tuple(_ats(d, v, name) for d, v in domains.items())
        )
    raise ConfigError(
        f"{name}: neither a TrustKit configuration (TSKPinnedDomains) nor an "
        "NSAppTransportSecurity NSPinnedDomains dictionary"
    )


def _mapping(parent: Any, key: str, name: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{name}: {key} must be a non-empty dictionary of domains")
    for domain, settings in value.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{name}: {key}/{domain} is not a dictionary")
    return value


def _trustkit(domain: str, settings: dict[str, Any], name: str) -> PinRule:
    where = f"{name}: TSKPinnedDomains/{domain}"
    hashes = settings.get("TSKPublicKeyHashes")
    if not isinstance(hashes, list) or not hashes:
        raise ConfigError(f"{where}: TSKPublicKeyHashes must be a non-empty list")
    pins = tuple(_pin(str(h), f"{where}/TSKPublicKeyHashes", bare=True) for h in hashes)
    expiration = settings.get("TSKExpirationDate")
    return PinRule(
        domain.lower(), bool(settings.get("TSKIncludeSubdomains", False)), pins,
        expires_at=_date(expiration, f"{where}/TSKExpirationDate") if expiration else None,
        enforced=bool(settings.get("TSKEnforcePinning", True)), where=where,
    )  # fmt: skip


def _ats(domain: str, settings: dict[str, Any], name: str) -> PinRule:
    where = f"{name}: NSPinnedDomains/{domain}"
    identities: dict[str, tuple[Pin, ...]] = {}
    for key in ("NSPinnedLeafIdentities", "NSPinnedCAIdentities"):
        if key not in settings:
            continue
        entries = settings[key]
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{where}/{key}: a non-empty array (ATS refuses every connection)")
        pins = []
        for entry in entries:
            if not isinstance(entry, dict) or "SPKI-SHA256-BASE64" not in entry:
                raise ConfigError(f"{where}/{key}: each entry is a SPKI-SHA256-BASE64 dictionary")
            pins.append(_pin(str(entry["SPKI-SHA256-BASE64"]), f"{where}/{key}", bare=True))
        identities[key] = tuple(pins)
    if not identities:
        raise ConfigError(f"{where}: needs NSPinnedLeafIdentities or NSPinnedCAIdentities")
    return PinRule(
        domain.lower(), bool(settings.get("NSIncludesSubdomains", False)),
        leaf_pins=identities.get("NSPinnedLeafIdentities", ()),
        ca_pins=identities.get("NSPinnedCAIdentities", ()), where=where,
    )  # fmt: skip
