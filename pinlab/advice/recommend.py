"""Which pinning strategy for this host? Survival weighed against protection.

A pin protects by what it refuses: a leaf key pin refuses every certificate the host's own
key did not sign for, even one a trusted CA mis-issued; an intermediate pin refuses what
other issuing CAs sign; a root pin only what other roots sign; a CA-set pin only other CA
organisations. A pin costs by when it breaks: the narrower it is, the sooner the host's
renewals break it. :func:`recommend` replays the host's history (verified-chain semantics,
the only safe ones) and ranks the strategies: first those whose pins survived ``horizon``
days (Kaplan-Meier estimate at least ``min_survival``), strongest protection first; then
those that broke, longest-lived first. Each row explains its place in one line.

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

from pinlab.certs import Certificate
from pinlab.errors import MalformedCertificateError, PinlabError
from pinlab.pins import Semantics
from pinlab.survival import (
    STRATEGIES,
    CaCatalog,
    ObservedChain,
    PinSurvival,
    TrustStores,
    observed_chains,
    replay,
)

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "PROTECTION",
    "RECOMMENDATION_COLUMNS",
    "NoHistoryError",
    "Protection",
    "catalog_from_frames",
    "host_chains",
    "recommend",
]

DEFAULT_HORIZON_DAYS = 365.0
"""A pin shipped in an app must outlive the release and its slow adopters (months, see
:mod:`pinlab.advice.updates`); a year is the horizon pin-set expirations are commonly set to."""

RECOMMENDATION_COLUMNS = [
    "rank", "strategy", "protection", "level", "pins", "breaks", "median_days",
    "survival_at_horizon", "survives", "explanation",
]  # fmt: skip


class NoHistoryError(PinlabError, LookupError):
    """The store holds no usable observation of the host asked about."""


@dataclass(frozen=True, slots=True)
class Protection:
    """What a strategy's pins refuse: ``level`` 4 (leaf) down to 1 (CA organisation)."""

    level: int
    scope: str
    refuses: str


PROTECTION: dict[str, Protection] = {
    "leaf-spki": Protection(4, "leaf", "refuses any certificate not for the host's own key"),
    "leaf+backup": Protection(4, "leaf", "refuses all but the host's key and its planned next"),
    "cert": Protection(4, "leaf", "refuses all but this very certificate"),
    "intermediate-spki": Protection(3, "intermediate", "refuses other issuing CAs"),
    "root-spki": Protection(2, "root", "refuses only chains to other roots"),
    "any-in-chain": Protection(2, "root", "as weak as its root pin: any chain to that root"),
    "ca-set": Protection(1, "ca-set", "refuses only other CA organisations"),
}
"""Protection of each strategy of :data:`pinlab.survival.STRATEGIES`."""


def recommend(
    chains: Sequence[ObservedChain],
    host: str,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    min_survival: float = 0.9,
    catalog: CaCatalog | None = None,
    strategies: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Strategies for ``host`` ranked by protection among those that survive its history.

    ``chains`` holds at least the host's observations; ``catalog`` (for ``ca-set``)
    defaults to the CA keys of ``chains``.
    """
    own = [c for c in chains if c.host == host]
    if not own:
        raise NoHistoryError(f"no observation of {host!r}; hosts: {_some_hosts(chains)}")
    if not any(c.verified for c in own):
        raise NoHistoryError(
            f"none of the {len(own)} observations of {host!r} validated: nothing a client "
            "would have pinned (try a trust store of that time with --truststores)"
        )
    names = list(strategies) if strategies else list(STRATEGIES)
    replayed = replay(
        own, strategies=names, semantics=[Semantics.VERIFIED],
        catalog=catalog if catalog is not None else CaCatalog.build(chains),
    )  # fmt: skip
    by_time = {(c.lineage, c.observed_at): c for c in own}
    # One host: every pin of its history, weighted alike (no hosts to resample).
    survival = PinSurvival(release_every=None, bootstrap=0).fit(replayed)
    rows = []
    for name in names:
        group = replayed[replayed["strategy"] == name]
        if group.empty:
            continue
        fitter = survival.fitters_[(name, Semantics.VERIFIED.value)]
        at_horizon = float(fitter.predict(horizon_days))
        protection = PROTECTION[name]
        breaks = int(group["broken"].sum())
        row = {
            "strategy": name, "protection": protection.scope, "level": protection.level,
            "pins": len(group), "breaks": breaks,
            "median_days": float(fitter.median_survival_time_),
            "survival_at_horizon": at_horizon, "survives": at_horizon >= min_survival,
            "order": list(PROTECTION).index(name),
        }  # fmt: skip
        causes = _causes(group, by_time, name)
        row["explanation"] = _explain(row, protection, causes, horizon_days, group)
        rows.append(row)
    table = pd.DataFrame(rows)
    # Survivors by protection; the rest by how long they lasted, protection breaking ties.
    table["first"] = table["level"].where(table["survives"], table["survival_at_horizon"])
    table["second"] = table["survival_at_horizon"].where(table["survives"], table["median_days"])
    table["third"] = table["median_days"].where(table["survives"], table["level"])
    table = table.sort_values(
        ["survives", "first", "second", "third", "order"],
        ascending=[False, False, False, False, True],
    )
    table.insert(0, "rank", range(1, len(table) + 1))
    return table[RECOMMENDATION_COLUMNS].reset_index(drop=True)


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
    "cert": ("leaf", "issuer", "root"),
    "leaf-spki": ("leaf", "issuer", "root"),
    "leaf+backup": ("leaf", "issuer", "root"),
    "intermediate-spki": ("issuer", "root", "leaf"),
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
    protection: Protection,
    causes: Counter[str],
    horizon_days: float,
    group: pd.DataFrame,
) -> str:
    span = float(group["days_survived"].max())
    if row["breaks"] == 0:
        outcome = f"never broke ({row['pins']} pins, up to {span:.0f} days)"
    else:
        top = "; ".join(f"{cause} ({n}x)" for cause, n in causes.most_common(2))
        outcome = (
            f"broke {row['breaks']} of {row['pins']} pins, median {row['median_days']:.0f} "
            f"days" + (f", at {top}" if top else "")
        )
    verdict = (
        "survives" if row["survives"] else "would not survive"
    ) + f" {horizon_days:.0f} days ({row['survival_at_horizon']:.0%})"
    note = " Needs the next key generated in advance." if row["strategy"] == "leaf+backup" else ""
    return f"{protection.scope} pin, {protection.refuses}; {outcome}; {verdict}.{note}"


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
