"""Replaying history: when would each pinning strategy have broken the app?

For every host and every pin time, a strategy (see :mod:`pinlab.survival.rules`) derives what
the app pins from the chain observed then; the pins hold through the host's later
observations up to the first chain they reject (``broken_at``), or to the end of the data
(censored). That first rejection is found per run of equal chains, not per observation
(:class:`_Runs`), so a replay's cost grows linearly with a timeline's length.

Under **verified** semantics each chain is first validated as a
client of that moment would have (at the observation's time, against the trust store of that
time); an observation whose chain fails validation would fail whatever the pins, so it
neither breaks nor confirms a pin and is skipped. Under **presented** semantics the chain as
the server sent it is used.

:class:`pinlab.survival.PinSurvival` turns a replay into survival curves per strategy.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pinlab.certs import Certificate
from pinlab.errors import MalformedCertificateError
from pinlab.history import leaf_sightings
from pinlab.pins import Semantics
from pinlab.survival.rules import (
    SHA1_ERA_END,
    STRATEGIES,
    CaCatalog,
    Matcher,
    ObservedChain,
    ScanAnchors,
    Strategy,
    next_leaf_keys,
    strategy,
)
from pinlab.verify import TrustStore, verify_chain

__all__ = ["REPLAY_COLUMNS", "TrustStores", "checkability", "observed_chains", "replay"]

REPLAY_COLUMNS = [
    "host", "port", "sni", "lineage", "strategy", "semantics", "pinned_at", "broken_at",
    "days_survived", "broken", "pinned_leaf", "checks", "legacy", "last_checked_at",
    "death_lower_days", "death_upper_days", "unchecked",
]  # fmt: skip
"""One row per pin. ``days_survived`` runs to ``broken_at`` (the first observation the pins
rejected) or, censored, to ``last_checked_at`` (the last observation that checked the pins,
never later; the pin time when none did). A death lies between the last passing and the
first failing observation, narrowed by certificate dates: by the old leaf's notAfter
(assuming servers do not serve expired leaves), and by the new leaf's notBefore where that
is not later (the new leaf can then be the old one's successor; otherwise a leaf that was
not observed came between):
``death_lower_days``/``death_upper_days``, empty when censored. ``unchecked`` counts the
observations in the pin's follow-up whose chain could not be checked (it did not validate,
under verified semantics)."""

TrustStores = TrustStore | Callable[[datetime], TrustStore]


def observed_chains(
    observations: pd.DataFrame,
    certificates: pd.DataFrame,
    *,
    trust_stores: TrustStores,
    validate_at: datetime | None = None,
    scans: pd.DataFrame | None = None,
) -> list[ObservedChain]:
    """The ok observations of a store as :class:`ObservedChain`, validated at their time.

    ``trust_stores`` is one store, or a function giving the store in force at a time
    (:func:`pinlab.truststores.TrustStoreHistory.at`). ``validate_at`` validates every
    chain at that one time instead: for the rotation lab, whose observations carry a
    virtual clock while Pebble dates certificates by the real one. With the store's
    ``scans``, a scan that recorded its own trust anchors and validation time (the lab's)
    is validated that way, whatever the other arguments say.
    """
    store_at = trust_stores if callable(trust_stores) else (lambda _at: trust_stores)
    parsed = _parse_certificates(certificates)
    sightings = leaf_sightings(observations, certificates)
    lineages = {
        (host, port, sni, leaf): lineage
        for host, port, sni, leaf, lineage in zip(
            sightings["host"], sightings["port"], sightings["sni"], sightings["leaf"],
            sightings["lineage"], strict=True,
        )
    }  # fmt: skip
    own_validation = _scan_validation(scans, parsed)
    restated = _restated_dates(certificates, parsed)
    chains: list[ObservedChain] = []
    ok = observations[observations["status"] == "ok"]
    for row in ok.to_dict("records"):
        digests = list(row["chain"]) if row["chain"] is not None else []
        if not digests or any(d not in parsed for d in digests):
            continue
        presented = tuple(parsed[d] for d in digests)
        at = pd.Timestamp(row["observed_at"]).to_pydatetime()
        sni = row["sni"] if isinstance(row["sni"], str) else ""
        when, store = own_validation.get(row.get("scan_id"), (None, None))
        if when is None or store is None:
            when = validate_at or at
            store = store_at(when)
        verification = verify_chain(
            presented, hostname=sni or row["host"], at=when, trust_store=store
        )
        verified, legacy = verification.path or None, False
        if verified is None and when < SHA1_ERA_END and _uses_sha1(presented):
            verified = _legacy_path(presented, store, when)
            legacy = verified is not None
        lineage = lineages.get((row["host"], row["port"], sni, digests[0]), "")
        chains.append(
            ObservedChain(
                row["host"], int(row["port"]), sni, at, presented, verified, legacy, lineage,
                restated.get(digests[0]),
            )
        )  # fmt: skip
    return sorted(chains, key=lambda c: (c.host, c.port, c.sni, c.lineage, c.observed_at))


def _scan_validation(
    scans: pd.DataFrame | None, parsed: dict[str, Certificate]
) -> dict[Any, tuple[datetime, TrustStore]]:
    """scan_id -> (time, trust store) for scans that say how their chains validate."""
    if scans is None or scans.empty:
        return {}
    chosen: dict[Any, tuple[datetime, TrustStore]] = {}
    for scan_id, text in zip(scans["scan_id"], scans["parameters"], strict=True):
        recorded = ScanAnchors.from_parameters(text)
        if recorded is None:
            continue
        anchors = [parsed[d] for d in recorded.trust_anchors if d in parsed]
        if anchors:
            name = f"anchors of scan {scan_id}"
            store = TrustStore.from_certificates(anchors, name=name)
            chosen[scan_id] = (recorded.validated_at, store)
    return chosen


def _restated_dates(
    certificates: pd.DataFrame, parsed: dict[str, Certificate]
) -> dict[str, tuple[datetime, datetime]]:
    """sha256 -> (notBefore, notAfter) where the store dates a certificate otherwise than
    its DER does (the rotation lab's virtual clock)."""
    if certificates.empty or "not_before" not in certificates:
        return {}
    restated: dict[str, tuple[datetime, datetime]] = {}
    columns = (certificates["sha256"], certificates["not_before"], certificates["not_after"])
    for digest, nb, na in zip(*columns, strict=True):
        own = parsed.get(str(digest))
        if own is None or pd.isna(nb) or pd.isna(na):
            continue
        dates = (pd.Timestamp(nb).to_pydatetime(), pd.Timestamp(na).to_pydatetime())
        if dates != (own.not_before, own.not_after):
            restated[str(digest)] = dates
    return restated


def _parse_certificates(certificates: pd.DataFrame) -> dict[str, Certificate]:
    parsed: dict[str, Certificate] = {}
    for digest, der in zip(certificates["sha256"], certificates["der"], strict=True):
        try:
            parsed[str(digest)] = Certificate.from_der(bytes(der))
        except MalformedCertificateError:
            continue
    return parsed


def _uses_sha1(chain: Sequence[Certificate]) -> bool:
    for certificate in chain:
        try:
            algorithm = certificate.x509.signature_hash_algorithm
        except UnsupportedAlgorithm:
            continue
        if isinstance(algorithm, hashes.SHA1):
            return True
    return False


def _legacy_path(
    chain: Sequence[Certificate], store: TrustStore, at: datetime
) -> tuple[Certificate, ...] | None:
    """Leaf to anchor by name and signature linkage, validity checked at ``at``.

    What clients accepted in the SHA-1 era and today's verifier refuses; no hostname or
    extension checks, so the result is marked ``legacy`` by the caller.
    """
    candidates = list(chain[1:]) + list(store.roots)
    path = [chain[0]]
    while len(path) <= 8:
        current = path[-1]
        if not current.not_before <= at <= current.not_after:
            return None
        if store.contains(current):
            return tuple(path)
        issuer = next(
            (c for c in candidates if c.subject == current.issuer and _signed_by(current, c)),
            None,
        )
        if issuer is None or issuer in path:
            return None
        path.append(issuer)
    return None


def _signed_by(certificate: Certificate, issuer: Certificate) -> bool:
    """Whether ``issuer``'s key signed ``certificate``, SHA-1 included.

    cryptography's ``verify_directly_issued_by`` refuses SHA-1 signatures, which is right
    for validation today and wrong for replaying 2015: the key does the check here.
    """
    child = certificate.x509
    algorithm = child.signature_hash_algorithm
    try:
        key = issuer.x509.public_key()
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            child.verify_directly_issued_by(issuer.x509)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def replay(
    chains: Sequence[ObservedChain],
    *,
    strategies: Iterable[str | Strategy] | None = None,
    semantics: Iterable[Semantics] = (Semantics.VERIFIED, Semantics.PRESENTED),
    release_every: float | None = None,
    catalog: CaCatalog | None = None,
) -> pd.DataFrame:
    """One row per (host, strategy, semantics, pin time): when the pins broke, if they did.

    Pin times are every observation, or with ``release_every`` a release calendar: every
    that many days from the host's first observation, pinning what was served last before
    the release. ``catalog`` (for ``ca-set``) defaults to the CA keys of ``chains``; pass
    one built from a wider population when replaying a few hosts of it. ``strategies`` are
    names of :data:`STRATEGIES` or :class:`Strategy` recipes of one's own (recommend's
    backup-holding pin sets).
    """
    chosen = [s if isinstance(s, Strategy) else strategy(s) for s in (strategies or STRATEGIES)]
    modes = list(semantics)
    catalog = catalog if catalog is not None else CaCatalog.build(chains)
    rows: list[dict[str, Any]] = []
    for timeline in _timelines(chains):
        runs = {mode: _Runs(timeline, mode) for mode in modes}
        backups = next_leaf_keys(timeline)
        for pinned_at, index in _pin_times(timeline, release_every):
            for mode in modes:
                for chosen_strategy in chosen:
                    matcher = chosen_strategy.derive(
                        timeline, index, mode, catalog, next_leaf_keys=backups
                    )
                    if matcher is None:
                        continue
                    pinned = timeline[index]
                    followed = runs[mode].follow(index, pinned_at, matcher)
                    rows.append({
                        "host": pinned.host, "port": pinned.port, "sni": pinned.sni,
                        "lineage": pinned.lineage,
                        "strategy": chosen_strategy.name, "semantics": mode.value,
                        "pinned_at": pinned_at, "pinned_leaf": pinned.presented[0].sha256,
                        "legacy": pinned.legacy, **followed.row(pinned, pinned_at),
                    })  # fmt: skip
    frame = pd.DataFrame.from_records(rows, columns=REPLAY_COLUMNS)
    for column in ("pinned_at", "broken_at", "last_checked_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


@dataclass(frozen=True, slots=True)
class _Followed:
    """What happened to one pin after it was taken."""

    checks: int
    unchecked: int
    last_pass: ObservedChain | None
    broke: ObservedChain | None

    def row(self, pinned: ObservedChain, pinned_at: datetime) -> dict[str, Any]:
        def days(at: datetime) -> float:
            return max((at - pinned_at).total_seconds(), 0) / 86400

        lower = upper = last_checked = None
        if self.broke is not None:
            last_checked = self.broke.observed_at
            passed = self.last_pass.observed_at if self.last_pass else pinned_at
            old_leaf = self.last_pass or pinned
            # The old leaf's notAfter: a server does not serve an expired leaf (an
            # assumption: some do). The new leaf's notBefore, where it is not later than
            # that: the new leaf can then be the old one's successor; later, a leaf not
            # observed came between (sparse observations) and only the checks bound the
            # switch. Dates are the store's (the lab's are on its virtual clock).
            latest = min(self.broke.observed_at, max(old_leaf.leaf_not_after, passed))
            issued = self.broke.leaf_not_before
            lower = days(max(passed, issued) if issued <= latest else passed)
            upper = days(latest)
        else:
            last_checked = self.last_pass.observed_at if self.last_pass else pinned_at
        return {
            "broken_at": self.broke.observed_at if self.broke else None,
            "days_survived": days(last_checked),
            "broken": self.broke is not None,
            "checks": self.checks,
            "last_checked_at": last_checked,
            "death_lower_days": lower,
            "death_upper_days": upper,
            "unchecked": self.unchecked,
        }


class _Runs:
    """A timeline's checkable observations under one semantics, in runs of equal chains.

    Strategies pin no expiry, so whether pins accept a chain depends on the chain alone:
    one verdict per run. The first run at or after run ``r`` that a pin set rejects obeys
    the backward recurrence ``F(r) = r`` if the pin set rejects run ``r``, else
    ``F(r + 1)`` (``F`` past the last run: never). It is evaluated lazily and memoised per
    pin set, so a pin set meets each run at most once, and every pin taken with that pin
    set reads its answer from the run its follow-up starts in. With counts of the
    observations between, a replay costs the timeline's length plus (pin sets x runs)
    verdicts, not (pin times x later observations): linear for a host renewing now and
    then, however often it is observed.
    """

    def __init__(self, timeline: Sequence[ObservedChain], mode: Semantics) -> None:
        self.timeline = timeline
        self.mode = mode
        self.times = [observed.observed_at for observed in timeline]
        self.checked = [
            i for i, observed in enumerate(timeline) if observed.chain(mode) is not None
        ]
        self.run_of: list[int] = []  # the run of each checked observation
        self.run_start: list[int] = []  # each run's first checked observation (position)
        previous: tuple[Certificate, ...] | None = None
        for position, index in enumerate(self.checked):
            chain = timeline[index].chain(mode)
            if chain != previous:
                self.run_start.append(position)
                previous = chain
            self.run_of.append(len(self.run_start) - 1)
        self.verdicts: dict[Matcher, dict[int, int]] = {}

    def follow(self, index: int, pinned_at: datetime, matcher: Matcher) -> _Followed:
        """What happened to a pin taken at ``timeline[index]`` (time ``pinned_at``): the
        observations after it, up to the first one the pins reject."""
        start = bisect.bisect_right(self.times, pinned_at, lo=index + 1)
        first = bisect.bisect_left(self.checked, start)  # first checked position after
        fail = len(self.checked)
        if first < fail:
            rejected = self._first_rejected(matcher, self.run_of[first])
            if rejected < len(self.run_start):
                fail = max(first, self.run_start[rejected])
        broke = self.timeline[self.checked[fail]] if fail < len(self.checked) else None
        end = self.checked[fail] if broke is not None else len(self.timeline)
        return _Followed(
            checks=fail - first + (broke is not None),
            unchecked=(end - start) - (fail - first),
            last_pass=self.timeline[self.checked[fail - 1]] if fail > first else None,
            broke=broke,
        )

    def _first_rejected(self, matcher: Matcher, run: int) -> int:
        """``F(run)`` for ``matcher``'s pin set (see the class)."""
        known = self.verdicts.setdefault(matcher, {})
        visited: list[int] = []
        found = len(self.run_start)
        while run < len(self.run_start):
            if run in known:
                found = known[run]
                break
            visited.append(run)
            observed = self.timeline[self.checked[self.run_start[run]]]
            chain = observed.chain(self.mode)
            if chain is None or not matcher.accepts(chain, observed.observed_at):
                found = run
                break
            run += 1
        for seen in visited:
            known[seen] = found
        return found


def _timelines(chains: Sequence[ObservedChain]) -> list[list[ObservedChain]]:
    """Observations grouped by (host, port, SNI, lineage), each in time order.

    Lineages matter: a host serving RSA and ECDSA leaves side by side gives each client one
    of them, always the same, so an RSA pin is never confronted with the ECDSA leaf.
    """
    timelines: dict[tuple[str, int, str, str], list[ObservedChain]] = {}
    for observed in chains:
        key = (observed.host, observed.port, observed.sni, observed.lineage)
        timelines.setdefault(key, []).append(observed)
    return [sorted(t, key=lambda c: c.observed_at) for _, t in sorted(timelines.items())]


def _pin_times(
    timeline: Sequence[ObservedChain], release_every: float | None
) -> list[tuple[datetime, int]]:
    if release_every is None:
        return [(observed.observed_at, i) for i, observed in enumerate(timeline)]
    if release_every <= 0:
        raise ValueError("release_every must be a positive number of days")
    times, release, index = [], timeline[0].observed_at, 0
    while release <= timeline[-1].observed_at:
        while index + 1 < len(timeline) and timeline[index + 1].observed_at <= release:
            index += 1
        times.append((release, index))
        release += timedelta(days=release_every)
    return times


def checkability(observations: pd.DataFrame, chains: Sequence[ObservedChain]) -> pd.DataFrame:
    """Observations by what a replay could do with them: ``reason`` and ``observations``.

    ``validated`` (a path to a trust anchor, ``legacy`` ones among them), ``did not
    validate`` (checked under presented semantics only), ``certificates missing or
    unparsable``, and one row per failed connection status (never checked at all).
    """
    statuses = observations["status"].value_counts()
    ok = int(statuses.get("ok", 0))
    validated = sum(c.verified is not None for c in chains)
    rows = [
        ("validated", validated),
        ("  of which SHA-1-era legacy paths", sum(c.legacy for c in chains)),
        ("did not validate", len(chains) - validated),
        ("certificates missing or unparsable", ok - len(chains)),
    ]
    rows += [(f"no chain: {status}", int(n)) for status, n in statuses.items() if status != "ok"]
    return pd.DataFrame(rows, columns=["reason", "observations"])
