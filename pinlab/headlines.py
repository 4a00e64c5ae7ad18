"""The findings each report page opens with, computed from the tables that page draws.

One function per page, each returning :class:`pinlab.findings.Finding` rows that
:func:`pinlab.findings.show_findings` displays; plus :func:`published_comparison`, page 02's
table of published figures beside the same measure on the data at hand, and
:func:`presented_false_safety`, the key-level count of what checking pins on the presented
chain would wrongly accept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import binom  # type: ignore[import-untyped]

from pinlab.analysis import overhead_resolution
from pinlab.findings import Finding, share_finding

if TYPE_CHECKING:
    from pinlab.survival import ObservedChain

__all__ = [
    "bench_findings",
    "collection_findings",
    "lab_findings",
    "median_interval",
    "presented_false_safety",
    "published_comparison",
    "renewal_findings",
    "survival_findings",
]


def median_interval(values: Sequence[float] | pd.Series) -> tuple[float, float, float]:
    """The median and its distribution-free 95 % interval (order statistics, binomial).

    With n values sorted, the interval runs from the j-th to the k-th, the ranks where the
    binomial(n, 1/2) leaves at most 2.5 % on each side; ``nan`` bounds for n < 6, where
    no such ranks exist.
    """
    data = np.sort(np.asarray(pd.Series(values).dropna(), dtype=float))
    n = len(data)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    median = float(np.median(data))
    j = int(binom.ppf(0.025, n, 0.5))  # 0-based rank of the lower bound
    k = n - 1 - j
    if j < 1 or k >= n:
        return (median, math.nan, math.nan)
    return (median, float(data[j - 1]), float(data[k]))


# -- page 01: a campaign ------------------------------------------------------------------


def collection_findings(
    observations: pd.DataFrame, scans: pd.DataFrame, overview: pd.DataFrame
) -> list[Finding]:
    """Page 01: how the collected attempts ended, how their chains validated, how fast."""
    source = observations["scan_id"].map(scans.set_index("scan_id")["source"])
    collected = observations[source == "scan"]
    data = f"{collected['scan_id'].nunique()} collection run(s) of this store"
    if collected.empty:
        return [Finding("Attempts collected", None, "count", "0 attempts", data,
                        missing="no `pinlab collect` run in this store")]  # fmt: skip
    ok = collected[collected["status"] == "ok"]
    validation = ok["validation"].fillna("not validated")
    findings = [
        share_finding("Attempts that completed a handshake", len(ok), len(collected),
                      unit="attempts", data=data),
        share_finding("Handshakes whose chain validated for the name asked", int(
            (validation == "valid").sum()), len(ok), unit="handshakes", data=data,
            note=f"Hostname mismatches {int((validation == 'hostname').sum())}, "
                 f"untrusted {int((validation == 'untrusted').sum())}: counted apart."),
    ]  # fmt: skip
    timed = overview[(overview["source"] == "scan") & overview["seconds"].notna()]
    timed = timed[timed["seconds"] > 0]
    if not timed.empty:
        rates = timed["observations"] / timed["seconds"]
        total = float(timed["observations"].sum() / timed["seconds"].sum())
        several = len(timed) > 1
        findings.append(Finding(
            "Observations per second (loopback: bounded by CPU and politeness, not the network)",
            total, "count", f"{int(timed['observations'].sum()):,} observations in "
            f"{len(timed)} run(s)", data,
            lower=float(rates.min()) if several else None,
            upper=float(rates.max()) if several else None,
            note="" if len(timed) > 1 else "One run: no spread between runs to show.",
        ))  # fmt: skip
    return findings


# -- page 02: renewals -----------------------------------------------------------------------


def renewal_findings(
    ledger: pd.DataFrame, sightings: pd.DataFrame, regularity: pd.DataFrame, data: str
) -> list[Finding]:
    """Page 02: key reuse at renewal, renewal intervals, schedules, keys shared by hosts."""
    from pinlab.history import regularity_summary

    hosts = ledger["host"].nunique() if len(ledger) else 0
    reused = ledger["key_reused"].dropna().astype(bool)
    findings = [
        share_finding("Renewals that kept the leaf key", int(reused.sum()), len(reused),
                      unit=f"renewals of {hosts} hosts", data=data),
    ]  # fmt: skip
    median, lower, upper = median_interval(ledger["renewal_interval_days"])
    findings.append(Finding(
        "Median interval between renewals (notBefore to notBefore)",
        None if math.isnan(median) else median, "days",
        f"{ledger['renewal_interval_days'].notna().sum():,} renewals", data,
        lower, upper, missing="no renewal observed",
    ))  # fmt: skip
    schedule = regularity_summary(regularity).iloc[0]
    findings.append(share_finding(
        "Hosts renewing on a schedule (≥ 3 renewals, 80 % within 10 % of a multiple of their "
        "median interval)", int(schedule["regular"]), int(schedule["hosts_judged"]),
        unit="hosts with 3 renewals or more", data=data,
    ))  # fmt: skip
    shared, keys = _shared_keys(sightings)
    findings.append(share_finding(
        "Leaf keys served under more than one host name", shared, keys, unit="leaf keys",
        data=data,
    ))  # fmt: skip
    return findings


def _shared_keys(sightings: pd.DataFrame) -> tuple[int, int]:
    if sightings.empty:
        return 0, 0
    names = sightings.groupby("spki_sha256")["host"].nunique()
    return int((names > 1).sum()), len(names)


_PUBLISHED = [
    ("Hosts renewing on a predictable schedule",
     "Omolola et al., PAM 2021: 80 % of Let's Encrypt certificates with long histories "
     "were reissued on a predictable schedule (CT logs, millions of certificates)"),
    ("Renewals that kept the leaf key",
     "Zhang et al., IMC 2014: after Heartbleed many reissued certificates kept the old, "
     "possibly leaked key (Alexa Top 1M, weekly full IPv4 scans, Oct 2013 to Apr 2014); "
     "Netcraft counted more than 30,000 such reissues by 9 May 2014"),
    ("Leaf keys served under more than one host name",
     "Cangialosi et al., CCS 2016: key sharing is extremely common; a handful of hosting "
     "providers hold the keys of most popular websites (full IPv4 scans, Alexa Top 1M)"),
]  # fmt: skip


def published_comparison(findings: Sequence[Finding], limits: str) -> pd.DataFrame:
    """Page 02: each published figure beside the same measure on this data.

    ``limits`` names what the data at hand cannot show (its size, its sampling); the
    column says it on every row, so no row reads as a replication it is not.
    """
    by_statement = {f.statement.split(" (")[0]: f for f in findings}
    rows = []
    for measure, theirs in _PUBLISHED:
        ours = next((f for s, f in by_statement.items() if s.startswith(measure[:20])), None)
        rows.append({
            "measure": measure,
            "published": theirs,
            "ours on this data": "—" if ours is None else ours.value_text(),
            "n": "—" if ours is None else ours.n,
            "limits of this data": limits,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("measure")


# -- page 03 / 05: survival --------------------------------------------------------------------

_HEADLINE_STRATEGIES = ("leaf-spki", "intermediate-spki", "root-spki")


def survival_findings(summary: pd.DataFrame, data: str) -> list[Finding]:
    """Pins of each headline strategy still accepted a year after they were taken
    (verified chain); "—" with the follow-up when the data does not reach a year."""
    findings = []
    verified = summary[summary["semantics"] == "verified"] if not summary.empty else summary
    for strategy in _HEADLINE_STRATEGIES:
        rows = verified[verified["strategy"] == strategy] if not verified.empty else verified
        if rows.empty:
            continue
        row = rows.iloc[0]
        followed = float(row["followup_days"])
        findings.append(Finding(
            f"{strategy} pins still accepted a year after pinning (verified chain)",
            _number(row["survival_1y"]), "share",
            f"{int(row['pins']):,} pins of {_count(row.get('hosts'))} hosts, "
            f"{int(row['breaks']):,} breaks", f"{data}; roots: {row['trust_store']}",
            _number(row.get("survival_1y_lower")), _number(row.get("survival_1y_upper")),
            missing=f"followed for {followed:,.0f} days only; survival past that is not stated",
        ))  # fmt: skip
    return findings


def _number(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _count(value: Any) -> str:
    return "—" if value is None or value is pd.NA else f"{int(value):,}"


def presented_false_safety(chains: Sequence[ObservedChain], data: str) -> Finding:
    """Validated observations whose presented chain carries a key the validated path never
    uses: a pin on that key passes a presented-chain check while protecting nothing."""
    validated = [c for c in chains if c.verified is not None]
    extra = 0
    for chain in validated:
        used = {c.spki_sha256 for c in chain.verified or ()}
        if any(c.spki_sha256 not in used for c in chain.presented):
            extra += 1
    return share_finding(
        "Validated observations presenting a key that the validated path never uses",
        extra, len(validated), unit="validated observations", data=data,
        note="A pin on such a key passes a presented-chain check (OkHttp before 3.1.2, "
             "CVE-2016-2402) and protects nothing.",
    )  # fmt: skip


# -- page 04: cost ------------------------------------------------------------------------------


def bench_findings(rows: pd.DataFrame, machine: dict[str, Any], source: str) -> list[Finding]:
    """Page 04: the pin check against its limit; validation against a bare handshake."""
    data = f"`{source}` ({machine.get('mode', '?')} run, {machine.get('cpu_model', '?')})"
    findings = []
    check = rows[rows["operation"].str.contains("pin check", case=False, na=False)]
    if not check.empty:
        ratios = check["ratio_to_limit"].dropna()
        median, lower, upper = median_interval(ratios)
        findings.append(Finding(
            "Pin check cost as a multiple of its limit (one SHA-256 and a set lookup)",
            median, "ratio", f"{len(ratios)} configurations, {int(check['runs'].sum()):,} runs",
            data, lower, upper,
            note="Interval over configurations (key types, chain lengths, pin-set sizes).",
        ))  # fmt: skip
    added = rows.dropna(subset=["overhead_pct_of_handshake"])
    if not added.empty:
        resolved = added[overhead_resolution(added)[1]]
        findings.append(Finding(
            "Rows whose cost added to a handshake stands above the runs' spread",
            float(len(resolved)), "count", f"{len(added)} rows with a handshake", data,
            note="The others are not resolved at this load and are not drawn as costs."
            if len(resolved) < len(added) else "",
        ))  # fmt: skip
    return findings


# -- page 06: the lab ----------------------------------------------------------------------------


def lab_findings(agreement: pd.DataFrame, data: str) -> list[Finding]:
    """Page 06: how often the ledger and the replay agree with the lab's ``truth.csv``."""
    findings = []
    for check in agreement.to_dict("records"):
        findings.append(share_finding(
            f"{check['check']} agreeing with truth.csv", int(check["agree"]), int(check["n"]),
            unit=str(check["unit"]), data=data,
        ))  # fmt: skip
    return findings
