"""TrustKit dictionaries (JSON, plist, Swift or Objective-C literal) and ATS ``NSPinnedDomains``.

TrustKit (``parseTrustKitConfiguration``) raises at initialisation, so the app crashes at
start-up, when a domain has fewer than two pins or a hash it cannot decode, which includes
a ``sha256/``-prefixed one: those are ``app-crash`` findings. Keys at the wrong level of the
dictionary are never read by TrustKit: ``ignored-key`` findings, since the pinning the
developer meant is then off. ``TSKExcludeSubdomainFromParentPolicy`` entries leave their
host unpinned. ``NSPinnedLeafIdentities`` must match the leaf and ``NSPinnedCAIdentities``
a CA of the chain; when both are given ATS requires a match in each.
"""

from __future__ import annotations

from typing import Any

from pinlab.advice.model import ConfigError, Finding, PinConfig, PinRule, read_pin, to_date
from pinlab.advice.readers.literal import Unresolved
from pinlab.errors import MalformedPinError
from pinlab.pins import Pin

__all__ = ["read_dictionary"]

TOP_KEYS = {
    "TSKSwizzleNetworkDelegates",
    "TSKPinnedDomains",
    "TSKIgnorePinningForUserDefinedTrustAnchors",
}
DOMAIN_KEYS = {
    "TSKPublicKeyHashes",
    "TSKIncludeSubdomains",
    "TSKEnforcePinning",
    "TSKExcludeSubdomainFromParentPolicy",
    "TSKExpirationDate",
    "TSKReportUris",
    "TSKDisableDefaultReportUri",
    "TSKPublicKeyAlgorithms",
    "TSKAdditionalTrustAnchors",
}


def read_dictionary(document: Any, name: str, *, source: bool = False) -> PinConfig:
    """A TrustKit configuration or an ``NSAppTransportSecurity`` dictionary."""
    if not isinstance(document, dict):
        raise ConfigError(f"{name}: the top level is not a dictionary")
    document = {_key(k): v for k, v in document.items()}
    if "TSKConfiguration" in document or "TSKPinnedDomains" in document:
        return _trustkit(document.get("TSKConfiguration", document), name)
    ats = document.get("NSAppTransportSecurity", document)
    if isinstance(ats, dict) and "NSPinnedDomains" in ats:
        return _ats(ats["NSPinnedDomains"], name)
    raise ConfigError(
        f"{name}: neither a TrustKit configuration (TSKPinnedDomains) nor an "
        "NSAppTransportSecurity NSPinnedDomains dictionary"
    )


def _key(key: Any) -> str:
    text = str(key)
    return text[1:] if text.startswith("kTSK") else text


def _trustkit(configuration: Any, name: str) -> PinConfig:
    findings: list[Finding] = []
    if not isinstance(configuration, dict):
        raise ConfigError(f"{name}: TSKConfiguration is not a dictionary")
    configuration = {_key(k): v for k, v in configuration.items()}
    for key in configuration:
        if key not in TOP_KEYS and key != "TSKConfiguration":
            findings.append(_ignored("*", key, "the configuration's top level", key in DOMAIN_KEYS))
    domains = configuration.get("TSKPinnedDomains")
    if not isinstance(domains, dict) or not domains:
        raise ConfigError(f"{name}: TSKPinnedDomains must be a non-empty dictionary of domains")
    rules = []
    for domain, settings in domains.items():
        domain = str(domain).lower()
        if _key(domain) in DOMAIN_KEYS | TOP_KEYS or not isinstance(settings, dict):
            findings.append(_ignored(domain, domain, "TSKPinnedDomains", True))
            continue
        rule = _trustkit_domain(domain, {_key(k): v for k, v in settings.items()}, name, findings)
        rules.append(rule)
    return PinConfig("trustkit", name, tuple(rules), tuple(findings))


def _ignored(host: str, key: str, level: str, misplaced: bool) -> Finding:
    why = "belongs to another level" if misplaced else "is not a TrustKit key"
    return Finding(
        "warning",
        "ignored-key",
        host,
        f"{key} at {level} {why}: TrustKit never "
        "reads it, so what it was meant to set is not in force",
    )


def _trustkit_domain(
    domain: str, settings: dict[str, Any], name: str, findings: list[Finding]
) -> PinRule:
    where = f"{name}: TSKPinnedDomains/{domain}"
    for key in settings:
        if key not in DOMAIN_KEYS:
            findings.append(_ignored(domain, key, f"TSKPinnedDomains/{domain}", key in TOP_KEYS))
    for key, value in settings.items():
        if isinstance(value, Unresolved):
            findings.append(
                Finding(
                    "warning",
                    "unresolved-call",
                    domain,
                    f"{where}/{key}: cannot resolve {value.text}",
                )
            )
    excluded = settings.get("TSKExcludeSubdomainFromParentPolicy") is True
    hashes = settings.get("TSKPublicKeyHashes", [])
    pins: list[Pin] = []
    for value in hashes if isinstance(hashes, list) else []:
        pin = _trustkit_pin(value, domain, where, findings)
        if pin is not None:
            pins.append(pin)
    distinct = tuple(dict.fromkeys(pins))
    if not excluded and len(distinct) < 2:
        findings.append(
            Finding(
                "error",
                "app-crash",
                domain,
                f"{where}: {len(distinct)} usable "
                "pin(s); TrustKit refuses fewer than two at start-up",
            )
        )
    expiration = settings.get("TSKExpirationDate")
    expires = None
    if expiration is not None and not isinstance(expiration, Unresolved):
        try:
            expires = to_date(expiration, f"{where}/TSKExpirationDate")
        except ConfigError as error:
            findings.append(Finding("error", "app-crash", domain, str(error)))
    return PinRule(
        domain,
        settings.get("TSKIncludeSubdomains") is True,
        distinct,
        expires_at=expires,
        enforced=settings.get("TSKEnforcePinning", True) is not False,
        where=where,
        platform="trustkit",
        excluded=excluded,
    )


def _trustkit_pin(value: Any, domain: str, where: str, findings: list[Finding]) -> Pin | None:
    if isinstance(value, Unresolved):
        findings.append(
            Finding("warning", "unresolved-call", domain, f"{where}: cannot resolve {value.text}")
        )
        return None
    text = str(value).strip()
    if text.startswith(("sha256/", "sha1/")):
        findings.append(
            Finding(
                "error",
                "app-crash",
                domain,
                f"{where}: {text!r}: TrustKit "
                "takes bare base64, the sha256/ prefix makes it refuse the "
                "configuration at start-up",
            )
        )
        return None
    try:
        return read_pin(text, bare=True)
    except MalformedPinError as error:
        findings.append(
            Finding(
                "error",
                "app-crash",
                domain,
                f"{where}: {error}: TrustKit refuses the configuration at start-up",
            )
        )
        return None


def _ats(domains: Any, name: str) -> PinConfig:
    if not isinstance(domains, dict) or not domains:
        raise ConfigError(f"{name}: NSPinnedDomains must be a non-empty dictionary of domains")
    findings: list[Finding] = []
    rules = []
    for domain, settings in domains.items():
        domain = str(domain).lower()
        where = f"{name}: NSPinnedDomains/{domain}"
        if not isinstance(settings, dict):
            findings.append(
                Finding(
                    "warning", "ignored-key", domain, f"{where} is not a dictionary: ATS ignores it"
                )
            )
            continue
        identities: dict[str, tuple[Pin, ...]] = {}
        for key in ("NSPinnedLeafIdentities", "NSPinnedCAIdentities"):
            if key in settings:
                identities[key] = _ats_identities(settings[key], domain, f"{where}/{key}", findings)
        if not identities:
            findings.append(
                Finding(
                    "warning",
                    "ignored-key",
                    domain,
                    f"{where}: neither NSPinnedLeafIdentities nor NSPinnedCAIdentities",
                )
            )
            continue
        rules.append(
            PinRule(
                domain,
                settings.get("NSIncludesSubdomains") is True,
                leaf_pins=identities.get("NSPinnedLeafIdentities", ()),
                ca_pins=identities.get("NSPinnedCAIdentities", ()),
                where=where,
                platform="ns-pinned-domains",
            )
        )
    return PinConfig("ns-pinned-domains", name, tuple(rules), tuple(findings))


def _ats_identities(
    entries: Any, domain: str, where: str, findings: list[Finding]
) -> tuple[Pin, ...]:
    if not isinstance(entries, list) or not entries:
        findings.append(
            Finding(
                "error",
                "refuses-all",
                domain,
                f"{where}: an empty array: ATS refuses every connection to this domain",
            )
        )
        return ()
    pins = []
    for entry in entries:
        text = entry.get("SPKI-SHA256-BASE64") if isinstance(entry, dict) else None
        try:
            pins.append(read_pin(str(text), bare=True))
        except MalformedPinError as error:
            findings.append(Finding("warning", "bogus-pin", domain, f"{where}: {error}"))
    return tuple(pins)
