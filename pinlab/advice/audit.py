"""Audit a pin configuration: lint it, and score it against the observed history.

:func:`lint` flags a single pin without backup, an expired pin set, a leaf pin on a host
that never reuses its key, a pin on an intermediate that rotates (the host's issuer key
changed, or the key is in a rotating set such as Let's Encrypt's R10-R14/E5-E9 passed in),
legacy SHA-1 pins, report-only rules and pins that match nothing observed. :func:`score`
walks each matching host's validated history and says whether and when the configuration
would have rejected the server. Configurations are read by :mod:`pinlab.advice.pinconfig`
(OkHttp, Android Network Security Config, TrustKit, NSPinnedDomains).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from pinlab.advice.pinconfig import ConfigError, PinConfig, PinRule, parse_config
from pinlab.certs import Certificate
from pinlab.pins import Pin
from pinlab.survival import ObservedChain

__all__ = [
    "FINDING_COLUMNS",
    "SCORE_COLUMNS",
    "ConfigError",
    "PinConfig",
    "PinRule",
    "lint",
    "parse_config",
    "score",
]

FINDING_COLUMNS = ["severity", "check", "domain", "message"]
SCORE_COLUMNS = [
    "domain", "host", "observations", "accepted", "rejected", "unenforced", "first_seen",
    "last_seen", "last_accepted", "broken_at", "rejects_latest", "verdict",
]  # fmt: skip


# -- lint and score -------------------------------------------------------------------------


def lint(
    config: PinConfig,
    chains: Sequence[ObservedChain],
    *,
    at: datetime,
    rotating: Collection[bytes] = frozenset(),
) -> pd.DataFrame:
    """Findings, one row each: ``severity`` (warning/info), ``check``, ``domain``, ``message``.

    ``chains`` is the observed history (validated); ``rotating`` holds SPKI SHA-256 digests
    of intermediates known to rotate at random (a pin on one breaks at most renewals).
    """
    findings: list[dict[str, str]] = []

    def add(severity: str, check: str, rule: PinRule, message: str) -> None:
        findings.append({"severity": severity, "check": check, "domain": rule.pattern,
                         "message": message})  # fmt: skip

    for rule in config.rules:
        pins = rule.all_pins
        if len(pins) == 1:
            add("warning", "single-pin", rule, "one pin and no backup: the next key or CA "
                "change strands every user until they update")  # fmt: skip
        if rule.expires_at is not None and at >= rule.expires_at:
            add("warning", "expired", rule, f"pin set expired on {rule.expires_at.date()}: "
                "these pins are no longer enforced")  # fmt: skip
        if not rule.enforced:
            add("info", "report-only", rule, "TSKEnforcePinning is NO: failures are reported, "
                "connections go through")  # fmt: skip
        if any(pin.legacy for pin in pins):
            add("warning", "sha1-pin", rule, "legacy sha1/ pins: use sha256/")
        history = [c for c in chains if c.verified and rule.applies_to(c.sni or c.host)]
        if not history:
            add("info", "no-history", rule, "no validated observation of a matching host")
            continue
        for host in sorted({c.sni or c.host for c in history}):
            seen = [c for c in history if (c.sni or c.host) == host]
            for check, message in _history_findings(pins, seen, host, rotating):
                add("warning", check, rule, message)
        known = {c.spki_sha256 for chain in history for c in chain.verified or ()}
        for pin in pins:
            if pin.algorithm == "sha256" and pin.digest not in known:
                add("info", "unmatched-pin", rule, f"{pin} matches nothing observed "
                    "(a backup key, or stale)")  # fmt: skip
    return pd.DataFrame(findings, columns=FINDING_COLUMNS)


def _history_findings(
    pins: Sequence[Pin], seen: Sequence[ObservedChain], host: str, rotating: Collection[bytes]
) -> list[tuple[str, str]]:
    findings = []
    leaves: dict[str, Certificate] = {}
    for observed in seen:
        assert observed.verified is not None
        leaves.setdefault(observed.verified[0].sha256, observed.verified[0])
    ordered = list(leaves.values())
    renewals = list(itertools.pairwise(ordered))
    never_reuses = bool(renewals) and all(a.spki_sha256 != b.spki_sha256 for a, b in renewals)
    issuers = {
        c.verified[1].spki_sha256: c.verified[1] for c in seen if c.verified and len(c.verified) > 2
    }
    for pin in pins:
        if never_reuses and any(pin.matches(leaf) for leaf in ordered):
            findings.append(("leaf-pin-no-reuse", f"{pin} pins a leaf key of {host}, which took "
                             f"a fresh key at each of its {len(renewals)} renewals"))  # fmt: skip
        pinned = next((i for i in issuers.values() if pin.matches(i)), None)
        if pinned is None:
            continue
        if len(issuers) > 1:
            names = ", ".join(sorted(_cn(i) for i in issuers.values()))
            findings.append(("rotating-intermediate", f"{pin} pins intermediate {_cn(pinned)}, "
                             f"but {host} was issued by {len(issuers)} ({names})"))  # fmt: skip
        elif pinned.spki_sha256 in rotating:
            findings.append(("rotating-intermediate", f"{pin} pins intermediate {_cn(pinned)}, "
                             "one of a set its CA draws from at random"))  # fmt: skip
    return findings


def _cn(certificate: Certificate) -> str:
    for part in certificate.subject.split(","):
        if part.startswith("CN="):
            return part[3:]
    return certificate.subject


def score(config: PinConfig, chains: Sequence[ObservedChain]) -> pd.DataFrame:
    """Per (rule, matching host): would the configuration have rejected the server, when.

    Every validated observation is checked at its own time (an expired or report-only
    rule is ``unenforced`` then). ``broken_at`` is the first rejection after the first
    acceptance: when an app shipped with this configuration, working, would have broken.
    """
    rows = []
    for rule in config.rules:
        history = sorted(
            (c for c in chains if c.verified and rule.applies_to(c.sni or c.host)),
            key=lambda c: c.observed_at,
        )
        for host in sorted({c.sni or c.host for c in history}):
            seen = [c for c in history if (c.sni or c.host) == host]
            verdicts = [
                (c.observed_at, rule.accepts(c.verified or (), c.observed_at)) for c in seen
            ]
            rows.append(_score_row(rule, host, verdicts))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _count(times: Sequence[datetime]) -> str:
    return f"{len(times)} observation" + ("s" if len(times) != 1 else "")


def _score_row(
    rule: PinRule, host: str, verdicts: list[tuple[datetime, bool | None]]
) -> dict[str, Any]:
    accepted = [at for at, ok in verdicts if ok is True]
    rejected = [at for at, ok in verdicts if ok is False]
    broken_at = next((at for at in rejected if accepted and at > accepted[0]), None)
    latest = verdicts[-1][1]
    if not accepted and rejected:
        verdict = f"matched none of {_count(rejected)}: broken from the start"
    elif broken_at is not None:
        verdict = f"would have broken on {broken_at.date()} (accepted since {accepted[0].date()})"
    elif accepted:
        verdict = f"survived {_count(accepted)}, {accepted[0].date()} to {accepted[-1].date()}"
    else:
        verdict = "never enforced (expired or report-only) over the observations"
    return {
        "domain": rule.pattern, "host": host, "observations": len(verdicts),
        "accepted": len(accepted), "rejected": len(rejected),
        "unenforced": sum(ok is None for _, ok in verdicts),
        "first_seen": verdicts[0][0], "last_seen": verdicts[-1][0],
        "last_accepted": accepted[-1] if accepted else None, "broken_at": broken_at,
        "rejects_latest": latest is False, "verdict": verdict,
    }  # fmt: skip
