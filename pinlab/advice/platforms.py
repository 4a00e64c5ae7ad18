"""Which pins govern a host, exactly as each platform decides it. The one module of matching.

- **OkHttp** ``CertificatePinner``: every pattern that matches the host contributes its
  pins, and the host passes when any of the union matches (``findMatchingPins`` collects
  the pins of all matching patterns). ``*.example.com`` matches exactly one more label;
  ``**.example.com`` matches ``example.com`` and any depth below it.
- **Android Network Security Config**: only the most specific ``domain-config`` applies
  (``ApplicationConfig.getConfigForHostname``: an exact ``<domain>`` wins at once, else the
  longest ``includeSubdomains`` domain the host ends with). A nested ``domain-config``
  inherits what it does not set (the reader resolves that), and a chain that ends at a trust
  anchor with ``overridePins="true"`` is not pin-checked (``PinRule.override_pins``).
- **TrustKit**: ``getPinningConfigurationKeyForDomain`` takes the host's own entry when
  there is one, else an entry with ``TSKIncludeSubdomains`` the host is below (any depth).
  TrustKit takes the first such parent in dictionary order, which is unspecified; pinlab
  takes the longest, and the audit says so when several parents match. An entry with
  ``TSKExcludeSubdomainFromParentPolicy`` leaves its host unpinned.
- **iOS ``NSPinnedDomains``**: Apple's documentation of ``NSIncludesSubdomains``: "apply
  the configuration for the given domain to all subdomains of the domain that have one
  additional path component" (``math.example.com`` but not ``advanced.math.example.com``).
  The host's own entry comes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pinlab.advice.model import PinConfig, PinRule
from pinlab.certs import Certificate

__all__ = ["Governance", "entry_matches", "govern", "okhttp_matches"]

MOST_SPECIFIC = frozenset({"android-nsc", "trustkit", "ns-pinned-domains"})


def okhttp_matches(pattern: str, host: str) -> bool:
    """OkHttp ``CertificatePinner`` pattern matching (``*.`` one label, ``**.`` any depth)."""
    pattern, host = pattern.lower(), host.lower().rstrip(".")
    if pattern.startswith("**."):
        suffix = pattern[3:]
        return host == suffix or host.endswith("." + suffix)
    if pattern.startswith("*."):
        head, dot, rest = host.partition(".")
        return bool(head) and bool(dot) and rest == pattern[2:]
    return host == pattern


def entry_matches(rule: PinRule, host: str) -> bool:
    """Whether one entry covers ``host`` by its platform's rule, precedence aside."""
    host = host.lower().rstrip(".")
    if rule.platform == "okhttp":
        return okhttp_matches(rule.domain, host)
    if host == rule.domain:
        return True
    if not rule.include_subdomains:
        return False
    if rule.platform == "ns-pinned-domains":
        head, dot, rest = host.partition(".")
        return bool(head) and bool(dot) and rest == rule.domain
    return host.endswith("." + rule.domain)


@dataclass(frozen=True, slots=True)
class Governance:
    """What governs one host: the entries that apply, and the pins a client checks."""

    host: str
    platform: str
    rules: tuple[PinRule, ...]
    """The applying entries: all matching patterns (OkHttp), else the one most specific."""
    effective: PinRule | None
    """One rule holding the pins checked (OkHttp: the union); None: the host is not pinned."""
    notes: tuple[str, ...] = field(default=())

    @property
    def rule(self) -> str | None:
        """The domain or pattern(s) that govern the host, as written."""
        return " + ".join(r.pattern for r in self.rules) if self.rules else None

    @property
    def enforced(self) -> bool:
        """Whether the platform checks pins for this host at all (expiry aside)."""
        rule = self.effective
        return not (
            rule is None
            or rule.excluded
            or not rule.enforced
            or not rule.all_pins
            or "system" in rule.override_pins
        )

    def accepts(self, chain: Sequence[Certificate], at: datetime) -> bool | None:
        """Whether the platform accepts the verified ``chain``; None: pins not checked."""
        return None if self.effective is None else self.effective.accepts(chain, at)


def govern(config: PinConfig, host: str) -> Governance:
    """The entries of ``config`` that govern ``host`` on its platform, and their pins."""
    host = host.lower().rstrip(".")
    matching = [rule for rule in config.rules if entry_matches(rule, host)]
    if not matching:
        return Governance(host, config.format, (), None)
    if config.format not in MOST_SPECIFIC:
        pins = tuple(dict.fromkeys(pin for rule in matching for pin in rule.pins))
        union = PinRule(
            " + ".join(r.domain for r in matching),
            False,
            pins,
            platform="okhttp",
            where="; ".join(r.where for r in matching),
        )
        return Governance(host, config.format, tuple(matching), union)
    exact = [rule for rule in matching if rule.domain == host]
    if exact:
        return Governance(host, config.format, (exact[0],), exact[0])
    best = max(matching, key=lambda rule: len(rule.domain))
    notes: tuple[str, ...] = ()
    if config.format == "trustkit" and len(matching) > 1:
        others = ", ".join(r.domain for r in matching if r is not best)
        notes = (
            f"{host} is below several TSKIncludeSubdomains entries ({best.domain}, {others}); "
            "TrustKit picks one in unspecified dictionary order, pinlab assumes the longest",
        )
    return Governance(host, config.format, (best,), best, notes)
