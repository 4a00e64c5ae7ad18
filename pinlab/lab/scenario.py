"""Lab scenarios: a small TOML file parsed into frozen dataclasses, checked before anything runs.

A scenario names the rounds, the virtual clock, the ACME CAs (Pebble instances) with their
events, and groups of hosts that share a renewal policy::

    [lab]
    rounds = 4              # round 0 issues every host; later rounds renew what is due
    days_per_round = 30     # virtual clock: round i is observed at start + i x days
    start = 2025-01-01T00:00:00Z
    domain = "pinlab.test"

    [[ca]]
    name = "primary"
    chain_length = 1        # PEBBLE_CHAIN_LENGTH
    alternate_roots = 0     # PEBBLE_ALTERNATE_ROOTS
    rollover_rounds = [2]   # Pebble restarted before these rounds: new root and intermediate

    [[group]]
    name = "rotate"
    count = 2
    policy = "reuse-then-rotate"   # fresh | reuse | reuse-then-rotate
    rotate_every = 2               # a fresh key on every 2nd renewal
    key_type = "p256"              # rsa2048 | rsa4096 | p256 | p384
    renew_every = 1                # rounds between renewals
    ca = "primary"
    switch_ca = { round = 3, to = "secondary" }

Every mistake raises :class:`ScenarioError` naming the file, the table and the key.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pinlab.lab.errors import ScenarioError
from pinlab.testbed.pki import KeyType

__all__ = ["CASpec", "Group", "Host", "Policy", "Scenario", "Switch", "load_scenario"]

_KEY_TYPES = {
    "rsa2048": KeyType.RSA2048,
    "rsa4096": KeyType.RSA4096,
    "p256": KeyType.P256,
    "ec256": KeyType.P256,
    "p384": KeyType.P384,
    "ec384": KeyType.P384,
}
_DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)


class Policy(enum.Enum):
    """What a host does with its private key when it renews."""

    FRESH = "fresh"
    REUSE = "reuse"
    REUSE_THEN_ROTATE = "reuse-then-rotate"

    def reuses_key(self, renewal: int, rotate_every: int | None) -> bool:
        """Whether renewal number ``renewal`` (1 for the first renewal) keeps the old key."""
        if self is Policy.FRESH:
            return False
        if self is Policy.REUSE:
            return True
        assert rotate_every is not None
        return renewal % rotate_every != 0


@dataclass(frozen=True, slots=True)
class CASpec:
    """One ACME CA: a Pebble instance, restarted (new hierarchy) before each rollover round."""

    name: str
    chain_length: int = 1
    alternate_roots: int = 0
    rollover_rounds: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Switch:
    """A group moves to another CA from round ``round`` on (its next order goes there)."""

    round: int
    to: str


@dataclass(frozen=True, slots=True)
class Group:
    """Hosts sharing a renewal policy, a key type, a renewal interval and a CA."""

    name: str
    count: int
    policy: Policy
    key_type: KeyType
    renew_every: int = 1
    rotate_every: int | None = None
    ca: str = "primary"
    switch: Switch | None = None

    def ca_at(self, round_: int) -> str:
        """The CA this group orders from in round ``round_``."""
        if self.switch is not None and round_ >= self.switch.round:
            return self.switch.to
        return self.ca

    def renews_at(self, round_: int) -> bool:
        """Whether the group orders a certificate in round ``round_`` (round 0 always)."""
        if round_ == 0:
            return True
        if self.switch is not None and round_ == self.switch.round:
            return True
        return round_ % self.renew_every == 0


@dataclass(frozen=True, slots=True)
class Host:
    """One lab host: a DNS name under the scenario's domain, served by nginx via SNI."""

    name: str
    group: Group


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole lab run, as read from its TOML file."""

    name: str
    rounds: int
    days_per_round: int
    start: datetime
    domain: str
    cas: tuple[CASpec, ...]
    groups: tuple[Group, ...]
    concurrency: int = 8

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every host, ``<group>-<nn>.<domain>``, in group order."""
        return tuple(
            Host(f"{group.name}-{index:02d}.{self.domain}", group)
            for group in self.groups
            for index in range(1, group.count + 1)
        )

    def observed_at(self, round_: int) -> datetime:
        """The virtual time of round ``round_``: start + round x days_per_round."""
        return self.start + timedelta(days=round_ * self.days_per_round)

    def ca(self, name: str) -> CASpec:
        """The CA named ``name``."""
        for spec in self.cas:
            if spec.name == name:
                return spec
        raise KeyError(name)


class _Table:
    """One TOML table being read: every access is checked, leftovers are errors."""

    def __init__(self, source: str, where: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{source}: {where} must be a table")
        self.source, self.where, self.data = source, where, dict(data)
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {self.where}: key {key!r}: {message}")

    def get(self, key: str, kind: type, default: Any = ..., *, minimum: int | None = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise ScenarioError(f"{self.source}: {self.where}: missing key {key!r}")
            return default
        value = self.data[key]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.error(key, f"expected {kind.__name__}, got {value!r}")
        if minimum is not None and isinstance(value, int) and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ScenarioError(f"{self.source}: {self.where}: unknown key(s) {', '.join(unknown)}")


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; :class:`ScenarioError` names any bad key."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"cannot read scenario {file}: {error.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{file}: not valid TOML: {error}") from None
    return parse_scenario(data, source=str(file), default_name=file.stem)


def parse_scenario(
    data: Mapping[str, Any], *, source: str = "<scenario>", default_name: str = "lab"
) -> Scenario:
    """Check an already-decoded scenario mapping (the body of :func:`load_scenario`)."""
    top = _Table(source, "top level", data)
    lab = _Table(source, "[lab]", top.get("lab", dict))
    rounds = lab.get("rounds", int, minimum=1)
    scenario_name = lab.get("name", str, default_name)
    days = lab.get("days_per_round", int, 30, minimum=1)
    start = _start(lab, lab.get("start", object, _DEFAULT_START))
    domain = lab.get("domain", str, "pinlab.test").strip(".").lower()
    concurrency = lab.get("concurrency", int, 8, minimum=1)
    lab.finish()

    cas = tuple(
        _ca(_Table(source, f"[[ca]] #{i}", item), rounds)
        for i, item in enumerate(top.get("ca", list, [{"name": "primary"}]), 1)
    )
    names = [ca.name for ca in cas]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{source}: [[ca]]: names must be distinct, got {names}")
    groups = tuple(
        _group(_Table(source, f"[[group]] #{i}", item), rounds, names)
        for i, item in enumerate(top.get("group", list), 1)
    )
    if not groups:
        raise ScenarioError(f"{source}: at least one [[group]] is needed")
    group_names = [g.name for g in groups]
    if len(set(group_names)) != len(group_names):
        raise ScenarioError(f"{source}: [[group]]: names must be distinct, got {group_names}")
    top.finish()
    return Scenario(scenario_name, rounds, days, start, domain, cas, groups, concurrency)


def _start(table: _Table, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise table.error("start", f"not an ISO-8601 time: {value!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, datetime):
        raise table.error("start", f"expected a date-time, got {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _ca(table: _Table, rounds: int) -> CASpec:
    name = table.get("name", str)
    chain_length = table.get("chain_length", int, 1, minimum=1)
    alternate_roots = table.get("alternate_roots", int, 0, minimum=0)
    rollovers = table.get("rollover_rounds", list, [])
    for value in rollovers:
        if isinstance(value, bool) or not isinstance(value, int):
            raise table.error("rollover_rounds", f"expected integers, got {value!r}")
        if not 1 <= value < rounds:
            raise table.error(
                "rollover_rounds",
                f"round {value} is outside 1..{rounds - 1} (round 0 issues, the last is "
                f"{rounds - 1})",
            )
    table.finish()
    return CASpec(name, chain_length, alternate_roots, tuple(sorted(set(rollovers))))


def _group(table: _Table, rounds: int, ca_names: list[str]) -> Group:
    name = table.get("name", str)
    if not name or not all(c.isalnum() or c == "-" for c in name):
        raise table.error("name", f"use letters, digits and '-' (a DNS label), got {name!r}")
    count = table.get("count", int, 1, minimum=1)
    policy_text = table.get("policy", str)
    try:
        policy = Policy(policy_text)
    except ValueError:
        choices = ", ".join(p.value for p in Policy)
        raise table.error("policy", f"unknown policy {policy_text!r} (choose {choices})") from None
    rotate_every = table.get("rotate_every", int, None, minimum=1)
    if policy is Policy.REUSE_THEN_ROTATE and rotate_every is None:
        raise table.error("rotate_every", "required by policy 'reuse-then-rotate'")
    if policy is not Policy.REUSE_THEN_ROTATE and rotate_every is not None:
        raise table.error("rotate_every", f"only applies to 'reuse-then-rotate', not {policy_text}")
    key_text = table.get("key_type", str, "p256")
    if key_text.lower() not in _KEY_TYPES:
        raise table.error(
            "key_type", f"unknown key type {key_text!r} (choose rsa2048, rsa4096, p256, p384)"
        )
    renew_every = table.get("renew_every", int, 1, minimum=1)
    ca = table.get("ca", str, ca_names[0])
    if ca not in ca_names:
        raise table.error("ca", f"no [[ca]] named {ca!r} (have {', '.join(ca_names)})")
    switch = None
    raw_switch = table.get("switch_ca", dict, None)
    if raw_switch is not None:
        sub = _Table(table.source, f"{table.where} switch_ca", raw_switch)
        switch = Switch(sub.get("round", int), sub.get("to", str))
        sub.finish()
        if not 1 <= switch.round < rounds:
            raise table.error("switch_ca", f"round {switch.round} is outside 1..{rounds - 1}")
        if switch.to not in ca_names or switch.to == ca:
            raise table.error("switch_ca", f"'to' must name another [[ca]], got {switch.to!r}")
    table.finish()
    return Group(
        name, count, policy, _KEY_TYPES[key_text.lower()], renew_every, rotate_every, ca, switch
    )
