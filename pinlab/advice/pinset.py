"""Pin sets with a backup: what ``recommend`` replays, suggests and explains.

RFC 7469 §4.3 requires a backup pin, and TrustKit refuses a domain with fewer than two
pins at start-up, so every pin set offered here holds two keys or more. A strategy that
pins one key (``leaf-spki``, ``intermediate-spki``, ``root-spki``) is paired with the next
layer of the chain: the leaf key with its issuing CA's key, the intermediate's key with
the root's. ``root-spki`` paired with the next layer down is the intermediate set, so it
is not offered apart; ``cert`` pins a certificate hash, which no mobile platform pins.

A pin set accepts a chain when **any** of its pins matches, so it protects only as much as
its weakest pin: a leaf key paired with its issuing CA refuses what other issuing CAs sign,
no more (the ``scope`` of each :class:`Candidate`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pinlab.certs import Certificate
from pinlab.pins import Pin
from pinlab.survival import CaCatalog, KeyRecipe, ObservedChain, Strategy
from pinlab.survival.rules import organisation

__all__ = ["CANDIDATES", "Candidate", "SuggestedPin", "okhttp_snippet", "suggest_pins"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A backup-holding pin set: its recipe, and what it protects (its weakest pin)."""

    name: str
    recipe: KeyRecipe
    level: int
    """4 (leaf) down to 1 (CA organisation): the protection of the weakest pin."""
    scope: str
    refuses: str
    pairing: str
    """Which strategy it comes from and why it holds more than one key."""

    @property
    def strategy(self) -> Strategy:
        """The recipe as a survival strategy, replayed by :func:`pinlab.survival.replay`."""
        return Strategy(self.name, self.recipe, self.pairing)


CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate(
            "leaf+issuer", KeyRecipe(positions=(0, 1)), 3, "intermediate",
            "refuses other issuing CAs",
            "leaf-spki is one key: paired with the leaf's issuing CA key, the next layer",
        ),
        Candidate(
            "intermediate+root", KeyRecipe(positions=(1, -1)), 2, "root",
            "refuses chains to other roots",
            "intermediate-spki (or root-spki) is one key: paired with the next layer",
        ),
        Candidate(
            "any-in-chain", KeyRecipe(from_position=0), 2, "root",
            "refuses chains to other roots (its root pin accepts any chain to that root)",
            "every key of the chain (HPKP/OkHttp style)",
        ),
        Candidate(
            "ca-set", KeyRecipe(from_position=1, organisation_keys=True), 1, "ca-set",
            "refuses only other CA organisations",
            "every CA key of the leaf issuer's organisation seen in the data",
        ),
    )
}  # fmt: skip
"""The pin sets ``recommend`` weighs, strongest protection first."""


@dataclass(frozen=True, slots=True)
class SuggestedPin:
    """One pin of a suggested set: the pin, which key it is, and why it is there."""

    pin: str
    role: str
    """leaf, intermediate, root, or ca-key (a key of the CA organisation off the chain)."""
    name: str
    """The certificate's CN (or subject) the key was seen in."""
    why: str


def _cn(certificate: Certificate) -> str:
    for part in certificate.subject.split(","):
        if part.startswith("CN="):
            return part[3:]
    return certificate.subject


def _role(index: int, chain: Sequence[Certificate]) -> str:
    if index == 0:
        return "leaf"
    return "root" if index == len(chain) - 1 else "intermediate"


def _why(candidate: Candidate, role: str, host: str) -> str:
    if candidate.name == "leaf+issuer":
        return (
            f"primary: the key {host} serves now"
            if role == "leaf"
            else "backup: the issuing CA's key, so a new leaf key from this CA still passes"
        )
    if candidate.name == "intermediate+root":
        return (
            f"primary: the CA key that signs {host}'s certificates"
            if role == "intermediate"
            else "backup: the root above it, so a new intermediate under this root passes"
        )
    if candidate.name == "any-in-chain":
        return f"one key of {host}'s chain: any one of them keeps the set passing"
    return "a key of the issuing CA organisation: any of them keeps the set passing"


def suggest_pins(
    candidate: Candidate,
    chains: Sequence[ObservedChain],
    catalog: CaCatalog,
    known: dict[bytes, Certificate],
) -> tuple[SuggestedPin, ...]:
    """The pins ``candidate`` takes from each of ``chains`` (verified paths), explained.

    ``chains`` are the chains a client meets now (one per lineage served side by side);
    ``known`` names keys by a certificate that carries them, for keys off the chain.
    """
    pins: dict[str, SuggestedPin] = {}
    recipe = candidate.recipe
    for observed in chains:
        chain = observed.verified or ()
        host = observed.sni or observed.host
        indexes = [p % len(chain) for p in recipe.positions if -len(chain) <= p < len(chain)]
        if recipe.from_position is not None:
            indexes += list(range(recipe.from_position, len(chain)))
        for index in dict.fromkeys(indexes):
            certificate = chain[index]
            role = _role(index, chain)
            pins.setdefault(
                certificate.pin,
                SuggestedPin(certificate.pin, role, _cn(certificate), _why(candidate, role, host)),
            )
        if recipe.organisation_keys and chain:
            owner = organisation(chain[0].issuer)
            for key in catalog.keys_of(owner, until=observed.observed_at):
                holder = known.get(key)
                pin = str(Pin("sha256", key))
                name = _cn(holder) if holder else f"a CA key of {owner or 'its organisation'}"
                pins.setdefault(pin, SuggestedPin(pin, "ca-key", name, _why(candidate, "", host)))
    return tuple(pins.values())


_UNSAFE = re.compile(r"[^\x20-\x7e]|[\"\\]")


def _literal(text: str) -> str:
    """Names from certificates are data: quotes, backslashes and control characters escaped."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def okhttp_snippet(host: str, pins: Sequence[SuggestedPin]) -> str:
    """The set as OkHttp ``CertificatePinner`` Kotlin, one ``add`` per pin, commented."""
    lines = ["val certificatePinner = CertificatePinner.Builder()"]
    for pin in pins:
        lines.append(
            f'    .add("{_literal(host)}", "{pin.pin}") // {pin.role}: {_literal(pin.name)}'
        )
    lines.append("    .build()")
    return "\n".join(lines)
