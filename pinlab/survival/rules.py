"""The rule book both survival engines read: strategies, CA organisations, scan anchors.

- **Strategies.** Each is one :data:`STRATEGIES` entry: a name and a :class:`KeyRecipe`
  saying what it pins (the whole leaf, keys at chain positions, the next leaf key, the CA
  organisation's keys). The Python engine turns a recipe into a :class:`Matcher` over real
  :class:`~pinlab.pins.PinSet` objects (pins checked exactly as ``pinlab check`` does;
  ``cert`` compares the whole leaf, as urllib3's ``assert_fingerprint`` does); the DuckDB
  engine (:mod:`pinlab.survival.masks`) turns the same recipe into key bit masks.
- **Semantics.** Which chain a strategy reads, at the pin time and later: the verified path
  (leaf to trust anchor) or the chain as presented. Under presented semantics ``root-spki``
  pins the top certificate the server sent, since nothing else was seen.
- **CA organisation** of a name: :func:`pinlab.history.rules.ca_organisation`, the ledger's
  rule, so ``ca_org_changed`` and ``ca-set`` group CAs alike.
- **Scan anchors**: how a scan (the rotation lab's) records the trust anchors and the time
  its chains validate at, written by the lab and read by both engines (:class:`ScanAnchors`).
- **Host names**: :func:`pinlab.names.name_matches` (and its SQL rendering).
- **Engines** declare what they do not support as data (:data:`ENGINES`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pinlab.certs import Certificate
from pinlab.errors import PinlabError
from pinlab.history.rules import ca_organisation
from pinlab.names import name_matches
from pinlab.pins import Pin, PinSet, Semantics

__all__ = [
    "ENGINES",
    "SHA1_ERA_END",
    "STRATEGIES",
    "CaCatalog",
    "Engine",
    "KeyRecipe",
    "Matcher",
    "ObservedChain",
    "ScanAnchors",
    "Strategy",
    "UnknownStrategyError",
    "name_matches",
    "next_leaf_keys",
    "organisation",
    "strategy",
]

SHA1_ERA_END = datetime.fromisoformat("2017-01-01T00:00:00+00:00")
"""Before this, clients accepted SHA-1 signatures that today's verifier refuses."""


class UnknownStrategyError(PinlabError, ValueError):
    """A strategy name that is not in :data:`STRATEGIES`."""


@dataclass(frozen=True, slots=True)
class ObservedChain:
    """One ok observation of a host: the chain as sent and the path validation built."""

    host: str
    port: int
    sni: str
    observed_at: datetime
    presented: tuple[Certificate, ...]
    verified: tuple[Certificate, ...] | None
    """Leaf to trust anchor at ``observed_at``; None when validation failed."""
    legacy: bool = False
    """The path was built by name and signature linkage (SHA-1 era), not by today's verifier."""
    lineage: str = ""
    """The leaf's lineage (:mod:`pinlab.history`): a client keeps meeting one key type."""
    leaf_dates: tuple[datetime, datetime] | None = None
    """The leaf's notBefore and notAfter as the store dates it, where that is not the
    certificate's own (the rotation lab restates them on its virtual clock)."""

    @property
    def leaf_not_before(self) -> datetime:
        """The leaf's notBefore on the observations' clock."""
        return self.leaf_dates[0] if self.leaf_dates else self.presented[0].not_before

    @property
    def leaf_not_after(self) -> datetime:
        """The leaf's notAfter on the observations' clock."""
        return self.leaf_dates[1] if self.leaf_dates else self.presented[0].not_after

    def chain(self, semantics: Semantics) -> tuple[Certificate, ...] | None:
        """The chain a client with these semantics checks pins against (None: no connection)."""
        return self.verified if semantics is Semantics.VERIFIED else self.presented


class Matcher(Protocol):
    """What an app holds after pinning: it accepts a chain or not."""

    def accepts(self, chain: Sequence[Certificate], at: datetime) -> bool:
        """Whether the pinned app accepts ``chain`` (already validated when verified)."""
        ...


@dataclass(frozen=True, slots=True)
class PinSetMatcher:
    """SPKI pins, checked by :meth:`PinSet.check`."""

    pin_set: PinSet
    semantics: Semantics

    def accepts(self, chain: Sequence[Certificate], at: datetime) -> bool:
        return self.pin_set.check(chain, at=at, semantics=self.semantics).passed


@dataclass(frozen=True, slots=True)
class CertificateMatcher:
    """The whole leaf certificate's SHA-256 (urllib3 ``assert_fingerprint``)."""

    fingerprint: str

    def accepts(self, chain: Sequence[Certificate], at: datetime) -> bool:
        return bool(chain) and chain[0].sha256 == self.fingerprint


@dataclass(slots=True)
class CaCatalog:
    """Issuer keys seen in the data, by CA organisation, with the time each was first seen."""

    first_seen: dict[str, dict[bytes, datetime]] = field(default_factory=dict)

    @classmethod
    def build(cls, chains: Sequence[ObservedChain]) -> CaCatalog:
        """Index every CA certificate of every chain (as presented and as verified)."""
        catalog = cls()
        for observed in chains:
            for certificate in observed.presented + (observed.verified or ()):
                if certificate.is_ca:
                    catalog.add(certificate, observed.observed_at)
        return catalog

    def add(self, certificate: Certificate, at: datetime) -> None:
        """Record that ``certificate``'s key was seen at ``at``."""
        keys = self.first_seen.setdefault(organisation(certificate.subject), {})
        known = keys.get(certificate.spki_sha256)
        if known is None or at < known:
            keys[certificate.spki_sha256] = at

    def keys_of(self, organisation_name: str, *, until: datetime) -> list[bytes]:
        """Keys of ``organisation_name``'s CA certificates seen at or before ``until``."""
        keys = self.first_seen.get(organisation_name, {})
        return [key for key, seen in keys.items() if seen <= until]


def organisation(distinguished_name: str) -> str:
    """The CA organisation of an RFC 4514 name, as the ledger groups CAs ('' when none).

    :func:`pinlab.history.rules.ca_organisation`: the certificate's first O (RFC 4514 writes
    it last), multi-valued RDNs and escapes handled.
    """
    return ca_organisation(distinguished_name) or ""


@dataclass(frozen=True, slots=True)
class KeyRecipe:
    """What a strategy pins from the chain at the pin time, as both engines compute it.

    Positions count from the leaf (0) in the chain the semantics gives; -1 is the last
    certificate (the trust anchor of a verified path, the top of a presented chain).
    """

    whole_leaf: bool = False
    """Pin the leaf certificate itself (its SHA-256), not keys."""
    positions: tuple[int, ...] = ()
    """Pin the keys at these positions; a position the chain does not reach pins nothing."""
    from_position: int | None = None
    """Pin every key from this position to the end of the chain."""
    next_leaf_key: bool = False
    """Also pin the next different leaf key the host really served (a planned backup)."""
    organisation_keys: bool = False
    """Also pin every CA key of the leaf issuer's organisation seen by the pin time."""


@dataclass(frozen=True, slots=True)
class Strategy:
    """A pinning strategy: a name (the replay's ``strategy`` column) and its recipe."""

    name: str
    recipe: KeyRecipe
    description: str

    def derive(
        self,
        timeline: Sequence[ObservedChain],
        index: int,
        semantics: Semantics,
        catalog: CaCatalog,
        *,
        next_leaf_keys: Sequence[bytes | None] | None = None,
    ) -> Matcher | None:
        """The matcher for a pin taken at ``timeline[index]``; None if nothing to pin.

        ``next_leaf_keys`` (:func:`next_leaf_keys` of ``timeline``) spares ``leaf+backup``
        a walk through the later observations at every pin time.
        """
        observed = timeline[index]
        chain = observed.chain(semantics)
        if not chain:
            return None
        recipe = self.recipe
        if recipe.whole_leaf:
            return CertificateMatcher(chain[0].sha256)
        keys: list[bytes] = [
            chain[position].spki_sha256
            for position in recipe.positions
            if -len(chain) <= position < len(chain)
        ]
        if recipe.from_position is not None:
            keys += [c.spki_sha256 for c in chain[recipe.from_position :]]
        if recipe.next_leaf_key and keys:
            leaf_key = chain[0].spki_sha256
            presented = observed.presented[0].spki_sha256 if observed.presented else None
            if next_leaf_keys is not None and presented == leaf_key:
                known = next_leaf_keys[index]
                keys += [known] if known is not None else []
            else:
                keys += _next_leaf_key(timeline, index, leaf_key)
        if recipe.organisation_keys:
            keys += catalog.keys_of(organisation(chain[0].issuer), until=observed.observed_at)
        if not keys:
            return None
        unique = sorted(set(keys))
        return PinSetMatcher(PinSet.of(Pin("sha256", key) for key in unique), semantics)


def _next_leaf_key(timeline: Sequence[ObservedChain], index: int, leaf_key: bytes) -> list[bytes]:
    for later in timeline[index + 1 :]:
        if later.presented and later.presented[0].spki_sha256 != leaf_key:
            return [later.presented[0].spki_sha256]
    return []


def next_leaf_keys(timeline: Sequence[ObservedChain]) -> list[bytes | None]:
    """Per observation, the next different presented leaf key after it (None: none), as
    :func:`_next_leaf_key` finds it, in one backward pass: the key of the next observation
    with a leaf where it differs from this one's, else that observation's own answer."""
    following: list[bytes | None] = [None] * len(timeline)
    next_key: bytes | None = None  # of the nearest later observation with a leaf
    next_answer: bytes | None = None  # that observation's answer
    for index in range(len(timeline) - 1, -1, -1):
        presented = timeline[index].presented
        key = presented[0].spki_sha256 if presented else None
        following[index] = next_key if next_key != key else next_answer
        if key is not None:
            next_key, next_answer = key, following[index]
    return following


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("cert", KeyRecipe(whole_leaf=True), "the whole leaf certificate"),
        Strategy("leaf-spki", KeyRecipe(positions=(0,)), "the leaf's public key"),
        Strategy("intermediate-spki", KeyRecipe(positions=(1,)), "the leaf issuer's key"),
        Strategy("root-spki", KeyRecipe(positions=(-1,)), "the trust anchor's key"),
        Strategy("any-in-chain", KeyRecipe(from_position=0), "every key of the chain"),
        Strategy(
            "leaf+backup",
            KeyRecipe(positions=(0,), next_leaf_key=True),
            "the leaf key plus the key the host really used next",
        ),
        Strategy(
            "ca-set",
            KeyRecipe(from_position=1, organisation_keys=True),
            "every issuer key of the leaf's CA organisation seen so far",
        ),
    )
}
"""Every strategy by its name (the ``strategy`` column of a replay)."""


def strategy(name: str) -> Strategy:
    """Look a strategy up by name, with the list of names when it is unknown."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}"
        ) from None


@dataclass(frozen=True, slots=True)
class ScanAnchors:
    """The trust anchors and validation time a scan recorded for its own chains.

    The rotation lab's scans carry a virtual clock while Pebble dates certificates by the
    real one, so they record which anchors (certificate SHA-256 hex, stored in
    ``certificates``) validated them and when; both engines validate those scans that way.
    """

    trust_anchors: tuple[str, ...]
    validated_at: datetime

    def parameters(self) -> dict[str, Any]:
        """The entries this record adds to a scan's ``parameters`` JSON."""
        return {
            "trust_anchors": sorted(self.trust_anchors),
            "validated_at": self.validated_at.isoformat(),
        }

    @classmethod
    def from_parameters(cls, text: object) -> ScanAnchors | None:
        """The record in a scan's ``parameters`` JSON text; None when it holds none."""
        if not isinstance(text, str):
            return None
        try:
            parameters = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(parameters, dict):
            return None
        anchors, validated_at = parameters.get("trust_anchors"), parameters.get("validated_at")
        if not anchors or not isinstance(anchors, list) or not isinstance(validated_at, str):
            return None
        try:
            at = datetime.fromisoformat(validated_at)
        except ValueError:
            return None
        return cls(tuple(str(digest) for digest in anchors), at)


@dataclass(frozen=True, slots=True)
class Engine:
    """What a survival engine does and does not do, as data the CLI can explain."""

    name: str
    legacy_paths: bool
    """Rebuilds SHA-1-era paths that today's verifier refuses (else: such chains fail)."""
    release_calendar: bool
    """Pins on an app-release calendar (``--release-every``); else at every observation."""
    signatures: bool
    """Checks signatures and extensions (else: names, validity and anchors only)."""
    out_of_core: bool
    """Runs in bounded memory on data of any size."""


ENGINES: dict[str, Engine] = {
    "python": Engine(
        "python", legacy_paths=True, release_calendar=True, signatures=True, out_of_core=False
    ),
    "duckdb": Engine(
        "duckdb", legacy_paths=False, release_calendar=False, signatures=False, out_of_core=True
    ),
}
"""The two engines: :func:`pinlab.survival.replay` and :func:`pinlab.survival.replay_store`."""
