"""Android Network Security Config XML.

``<domain-config>`` holds ``<domain includeSubdomains>``, ``<pin-set expiration>`` (pins
not enforced from that day, taken as 00:00 UTC), ``<trust-anchors>`` whose
``<certificates overridePins="true">`` exempt chains to those anchors from pin checks, and
TrustKit-Android's ``<trustkit-config enforcePinning>``. A nested ``domain-config``
inherits what it does not set from its parent, and ``<base-config>`` trust anchors apply
where none is set. Android's parser refuses a pin whose digest it cannot decode or whose
length is wrong, and then the app fails at start-up: such entries are ``app-crash``
findings, the rest of the file is still read. Base64 without padding is accepted, as
Android's ``Base64.decode`` does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from datetime import datetime

from pinlab.advice.model import ConfigError, Finding, PinConfig, PinRule, read_pin, to_date
from pinlab.errors import MalformedPinError
from pinlab.pins import Pin

__all__ = ["read_android"]


@dataclass(frozen=True, slots=True)
class _Inherited:
    pins: tuple[Pin, ...] | None = None
    expires: datetime | None = None
    overrides: tuple[str, ...] | None = None
    enforced: bool = True


def read_android(root: ElementTree.Element, name: str) -> PinConfig:
    """Rules of a parsed ``<network-security-config>`` root element."""
    if root.tag != "network-security-config":
        raise ConfigError(f"{name}: root element is <{root.tag}>, not <network-security-config>")
    findings: list[Finding] = []
    base = root.find("base-config")
    base_overrides = _overrides(base) if base is not None else None
    start = _Inherited(overrides=base_overrides)
    rules: list[PinRule] = []
    for config in root.findall("domain-config"):
        _domain_config(config, start, name, rules, findings)
    return PinConfig("android-nsc", name, tuple(rules), tuple(findings))


def _overrides(element: ElementTree.Element) -> tuple[str, ...] | None:
    anchors = element.find("trust-anchors")
    if anchors is None:
        return None
    return tuple(
        c.get("src", "").strip()
        for c in anchors.findall("certificates")
        if c.get("overridePins", "false").strip().lower() == "true"
    )


def _domain_config(
    config: ElementTree.Element,
    inherited: _Inherited,
    name: str,
    rules: list[PinRule],
    findings: list[Finding],
) -> None:
    own = inherited
    pin_set = config.find("pin-set")
    if pin_set is not None:
        pins, expires = _pin_set(pin_set, name, findings)
        own = replace(own, pins=pins, expires=expires)
    overrides = _overrides(config)
    if overrides is not None:
        own = replace(own, overrides=overrides)
    trustkit = config.find("trustkit-config")
    if trustkit is not None:
        own = replace(own, enforced=trustkit.get("enforcePinning", "true").lower() != "false")
    domains = config.findall("domain")
    if not domains:
        findings.append(
            Finding(
                "error",
                "app-crash",
                "?",
                f"{name}: a <domain-config> without <domain>: Android refuses the file",
            )
        )
    for domain in domains:
        host = (domain.text or "").strip().lower()
        if not host:
            findings.append(Finding("error", "app-crash", "?", f"{name}: an empty <domain>"))
            continue
        subdomains = domain.get("includeSubdomains", "false").strip().lower() == "true"
        rules.append(
            PinRule(
                host,
                subdomains,
                own.pins or (),
                expires_at=own.expires,
                enforced=own.enforced,
                where=f"{name}: <domain-config> of {host}",
                platform="android-nsc",
                override_pins=own.overrides or (),
            )
        )
    for child in config.findall("domain-config"):
        _domain_config(child, own, name, rules, findings)


def _pin_set(
    pin_set: ElementTree.Element, name: str, findings: list[Finding]
) -> tuple[tuple[Pin, ...], datetime | None]:
    expiration = pin_set.get("expiration")
    expires = None
    if expiration:
        try:
            expires = to_date(expiration, f"{name}: <pin-set expiration>")
        except ConfigError as error:
            findings.append(Finding("error", "app-crash", "?", str(error)))
    pins = []
    for pin in pin_set.findall("pin"):
        digest = pin.get("digest", "")
        text = (pin.text or "").strip()
        if digest.upper() != "SHA-256":
            findings.append(
                Finding(
                    "error",
                    "app-crash",
                    "?",
                    f'{name}: <pin digest="{digest}">: Android accepts only SHA-256',
                )
            )
            continue
        try:
            pins.append(read_pin(text, bare=True))
        except MalformedPinError as error:
            findings.append(
                Finding(
                    "error", "app-crash", "?", f"{name}: <pin> {error}: Android refuses the file"
                )
            )
    return tuple(pins), expires
