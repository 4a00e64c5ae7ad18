"""Forward scenarios: the hosts' observed habits, replayed under tomorrow's rules.

From the observed history of each host (timeline of :class:`ObservedChain`) a
:class:`HostProfile` keeps what the host does at renewal: how often it reuses its key, how
long its certificates last, and which issuer and root it is served under. A
:class:`Scenario` then changes the rules around it:

- **shorter validity**: CA/Browser Forum ballot SC-081 caps TLS certificates at 200 days
  from 2026-03-15, 100 days from 2027-03-15 and 47 days from 2029-03-15 (398 days since
  2020-09-01 before it); and 6-day certificates (Let's Encrypt's short-lived profile);
- **random intermediate rotation**: since June 2024 Let's Encrypt issues each certificate
  from an intermediate drawn among several (R10-R14 for RSA, E5-E9 for ECDSA). The caller
  loads the real certificates (``../shared/data/le-hierarchy``) and passes them in.

:func:`synthesise` writes future timelines: a host renews at ``renew_at`` (2/3) of the
validity in force, keeps its key with its observed reuse rate, and is issued under its own
intermediate or one drawn from the scenario's set; :func:`forward_replay` runs the existing
:func:`~pinlab.survival.replay` on them, and :func:`scenario_summary` compares survival per
strategy across scenarios.

Synthetic leaves carry a P-256 key whatever the host's key type (pins only see the SPKI
digest; the host's key family still chooses RSA or ECDSA intermediates) and are signed by a
fixed stand-in key, not by the real intermediate: nobody holds Let's Encrypt's keys. The
verified path (leaf, intermediate, root) is therefore set by construction, not by
validation. Every draw comes from the ``rng`` argument, so a seed reproduces a run exactly.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from pinlab.certs import Certificate
from pinlab.pins import Semantics
from pinlab.survival import ObservedChain, PinSurvival, replay

__all__ = [
    "CURRENT_RULES",
    "LE_2024_INTERMEDIATES",
    "SC_081",
    "SIX_DAY",
    "HostProfile",
    "Scenario",
    "ValiditySchedule",
    "forward_replay",
    "host_profiles",
    "profiles_frame",
    "scenario_summary",
    "select_intermediates",
    "standard_scenarios",
    "synthesise",
]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ValiditySchedule:
    """The longest validity (days) a CA may issue, by issuance date: ``(from, days)`` steps."""

    name: str
    steps: tuple[tuple[datetime, float], ...]

    def max_days(self, at: datetime) -> float:
        """The cap in force at ``at`` (infinite before the first step)."""
        cap = float("inf")
        for since, days in self.steps:
            if at >= since:
                cap = days
        return cap


CURRENT_RULES = ValiditySchedule("398-day", ((_utc("2020-09-01"), 398.0),))
"""398 days, the cap in force since 2020-09-01 (CA/B Forum ballot SC31, root programs)."""
SC_081 = ValiditySchedule(
    "sc-081",
    (
        (_utc("2020-09-01"), 398.0),
        (_utc("2026-03-15"), 200.0),
        (_utc("2027-03-15"), 100.0),
        (_utc("2029-03-15"), 47.0),
    ),
)
"""CA/B Forum ballot SC-081: 200 days from 2026-03-15, 100 from 2027-03-15, 47 from 2029."""
SIX_DAY = ValiditySchedule("six-day", ((_utc("2000-01-01"), 6.0),))
"""6-day certificates for every host (Let's Encrypt's short-lived certificates)."""

LE_2024_INTERMEDIATES = ("R10", "R11", "R12", "R13", "R14", "E5", "E6", "E7", "E8", "E9")
"""Let's Encrypt's intermediates of the 2024 hierarchy, drawn at random since June 2024."""


def select_intermediates(
    certificates: Iterable[Certificate],
    names: Sequence[str] = LE_2024_INTERMEDIATES,
    *,
    issued_by: str | None = None,
) -> tuple[Certificate, ...]:
    """The CA certificates whose common name is in ``names`` (optionally: issuer's CN).

    One certificate per key: a cross-signed twin of a kept intermediate is dropped, so a
    draw is uniform over keys.
    """
    chosen: dict[bytes, Certificate] = {}
    for certificate in certificates:
        if not certificate.is_ca or _common_name(certificate.x509.subject) not in names:
            continue
        if issued_by is not None and _common_name(certificate.x509.issuer) != issued_by:
            continue
        chosen.setdefault(certificate.spki_sha256, certificate)
    return tuple(sorted(chosen.values(), key=lambda c: _common_name(c.x509.subject)))


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


@dataclass(frozen=True, slots=True)
class HostProfile:
    """What one host (one lineage) was seen doing at renewal."""

    host: str
    port: int
    sni: str
    lineage: str
    key_reuse_rate: float
    """Share of leaf changes that kept the key (population rate when the host never renewed)."""
    renewals: int
    """Leaf changes observed: how much :attr:`key_reuse_rate` rests on."""
    validity_days: float
    """Median validity of the host's leaves."""
    leaf: Certificate = field(repr=False)
    intermediate: Certificate = field(repr=False)
    root: Certificate = field(repr=False)
    """The last verified path's issuer and anchor: the host's own hierarchy."""


def host_profiles(chains: Sequence[ObservedChain]) -> list[HostProfile]:
    """One profile per (host, port, SNI, lineage) with a verified path of 3 or more.

    Reuse is counted over distinct leaves in order of first sighting; a host that never
    changed leaf gets the population's pooled rate (0 when nobody renewed).
    """
    timelines: dict[tuple[str, int, str, str], list[ObservedChain]] = {}
    for observed in sorted(chains, key=lambda c: c.observed_at):
        timelines.setdefault((observed.host, observed.port, observed.sni, observed.lineage), [])
        timelines[(observed.host, observed.port, observed.sni, observed.lineage)].append(observed)
    counted: list[tuple[tuple[str, int, str, str], int, int, list[ObservedChain]]] = []
    for key, timeline in sorted(timelines.items()):
        leaves: dict[str, Certificate] = {}
        for observed in timeline:
            leaves.setdefault(observed.presented[0].sha256, observed.presented[0])
        ordered = list(leaves.values())
        reused = sum(a.spki_sha256 == b.spki_sha256 for a, b in itertools.pairwise(ordered))
        counted.append((key, reused, len(ordered) - 1, timeline))
    total_changes = sum(changes for _, _, changes, _ in counted)
    pooled = sum(reused for _, reused, _, _ in counted) / total_changes if total_changes else 0.0
    profiles = []
    for (host, port, sni, lineage), reused, changes, timeline in counted:
        paths = [c.verified for c in timeline if c.verified is not None and len(c.verified) >= 3]
        if not paths:
            continue
        validity = [
            (c.presented[0].not_after - c.presented[0].not_before).total_seconds() / 86400
            for c in timeline
        ]
        last = paths[-1]
        profiles.append(
            HostProfile(
                host, port, sni, lineage,
                key_reuse_rate=reused / changes if changes else pooled, renewals=changes,
                validity_days=float(np.median(validity)),
                leaf=last[0], intermediate=last[1], root=last[-1],
            )
        )  # fmt: skip
    return profiles


def profiles_frame(profiles: Sequence[HostProfile]) -> pd.DataFrame:
    """The profiles as a tidy table (issuer and root by subject)."""
    return pd.DataFrame([
        {
            "host": p.host, "port": p.port, "sni": p.sni, "lineage": p.lineage,
            "key_reuse_rate": p.key_reuse_rate, "renewals": p.renewals,
            "validity_days": p.validity_days, "key": p.leaf.key_label,
            "intermediate": p.intermediate.subject, "root": p.root.subject,
        }
        for p in profiles
    ])  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scenario:
    """Rules a host population renews under: a validity cap and where issuers come from."""

    name: str
    validity: ValiditySchedule = CURRENT_RULES
    intermediates: tuple[Certificate, ...] = ()
    """Drawn at random at each issuance; empty: each host keeps its own intermediate."""
    roots: tuple[Certificate, ...] = ()
    """Anchors for :attr:`intermediates` (matched by the intermediate's issuer name)."""
    renew_at: float = 2 / 3
    """Renewal at this fraction of the validity (ACME clients' default is 2/3)."""

    def __post_init__(self) -> None:
        if not 0 < self.renew_at <= 1:
            raise ValueError("renew_at is a fraction of the validity in (0, 1]")
        for intermediate in self.intermediates:
            if not any(r.x509.subject == intermediate.x509.issuer for r in self.roots):
                raise ValueError(
                    f"scenario {self.name!r}: no root among `roots` issued "
                    f"{intermediate.subject} (pass its issuer's certificate)"
                )


def standard_scenarios(
    intermediates: Sequence[Certificate], roots: Sequence[Certificate]
) -> list[Scenario]:
    """Today's rules, SC-081, 6-day certificates; each also with random rotation."""
    pool, anchors = tuple(intermediates), tuple(roots)
    scenarios = []
    for schedule in (CURRENT_RULES, SC_081, SIX_DAY):
        scenarios.append(Scenario(schedule.name, schedule))
        scenarios.append(Scenario(f"{schedule.name}+rotation", schedule, pool, anchors))
    return scenarios


_SIGNER = ed25519.Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"pinlab forward-scenario stand-in signer").digest()
)


def synthesise(
    profile: HostProfile,
    scenario: Scenario,
    *,
    start: datetime,
    end: datetime,
    rng: np.random.Generator,
) -> list[ObservedChain]:
    """The host's chains from ``start`` to ``end``: one observation per issuance."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (UTC)")
    pool = _pool_for(profile, scenario)
    chains, at, key = [], start, None
    while at <= end:
        validity = min(profile.validity_days, scenario.validity.max_days(at))
        if key is None or rng.random() >= profile.key_reuse_rate:
            key = ec.derive_private_key(int(rng.integers(1, 2**62)), ec.SECP256R1()).public_key()
        if pool:
            intermediate = pool[int(rng.integers(len(pool)))]
            root = next(r for r in scenario.roots if r.x509.subject == intermediate.x509.issuer)
        else:
            intermediate, root = profile.intermediate, profile.root
        leaf = _leaf(profile, key, intermediate, at, validity, int(rng.integers(1, 2**62)))
        chains.append(
            ObservedChain(
                profile.host, profile.port, profile.sni, at, (leaf, intermediate),
                (leaf, intermediate, root), lineage=profile.lineage,
            )
        )  # fmt: skip
        at += timedelta(days=max(validity * scenario.renew_at, 1 / 24))
    return chains


def _pool_for(profile: HostProfile, scenario: Scenario) -> tuple[Certificate, ...]:
    family = _family(profile.leaf)
    same = tuple(c for c in scenario.intermediates if _family(c) == family)
    return same or scenario.intermediates


def _family(certificate: Certificate) -> str:
    return "RSA" if certificate.key_type.startswith("RSA") else certificate.key_type


def _leaf(
    profile: HostProfile,
    key: ec.EllipticCurvePublicKey,
    intermediate: Certificate,
    at: datetime,
    validity_days: float,
    serial: int,
) -> Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, profile.sni or profile.host)])
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(intermediate.x509.subject)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(at)
        .not_valid_after(at + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(_SIGNER, algorithm=None)
    )
    return Certificate.from_cryptography(built)


def forward_replay(
    profiles: Sequence[HostProfile],
    scenarios: Sequence[Scenario],
    *,
    start: datetime,
    end: datetime,
    rng: np.random.Generator,
    release_every: float | None = 30.0,
    strategies: Iterable[str] | None = None,
    semantics: Iterable[Semantics] = (Semantics.VERIFIED,),
) -> pd.DataFrame:
    """:func:`~pinlab.survival.replay` of every scenario's synthetic timelines.

    The replay's columns plus ``scenario``; pins are taken on a release calendar (every
    ``release_every`` days, None: at every issuance).
    """
    chosen, modes = list(strategies) if strategies else None, list(semantics)
    frames = []
    for scenario in scenarios:
        chains = [
            chain
            for profile in profiles
            for chain in synthesise(profile, scenario, start=start, end=end, rng=rng)
        ]
        replayed = replay(chains, strategies=chosen, semantics=modes, release_every=release_every)
        frames.append(replayed.assign(scenario=scenario.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scenario_summary(replayed: pd.DataFrame, *, baseline: str | None = None) -> pd.DataFrame:
    """Kaplan-Meier summary per (scenario, strategy, semantics).

    With ``baseline`` (a scenario name), ``median_vs_baseline`` is each median divided by
    the baseline's median for the same strategy and semantics.
    """
    tables = []
    for name, group in replayed.groupby("scenario", sort=False):
        # forward_replay already pins on its release calendar (or at every observation
        # when asked to): the fit must not thin the rows again.
        summary = PinSurvival(release_every=None).fit(group).summary
        tables.append(summary.assign(scenario=name))
    if not tables:
        return pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    table = table[["scenario", *[c for c in table.columns if c != "scenario"]]]
    if baseline is not None:
        keys = ["strategy", "semantics"]
        reference = table.loc[table["scenario"] == baseline, [*keys, "median_days"]]
        merged = table.merge(reference, on=keys, how="left", suffixes=("", "_baseline"))
        ratio = merged["median_days"] / merged["median_days_baseline"]
        both_infinite = np.isinf(merged["median_days"]) & np.isinf(merged["median_days_baseline"])
        table["median_vs_baseline"] = ratio.mask(both_infinite, 1.0).to_numpy()
    return table
