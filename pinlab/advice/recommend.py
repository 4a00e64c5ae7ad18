"""Which pin set for this host? Survival weighed against protection, within the data.

A pin protects by what it refuses and costs by when it breaks. :func:`advise` replays the
host's history (verified-chain semantics, the only safe ones) with the backup-holding pin
sets of :mod:`pinlab.advice.pinset` (never one key: RFC 7469 §4.3, TrustKit's two-pin
rule), and ranks them: first those that held over the horizon, or over the follow-up the
data has when that is shorter, strongest protection first; then those that broke,
longest-lived first. Nothing is claimed past the follow-up (last validated observation
minus first); a host with fewer than two validated observations, or none apart in time, is
not ranked: its pin set is still suggested, labelled unranked.

The suggested pin set is taken from the chains the host serves now (its latest validated
observation, every lineage served then) and checked against the whole history with
:func:`pinlab.advice.audit.score`, the audit's own scoring, so both say the same.

Helpers shared with :mod:`pinlab.advice.audit` read a store's frames for a few hosts without
validating the whole store (:func:`host_chains`, :func:`catalog_from_frames`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from pinlab.advice.audit import score
from pinlab.advice.model import PinConfig, PinRule
from pinlab.advice.pinset import CANDIDATES, Candidate, SuggestedPin, suggest_pins
from pinlab.certs import Certificate
from pinlab.errors import MalformedCertificateError, PinlabError
from pinlab.pins import Pin, Semantics
from pinlab.survival import (
    CaCatalog,
    ObservedChain,
    PinSurvival,
    TrustStores,
    observed_chains,
    replay,
)

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "RECOMMENDATION_COLUMNS",
    "Advice",
    "NoHistoryError",
    "advise",
    "catalog_from_frames",
    "host_chains",
    "recommend",
]

DEFAULT_HORIZON_DAYS = 365.0
"""A pin shipped in an app must outlive the release and its slow adopters (months, see
:mod:`pinlab.advice.updates`); a year is the horizon pin-set expirations are commonly set to."""

RECOMMENDATION_COLUMNS = [
    "rank", "strategy", "protection", "level", "pins", "breaks", "median_days",
    "reach_days", "survival_at_reach", "held", "backup", "pin_set", "explanation",
]  # fmt: skip
"""``reach_days``: the horizon, or the follow-up when the data is shorter; ``pin_set``: the
suggested pins (:class:`~pinlab.advice.pinset.SuggestedPin`); ``backup``: two keys or more."""


class NoHistoryError(PinlabError, LookupError):
    """The store holds no usable observation of the host asked about."""


@dataclass(frozen=True, slots=True)
class Advice:
    """What :func:`advise` found: the ranked table, the suggested set and its check."""

    host: str
    table: pd.DataFrame
    observations: int
    """Observations of the host with a chain (ok status)."""
    validated: int
    """Of those, how many validated against the trust store used."""
    followup_days: float
    """Last validated observation minus the first, in the longest-followed lineage."""
    ranked: bool
    top: str
    """The candidate whose pin set is suggested."""
    pin_set: tuple[SuggestedPin, ...]
    pinned_from: datetime
    """When the chains the set is taken from were observed (the latest validated)."""
    check: dict[str, Any]
    """:func:`pinlab.advice.audit.score`'s row for the suggested set over the history."""

    @property
    def history(self) -> str:
        """One line on the data behind the advice."""
        base = (
            f"{self.observations} observations over {int(self.followup_days)} days, "
            f"validated {self.validated} of {self.observations}"
        )
        if self.ranked:
            return base
        return f"not enough history to rank: {base}"


def recommend(
    chains: Sequence[ObservedChain],
    host: str,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    min_survival: float = 0.9,
    catalog: CaCatalog | None = None,
) -> pd.DataFrame:
    """The ranked table of :func:`advise` (rank is empty when the history is too short)."""
    return advise(
        chains, host, horizon_days=horizon_days, min_survival=min_survival, catalog=catalog
    ).table


def advise(
    chains: Sequence[ObservedChain],
    host: str,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    min_survival: float = 0.9,
    catalog: CaCatalog | None = None,
) -> Advice:
    """Backup-holding pin sets for ``host``, ranked within the follow-up its data has.

    ``chains`` holds at least the host's observations; ``catalog`` (for ``ca-set``)
    defaults to the CA keys of ``chains``.
    """
    own = [c for c in chains if c.host == host]
    if not own:
        raise NoHistoryError(f"no observation of {host!r}; hosts: {_some_hosts(chains)}")
    valid = sorted((c for c in own if c.verified), key=lambda c: c.observed_at)
    if not valid:
        raise NoHistoryError(
            f"none of the {len(own)} observations of {host!r} validated: nothing a client "
            "would have pinned (try a trust store of that time with --truststores)"
        )
    catalog = catalog if catalog is not None else CaCatalog.build(chains)
    followup = _followup_days(valid)
    ranked = len(valid) >= 2 and followup > 0
    reach = min(horizon_days, followup)
    # Only validated chains: a pin is censored at the last observation that checked it.
    replayed = replay(
        valid, strategies=[c.strategy for c in CANDIDATES.values()],
        semantics=[Semantics.VERIFIED], catalog=catalog,
    )  # fmt: skip
    # One host: every pin of its history, weighted alike (no hosts to resample).
    survival = PinSurvival(release_every=None, bootstrap=0).fit(replayed)
    by_time = {(c.lineage, c.observed_at): c for c in own}
    latest = [c for c in valid if c.observed_at == valid[-1].observed_at]
    known = {x.spki_sha256: x for c in chains for x in c.presented + (c.verified or ())}
    rows = []
    for order, candidate in enumerate(CANDIDATES.values()):
        group = replayed[replayed["strategy"] == candidate.name]
        pin_set = suggest_pins(candidate, latest, catalog, known)
        if group.empty or not pin_set:
            continue
        fitter = survival.fitters_[(candidate.name, Semantics.VERIFIED.value)]
        at_reach = float(fitter.predict(reach))
        row = {
            "strategy": candidate.name, "protection": candidate.scope, "level": candidate.level,
            "pins": len(group), "breaks": int(group["broken"].sum()),
            "median_days": float(fitter.median_survival_time_), "reach_days": reach,
            "survival_at_reach": at_reach, "held": ranked and at_reach >= min_survival,
            "backup": len(pin_set) >= 2, "pin_set": pin_set, "order": order,
        }  # fmt: skip
        causes = _causes(group, by_time, candidate.name)
        row["explanation"] = _explain(row, candidate, causes, horizon_days, group)
        rows.append(row)
    table = _rank(pd.DataFrame(rows), ranked)
    top = table.iloc[0]
    pin_set = tuple(top["pin_set"])
    check = {str(k): v for k, v in score(_config(host, pin_set), valid).iloc[0].items()}
    return Advice(
        host, table, len(own), len(valid), followup, ranked, str(top["strategy"]), pin_set,
        valid[-1].observed_at, check,
    )  # fmt: skip


def _followup_days(valid: Sequence[ObservedChain]) -> float:
    """The longest a pin was followed: last minus first validated chain of one lineage.

    Lineages served side by side are separate clients (an RSA pin never meets the ECDSA
    leaf), so two lineages seen once each give no follow-up at all.
    """
    spans: dict[str, list[datetime]] = {}
    for chain in valid:
        spans.setdefault(chain.lineage, []).append(chain.observed_at)
    return max((max(t) - min(t)).total_seconds() / 86400 for t in spans.values())


def _rank(table: pd.DataFrame, ranked: bool) -> pd.DataFrame:
    """Backup-holding sets first; then held by protection, the rest by how long they lasted."""
    if ranked:
        table["first"] = table["level"].where(table["held"], table["survival_at_reach"])
        table["second"] = table["survival_at_reach"].where(table["held"], table["median_days"])
        table["third"] = table["median_days"].where(table["held"], table["level"])
        keys = ["backup", "held", "first", "second", "third", "order"]
        ascending = [False, False, False, False, False, True]
    else:
        # No follow-up: nothing to weigh survival by; protection alone orders the sets.
        keys, ascending = ["backup", "level", "order"], [False, False, True]
    table = table.sort_values(keys, ascending=ascending).reset_index(drop=True)
    ranks = list(range(1, len(table) + 1)) if ranked else [None] * len(table)
    table.insert(0, "rank", pd.Series(ranks, dtype="Int64"))
    return table[RECOMMENDATION_COLUMNS]


def _config(host: str, pin_set: Sequence[SuggestedPin]) -> PinConfig:
    """The suggested set as the configuration an app would ship (OkHttp, one host)."""
    pins = tuple(Pin.parse(p.pin) for p in pin_set)
    return PinConfig("recommend", host, (PinRule(host, False, pins=pins, where="recommend"),))


def _some_hosts(chains: Sequence[ObservedChain]) -> str:
    hosts = sorted({c.host for c in chains})
    shown = ", ".join(hosts[:10])
    return shown + (f" and {len(hosts) - 10} more" if len(hosts) > 10 else "") or "(none)"


def _causes(
    group: pd.DataFrame, by_time: dict[tuple[str, datetime], ObservedChain], name: str
) -> Counter[str]:
    """What changed between the pinned chain and the one that broke the pin, counted."""
    causes: Counter[str] = Counter()
    broken = group[group["broken"]]
    for lineage, pinned_at, broken_at in zip(
        broken["lineage"], broken["pinned_at"], broken["broken_at"], strict=True
    ):
        pinned = by_time.get((str(lineage), _python_time(pinned_at)))
        broke = by_time.get((str(lineage), _python_time(broken_at)))
        if pinned is None or broke is None or not pinned.verified or not broke.verified:
            continue
        causes[_change(pinned.verified, broke.verified, name)] += 1
    return causes


def _python_time(value: Any) -> datetime:
    return pd.Timestamp(value).to_pydatetime()


_LOOKS_AT = {
    # A set breaks only when every pin misses: the change of its widest pin is the cause.
    "leaf+issuer": ("issuer", "root", "leaf"),
}


def _change(before: Sequence[Certificate], after: Sequence[Certificate], name: str) -> str:
    """The change that matters to strategy ``name``, its own position first."""
    changes = {
        "leaf": "a new leaf key" if before[0].spki_sha256 != after[0].spki_sha256 else "",
        "issuer": f"issuer {_cn(before[1])} -> {_cn(after[1])}"
        if len(before) > 2 and len(after) > 2 and before[1].spki_sha256 != after[1].spki_sha256
        else "",
        "root": f"root {_cn(before[-1])} -> {_cn(after[-1])}"
        if before[-1].spki_sha256 != after[-1].spki_sha256
        else "",
    }
    for position in _LOOKS_AT.get(name, ("root", "issuer", "leaf")):
        if changes[position]:
            return changes[position]
    return "a renewal with the same key"


def _cn(certificate: Certificate) -> str:
    for part in certificate.subject.split(","):
        if part.startswith("CN="):
            return part[3:]
    return certificate.subject


def _explain(
    row: dict[str, Any],
    candidate: Candidate,
    causes: Counter[str],
    horizon_days: float,
    group: pd.DataFrame,
) -> str:
    span = float(group["days_survived"].max())
    pins = row["pins"]
    if row["breaks"] == 0:
        outcome = f"no break in {int(span)} days observed ({pins} pins)"
    else:
        top = "; ".join(f"{cause} ({n}x)" for cause, n in causes.most_common(2))
        median = row["median_days"]
        typical = f"median {median:.0f} days" if median != float("inf") else "median not reached"
        outcome = f"broke {row['breaks']} of {pins} pins, {typical}" + (
            f", at {top}" if top else ""
        )
    reach = row["reach_days"]
    if reach <= 0:
        verdict = "no follow-up: not ranked"
    else:
        followed = int((group["days_survived"] >= reach).sum())
        share = (
            f"{row['survival_at_reach']:.0%} held at {int(reach)} days (Kaplan-Meier; "
            f"{followed} of {pins} pins followed that long)"
        )
        verdict = share + (
            f" (the data follows {int(reach)} days, short of the {horizon_days:.0f}-day horizon)"
            if reach < horizon_days
            else ""
        )
    return (
        f"{candidate.scope} protection, {candidate.refuses}; {candidate.pairing}; "
        f"{outcome}; {verdict}."
    )


def host_chains(
    observations: pd.DataFrame,
    certificates: pd.DataFrame,
    hosts: Iterable[str],
    *,
    trust_stores: TrustStores,
    scans: pd.DataFrame | None = None,
) -> list[ObservedChain]:
    """:func:`~pinlab.survival.observed_chains` of ``hosts`` only (validation is costly)."""
    wanted = set(hosts)
    chosen = observations[observations["host"].isin(wanted)]
    return observed_chains(chosen, certificates, trust_stores=trust_stores, scans=scans)


def catalog_from_frames(
    observations: pd.DataFrame,
    certificates: pd.DataFrame,
    chains: Sequence[ObservedChain] = (),
) -> CaCatalog:
    """CA keys of every presented chain of the store, plus those of ``chains``' paths.

    What ``ca-set`` pins, without validating every observation: roots that only the trust
    store supplied are known from the validated ``chains``.
    """
    ca_rows = certificates[certificates["is_ca"].eq(True)]
    parsed: dict[str, Certificate] = {}
    for digest, der in zip(ca_rows["sha256"], ca_rows["der"], strict=True):
        try:
            parsed[str(digest)] = Certificate.from_der(bytes(der))
        except MalformedCertificateError:
            continue
    catalog = CaCatalog.build(chains)
    ok = observations[observations["status"] == "ok"]
    for chain, at in zip(ok["chain"], ok["observed_at"], strict=True):
        for digest in list(chain) if chain is not None else []:
            certificate = parsed.get(str(digest))
            if certificate is not None:
                catalog.add(certificate, pd.Timestamp(at).to_pydatetime())
    return catalog
