"""Audit a pin configuration: lint it, and replay it against the observed history.

:func:`lint` returns findings with stable codes: those of the reader (``app-crash``,
``ignored-key``, ``unresolved-call``, ``bogus-pin``), ``bogus-pin``, ``retired-ca-key``
(:mod:`pinlab.advice.findings`), ``single-pin``, ``expired``, ``report-only``,
``override-pins``, ``sha1-pin``, ``leaf-pin-no-reuse``, ``rotating-intermediate`` (only
when the set does not cover the rotation), ``unmatched-pin`` and ``no-history``.
:func:`score` walks each observed host's validated history, lineage by lineage, with the
pins that govern that host on the configuration's platform (:mod:`pinlab.advice.platforms`).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from pinlab.advice.findings import RETIRED_CA_KEYS, bogus_reason
from pinlab.advice.model import ConfigError, Finding, PinConfig, PinRule
from pinlab.advice.pinconfig import parse_config
from pinlab.advice.platforms import Governance, govern
from pinlab.certs import Certificate
from pinlab.survival import ObservedChain

__all__ = [
    "FINDING_COLUMNS",
    "SCORE_COLUMNS",
    "ConfigError",
    "PinConfig",
    "PinRule",
    "lint",
    "observed_hosts",
    "parse_config",
    "score",
]

FINDING_COLUMNS = ["severity", "code", "host", "message"]
SCORE_COLUMNS = [
    "host",
    "rule",
    "pins",
    "enforced",
    "observations",
    "accepted",
    "rejected",
    "unenforced",
    "rejected_before_accept",
    "first_rejected_at",
    "broken_at",
    "rejects_latest",
    "verdict",
]


def _name(chain: ObservedChain) -> str:
    return (chain.sni or chain.host).lower()


def observed_hosts(config: PinConfig, chains: Sequence[ObservedChain]) -> list[str]:
    """Observed host names some entry of ``config`` applies to."""
    return sorted({_name(c) for c in chains if govern(config, _name(c)).rules})


def _representative(rule: PinRule) -> str:
    """A host name the entry covers, to judge it where no host of it was observed."""
    return "x." + rule.domain[2:] if rule.domain.startswith("*.") else rule.domain.lstrip("*.")


def lint(
    config: PinConfig,
    chains: Sequence[ObservedChain],
    *,
    at: datetime,
    rotating: Collection[bytes] = frozenset(),
) -> pd.DataFrame:
    """Findings, one row each: ``severity`` (error/warning/info), ``code``, ``host``, ``message``.

    ``chains`` is the observed history (validated); ``rotating`` holds SPKI SHA-256 digests
    of intermediates a CA draws from at random.
    """
    findings = list(config.findings)
    for rule in config.rules:
        findings += _rule_findings(rule, at)
    hosts = observed_hosts(config, chains)
    judged: set[str] = set()
    for host in hosts + [_representative(r) for r in config.rules]:
        governance = govern(config, host)
        if governance.effective is None or governance.rule in judged:
            continue
        judged.add(governance.rule or "")
        findings += [Finding("info", "platform-rule", host, note) for note in governance.notes]
        pins = governance.effective.all_pins
        if governance.enforced and len(pins) == 1:
            findings.append(
                Finding(
                    "warning",
                    "single-pin",
                    governance.rule or host,
                    "one pin and no backup: the next key or CA change strands "
                    "every user until they update (RFC 7469 §4.3)",
                )
            )
    for host in hosts:
        governance = govern(config, host)
        seen = [c for c in chains if c.verified and _name(c) == host]
        findings += _history_findings(governance, seen, rotating)
    for rule in config.rules:
        if not any(
            govern(config, h).effective is not None and rule in govern(config, h).rules
            for h in hosts
        ):
            findings.append(
                Finding(
                    "info",
                    "no-history",
                    rule.pattern,
                    "no validated observation of a host this entry governs",
                )
            )
    unique = list(dict.fromkeys(findings))
    return pd.DataFrame([f.as_dict() for f in unique], columns=FINDING_COLUMNS)


def _rule_findings(rule: PinRule, at: datetime) -> list[Finding]:
    found = []
    host = rule.pattern
    if rule.expires_at is not None and at >= rule.expires_at:
        found.append(
            Finding(
                "warning",
                "expired",
                host,
                f"pin set expired on {rule.expires_at.date()}: these pins are no longer enforced",
            )
        )
    if not rule.enforced:
        found.append(
            Finding(
                "info",
                "report-only",
                host,
                "pinning is report-only: failures are reported, connections go through",
            )
        )
    if rule.override_pins:
        sources = ", ".join(rule.override_pins)
        found.append(
            Finding(
                "warning" if "system" in rule.override_pins else "info",
                "override-pins",
                host,
                f"trust anchors {sources} have overridePins: chains to them are not pin-checked",
            )
        )
    if any(pin.legacy for pin in rule.all_pins):
        found.append(Finding("warning", "sha1-pin", host, "legacy sha1/ pins: use sha256/"))
    for pin in rule.all_pins:
        reason = bogus_reason(pin)
        if reason:
            found.append(
                Finding(
                    "warning",
                    "bogus-pin",
                    host,
                    f"{pin} {reason}: it matches no key, so it is no backup",
                )
            )
        for retired in RETIRED_CA_KEYS:
            if retired.pin == pin:
                found.append(
                    Finding(
                        "warning",
                        "retired-ca-key",
                        host,
                        f"{pin} is the key of "
                        f"{retired.name}, out of service since "
                        f"{retired.left_service.date()}: no new chain carries it "
                        f"(source: {retired.source})",
                    )
                )
    return found


def _history_findings(
    governance: Governance, seen: Sequence[ObservedChain], rotating: Collection[bytes]
) -> list[Finding]:
    rule = governance.effective
    if rule is None or not seen or not governance.enforced:
        return []
    host, pins = governance.host, rule.all_pins
    found = []
    # Distinct validated leaves in order of first sight: a chain that did not validate is no
    # renewal a pin meets, so this can be fewer than the ledger's changes of leaf, which
    # counts every served leaf (pinlab history). The message says which count it is.
    leaves = list({c.verified[0].sha256: c.verified[0] for c in seen if c.verified}.values())
    renewals = list(itertools.pairwise(leaves))
    fresh = bool(renewals) and all(a.spki_sha256 != b.spki_sha256 for a, b in renewals)
    issuers = {
        c.verified[1].spki_sha256: c.verified[1] for c in seen if c.verified and len(c.verified) > 2
    }
    digests = {pin.digest for pin in pins}
    above = all(any(p.matches(x) for p in pins for x in (c.verified or ())[2:]) for c in seen)
    rejected = any(rule.accepts(c.verified or (), c.observed_at) is False for c in seen)
    for pin in pins:
        if fresh and any(pin.matches(leaf) for leaf in leaves):
            found.append(
                Finding(
                    "warning",
                    "leaf-pin-no-reuse",
                    host,
                    f"{pin} pins a leaf key "
                    f"of {host}, which took a fresh key at each of its "
                    f"{len(renewals)} renewals between validated chains (pinlab history "
                    "counts every change of leaf, validated or not)",
                )
            )
        pinned = next((i for i in issuers.values() if pin.matches(i)), None)
        if pinned is None:
            continue
        uncovered_rotation = bool(rotating) and not (set(rotating) <= digests or above)
        if pinned.spki_sha256 in rotating and uncovered_rotation:
            found.append(
                Finding(
                    "warning",
                    "rotating-intermediate",
                    host,
                    f"{pin} pins "
                    f"intermediate {_cn(pinned)}, one of a set its CA draws from "
                    "at random, and the set neither pins the others nor a CA "
                    "above them",
                )
            )
        elif len(issuers) > 1 and rejected and not above:
            names = ", ".join(sorted(_cn(i) for i in issuers.values()))
            found.append(
                Finding(
                    "warning",
                    "rotating-intermediate",
                    host,
                    f"{pin} pins "
                    f"intermediate {_cn(pinned)}, but {host} was issued by "
                    f"{len(issuers)} ({names}) and the set misses some",
                )
            )
    known = {c.spki_sha256 for chain in seen for c in chain.verified or ()}
    for pin in pins:
        if pin.algorithm == "sha256" and pin.digest not in known and not bogus_reason(pin):
            found.append(
                Finding(
                    "info",
                    "unmatched-pin",
                    host,
                    f"{pin} matches nothing observed (a backup key, or stale)",
                )
            )
    return found


def _cn(certificate: Certificate) -> str:
    for part in certificate.subject.split(","):
        if part.startswith("CN="):
            return part[3:]
    return certificate.subject


def score(config: PinConfig, chains: Sequence[ObservedChain]) -> pd.DataFrame:
    """Per observed host: the governing rule and pins, and when they would have broken.

    Each lineage (leaves served side by side, :mod:`pinlab.history`) is replayed on its
    own, as ``recommend`` does: ``broken_at`` is the earliest rejection that follows an
    acceptance in the same lineage; rejections before any acceptance are counted apart.
    """
    rows = []
    for host in observed_hosts(config, chains):
        governance = govern(config, host)
        seen = sorted(
            (c for c in chains if c.verified and _name(c) == host), key=lambda c: c.observed_at
        )
        rows.append(_score_row(governance, seen))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _score_row(governance: Governance, seen: Sequence[ObservedChain]) -> dict[str, Any]:
    verdicts = [
        (c.lineage, c.observed_at, governance.accepts(c.verified or (), c.observed_at))
        for c in seen
    ]
    accepted = [at for _, at, ok in verdicts if ok is True]
    rejected = [at for _, at, ok in verdicts if ok is False]
    breaks, early = [], 0
    for lineage in dict.fromkeys(lin for lin, _, _ in verdicts):
        own = [(at, ok) for lin, at, ok in verdicts if lin == lineage]
        first_ok = next((at for at, ok in own if ok is True), None)
        early += sum(1 for at, ok in own if ok is False and (first_ok is None or at < first_ok))
        if first_ok is not None:
            breaks += [at for at, ok in own if ok is False and at > first_ok][:1]
    broken_at = min(breaks, default=None)
    rule = governance.effective
    if not verdicts:
        verdict = "no validated observation"
    elif not governance.enforced:
        verdict = "not pinned on this platform: " + _why_unenforced(governance)
    elif not accepted and rejected:
        verdict = f"rejected all {len(rejected)} observations: broken from the start"
    elif broken_at is not None:
        verdict = f"would have broken on {broken_at.date()}"
    elif accepted:
        verdict = (
            f"no break in {(seen[-1].observed_at - accepted[0]).days} days observed "
            f"({len(accepted)} accepted, {accepted[0].date()} to {accepted[-1].date()})"
        )
    else:
        verdict = "pins not enforced (expired or report-only) over the observations"
    if early and accepted:
        verdict += f"; {early} rejected before the first acceptance"
    return {
        "host": governance.host,
        "rule": governance.rule,
        "pins": [str(p) for p in rule.all_pins] if rule else [],
        "enforced": governance.enforced,
        "observations": len(verdicts),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "unenforced": sum(ok is None for _, _, ok in verdicts),
        "rejected_before_accept": early,
        "first_rejected_at": rejected[0] if rejected else None,
        "broken_at": broken_at,
        "rejects_latest": bool(verdicts) and verdicts[-1][2] is False,
        "verdict": verdict,
    }


def _why_unenforced(governance: Governance) -> str:
    rule = governance.effective
    if rule is None:
        return "no entry applies"
    if rule.excluded:
        return f"{rule.domain} is excluded from its parent's policy"
    if "system" in rule.override_pins:
        return "its system trust anchors override pins"
    if not rule.enforced:
        return "report-only"
    return f"the governing entry {rule.domain} has no pins"
