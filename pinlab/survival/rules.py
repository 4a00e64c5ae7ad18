"""Pinning strategies: how an app derives its pins from the chain it saw on the pin day.

Each strategy is one class and one :data:`STRATEGIES` entry. A strategy turns the
observation at the pin time (and, for the two that need it, what else is known) into a
:class:`Matcher`; the replay then asks the matcher about every later chain. SPKI strategies
build a real :class:`~pinlab.pins.PinSet`, so the replay checks pins exactly as ``pinlab
check`` does; ``cert`` compares the whole leaf, as urllib3's ``assert_fingerprint`` does.

Which chain a strategy reads, at the pin time and later, is the ``semantics``: the verified
path (leaf to trust anchor) or the chain as presented. Under presented semantics
``root-spki`` pins the top certificate the server sent, since nothing else was seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from pinlab.certs import Certificate
from pinlab.errors import PinlabError
from pinlab.pins import Pin, PinSet, Semantics

__all__ = [
    "STRATEGIES",
    "CaCatalog",
    "Matcher",
    "ObservedChain",
    "Strategy",
    "UnknownStrategyError",
    "strategy",
]


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
    """The ``O=`` value of an RFC 4514 name ('' when absent), escaped commas respected."""
    parts, current, escaped = [], "", False
    for character in distinguished_name:
        if escaped:
            current += character
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == ",":
            parts.append(current)
            current = ""
        else:
            current += character
    parts.append(current)
    for part in parts:
        if part.startswith("O="):
            return part[2:]
    return ""


class Strategy(Protocol):
    """Derives what an app pins from the observation at the pin time."""

    name: ClassVar[str]

    def derive(
        self,
        timeline: Sequence[ObservedChain],
        index: int,
        semantics: Semantics,
        catalog: CaCatalog,
    ) -> Matcher | None:
        """The matcher for a pin taken at ``timeline[index]``; None if nothing to pin."""
        ...


def _spki_matcher(keys: Sequence[bytes], semantics: Semantics) -> Matcher | None:
    if not keys:
        return None
    return PinSetMatcher(PinSet.of(Pin("sha256", key) for key in keys), semantics)


@dataclass(frozen=True)
class CertificateStrategy:
    """Pin the whole leaf certificate (urllib3 ``assert_fingerprint``)."""

    name: ClassVar[str] = "cert"

    def derive(self, timeline: Sequence[ObservedChain], index: int, semantics: Semantics,
               catalog: CaCatalog) -> Matcher | None:  # fmt: skip
        chain = timeline[index].chain(semantics)
        return CertificateMatcher(chain[0].sha256) if chain else None


@dataclass(frozen=True)
class PositionStrategy:
    """Pin the key at one position of the chain: leaf (0), issuer (1) or root (-1)."""

    name: ClassVar[str]
    position: ClassVar[int]

    def derive(self, timeline: Sequence[ObservedChain], index: int, semantics: Semantics,
               catalog: CaCatalog) -> Matcher | None:  # fmt: skip
        chain = timeline[index].chain(semantics)
        if not chain or (self.position == 1 and len(chain) < 2):
            return None
        return _spki_matcher([chain[self.position].spki_sha256], semantics)


@dataclass(frozen=True)
class LeafSpki(PositionStrategy):
    """Pin the leaf's public key."""

    name: ClassVar[str] = "leaf-spki"
    position: ClassVar[int] = 0


@dataclass(frozen=True)
class IntermediateSpki(PositionStrategy):
    """Pin the key of the leaf's issuer."""

    name: ClassVar[str] = "intermediate-spki"
    position: ClassVar[int] = 1


@dataclass(frozen=True)
class RootSpki(PositionStrategy):
    """Pin the trust anchor's key (the top presented key under presented semantics)."""

    name: ClassVar[str] = "root-spki"
    position: ClassVar[int] = -1


@dataclass(frozen=True)
class AnyInChain:
    """Pin every key of the chain, as HPKP and OkHttp users commonly configure."""

    name: ClassVar[str] = "any-in-chain"

    def derive(self, timeline: Sequence[ObservedChain], index: int, semantics: Semantics,
               catalog: CaCatalog) -> Matcher | None:  # fmt: skip
        chain = timeline[index].chain(semantics)
        return _spki_matcher([c.spki_sha256 for c in chain or ()], semantics)


@dataclass(frozen=True)
class LeafWithBackup:
    """Pin the leaf key plus the key the host really used next: a perfectly planned backup."""

    name: ClassVar[str] = "leaf+backup"

    def derive(self, timeline: Sequence[ObservedChain], index: int, semantics: Semantics,
               catalog: CaCatalog) -> Matcher | None:  # fmt: skip
        chain = timeline[index].chain(semantics)
        if not chain:
            return None
        leaf_key = chain[0].spki_sha256
        for later in timeline[index + 1 :]:
            if later.presented and later.presented[0].spki_sha256 != leaf_key:
                return _spki_matcher([leaf_key, later.presented[0].spki_sha256], semantics)
        return _spki_matcher([leaf_key], semantics)


@dataclass(frozen=True)
class CaSet:
    """Pin every issuer key of the host's CA organisation seen so far in the data."""

    name: ClassVar[str] = "ca-set"

    def derive(self, timeline: Sequence[ObservedChain], index: int, semantics: Semantics,
               catalog: CaCatalog) -> Matcher | None:  # fmt: skip
        observed = timeline[index]
        chain = observed.chain(semantics)
        if not chain:
            return None
        keys = catalog.keys_of(organisation(chain[0].issuer), until=observed.observed_at)
        own = [c.spki_sha256 for c in chain[1:]]
        return _spki_matcher(sorted(set(keys) | set(own)), semantics)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        CertificateStrategy(),
        LeafSpki(),
        IntermediateSpki(),
        RootSpki(),
        AnyInChain(),
        LeafWithBackup(),
        CaSet(),
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
