"""The linear replay (issue 20) gives exactly the rows of the quadratic one it replaced.

:func:`_reference_replay` is the replay as it was before issue 20: every pin followed forward,
observation by observation, through the rest of its timeline, and ``leaf+backup`` looking
its backup up by walking forward too. The tests compare every column of every row
(``broken_at``, ``days_survived``, ``checks``, ``last_checked_at``, the death bounds,
``unchecked``...) between it and :func:`pinlab.survival.replay`, on the real histories of
../shared/data (validated against certifi's roots), pinned at every observation and on a
release calendar, and on seeded random timelines built to hit the edges: observations at
the same instant, chains that do not validate, chains that come back after others, leaves
that keep their key, pins that never break. The DuckDB engine's numpy replay
(:mod:`pinlab.survival.masks`) is held to its old walk, one pass per distance from the
pin, field by field on the same random timelines (its rows against the Python engine's are
tested in test_duckdb_engine.py).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pinlab.bench.replay_length import batch_of
from pinlab.certs import Certificate
from pinlab.pins import Semantics
from pinlab.survival import ObservedChain, replay
from pinlab.survival.masks import _NO_TIME, PinOutcome, _Replayer
from pinlab.survival.python_engine import REPLAY_COLUMNS, _Followed, _pin_times, _timelines
from pinlab.survival.rules import STRATEGIES, CaCatalog, Matcher, next_leaf_keys
from pinlab.testbed.pki import CA, KeyType, pooled_key

_MODES = (Semantics.VERIFIED, Semantics.PRESENTED)


def _reference_follow(
    timeline: Sequence[ObservedChain],
    index: int,
    pinned_at: datetime,
    mode: Semantics,
    matcher: Matcher,
) -> _Followed:
    """The quadratic walk: every observation after the pin until the pins reject one."""
    checks = unchecked = 0
    last_pass: ObservedChain | None = None
    for later in timeline[index + 1 :]:
        if later.observed_at <= pinned_at:
            continue
        chain = later.chain(mode)
        if chain is None:
            unchecked += 1
            continue
        checks += 1
        if not matcher.accepts(chain, later.observed_at):
            return _Followed(checks, unchecked, last_pass, later)
        last_pass = later
    return _Followed(checks, unchecked, last_pass, None)


def _reference_replay(
    chains: Sequence[ObservedChain], release_every: float | None = None
) -> pd.DataFrame:
    """:func:`pinlab.survival.replay` before issue 20 (derive walks for the backup too)."""
    catalog = CaCatalog.build(chains)
    rows: list[dict[str, Any]] = []
    for timeline in _timelines(chains):
        for pinned_at, index in _pin_times(timeline, release_every):
            for mode in _MODES:
                for chosen in STRATEGIES.values():
                    matcher = chosen.derive(timeline, index, mode, catalog)
                    if matcher is None:
                        continue
                    pinned = timeline[index]
                    followed = _reference_follow(timeline, index, pinned_at, mode, matcher)
                    rows.append({
                        "host": pinned.host, "port": pinned.port, "sni": pinned.sni,
                        "lineage": pinned.lineage, "strategy": chosen.name,
                        "semantics": mode.value, "pinned_at": pinned_at,
                        "pinned_leaf": pinned.presented[0].sha256, "legacy": pinned.legacy,
                        **followed.row(pinned, pinned_at),
                    })  # fmt: skip
    frame = pd.DataFrame.from_records(rows, columns=REPLAY_COLUMNS)
    for column in ("pinned_at", "broken_at", "last_checked_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _assert_same_rows(chains: Sequence[ObservedChain], release_every: float | None) -> None:
    expected = _reference_replay(chains, release_every)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(replay(chains, release_every=release_every), expected)


@pytest.mark.parametrize("release_every", [None, 45.0])
def test_same_rows_as_the_quadratic_replay_on_the_real_histories(
    real_chains: list[ObservedChain], release_every: float | None
) -> None:
    assert sum(c.verified is None for c in real_chains) > 0  # unchecked observations occur
    _assert_same_rows(real_chains, release_every)


@pytest.fixture(scope="module")
def pool() -> list[tuple[tuple[Certificate, ...], tuple[Certificate, ...] | None]]:
    """(presented, verified) chains of one host: two CAs under one root, a cross-signed
    intermediate, leaves that keep or change their key, a chain that does not validate."""
    root = CA.root("Linear Root")
    other = CA.root("Linear Other Root")
    first, second = root.child_ca("Linear CA 1"), root.child_ca("Linear CA 2")
    cross = other.child_ca(first.certificate.subject, key=first.private_key)
    kept = pooled_key(KeyType.P256, 7)
    leaves = [
        first.issue_leaf("h.linear.test", key=kept),
        first.issue_leaf("h.linear.test", key=kept),
        first.issue_leaf("h.linear.test"),
        second.issue_leaf("h.linear.test"),
        second.issue_leaf("h.linear.test", key=kept),
    ]
    chains: list[tuple[tuple[Certificate, ...], tuple[Certificate, ...] | None]] = []
    for leaf in leaves:
        presented = (leaf.record, leaf.issuer.record)
        chains.append((presented, (*presented, root.record)))
    leaf = leaves[0]
    chains.append(((leaf.record, cross.record), (leaf.record, cross.record, other.record)))
    chains.append(((leaf.record, first.record), None))  # did not validate
    chains.append(((leaves[3].record,), None))
    return chains


def _random_timelines(
    rng: random.Random,
    pool: Sequence[tuple[tuple[Certificate, ...], tuple[Certificate, ...] | None]],
    hosts: int,
) -> Iterable[ObservedChain]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for host in range(hosts):
        name = f"h{host}.linear.test"
        at, served = start, rng.randrange(len(pool))
        for _ in range(rng.randrange(1, 40)):
            if rng.random() < 0.3:  # a change of chain, sometimes back to an earlier one
                served = rng.randrange(len(pool))
            at += timedelta(days=rng.choice([0, 0, 1, 3, 30]))  # same-instant observations too
            presented, verified = pool[served]
            yield ObservedChain(name, 443, name, at, presented, verified)


@pytest.mark.parametrize("seed", range(4))
def test_same_rows_as_the_quadratic_replay_on_random_timelines(
    pool: list[tuple[tuple[Certificate, ...], tuple[Certificate, ...] | None]], seed: int
) -> None:
    chains = list(_random_timelines(random.Random(seed), pool, hosts=30))
    _assert_same_rows(chains, None)
    _assert_same_rows(chains, 10.0)


def test_next_leaf_keys_is_the_forward_walk_of_every_observation(
    pool: list[tuple[tuple[Certificate, ...], tuple[Certificate, ...] | None]],
) -> None:
    chains = list(_random_timelines(random.Random(99), pool, hosts=20))
    for timeline in _timelines(chains):
        expected = []
        for index, observed in enumerate(timeline):
            key = observed.presented[0].spki_sha256
            later = [c.presented[0].spki_sha256 for c in timeline[index + 1 :]]
            expected.append(next((k for k in later if k != key), None))
        assert next_leaf_keys(timeline) == expected


def _reference_outcome(replayer: _Replayer, name: str, semantics: str) -> PinOutcome:
    """The DuckDB engine's replay before issue 20: one pass per distance from the pin."""
    pins, taken = replayer.pins(name, semantics)
    whole_leaf = STRATEGIES[name].recipe.whole_leaf
    chains = replayer.leaves if whole_leaf else replayer.keys[semantics]
    present = replayer.chains[semantics].present
    count, line, at = replayer.count, replayer.line, replayer.at
    broken_at = np.full(count, _NO_TIME, dtype=np.int64)
    checks, unchecked = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    last_pass, first_fail = np.arange(count), np.arange(count)
    active, distance = np.flatnonzero(taken), 1
    while active.size:
        later = active + distance
        inside = later < count
        active, later = active[inside], later[inside]
        same = line[later] == line[active]
        active, later = active[same], later[same]
        after = at[later] > at[active]
        considered = present[later] & after
        unchecked[active[~present[later] & after]] += 1
        accepted = ((pins[:, active] & chains[:, later]) != 0).any(axis=0)
        checks[active[considered]] += 1
        passed = considered & accepted
        last_pass[active[passed]] = later[passed]
        broke = considered & ~accepted
        broken_at[active[broke]] = at[later[broke]]
        first_fail[active[broke]] = later[broke]
        active, distance = active[~broke], distance + 1
    index = np.flatnonzero(taken)
    broken = broken_at[index]
    end_at = np.where(broken != _NO_TIME, broken, at[last_pass[index]])
    return PinOutcome(
        index, broken, end_at, checks[index], last_pass[index], unchecked[index],
        first_fail[index],
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_masks_replay_equals_the_distance_walk_on_random_timelines(
    pool: list[tuple[tuple[Certificate, ...], tuple[Certificate, ...] | None]], seed: int
) -> None:
    """The DuckDB engine's numpy replay, every field of every pin, against its old walk."""
    chains = list(_random_timelines(random.Random(seed), pool, hosts=30))
    batch, catalog = batch_of(chains)
    replayer = _Replayer(batch, catalog)
    broken = 0
    for name in STRATEGIES:
        for semantics in ("verified", "presented"):
            got, expected = (
                replayer.replay(name, semantics),
                _reference_outcome(replayer, name, semantics),
            )
            for field in dataclasses.fields(PinOutcome):
                np.testing.assert_array_equal(
                    getattr(got, field.name), getattr(expected, field.name), err_msg=field.name
                )
            broken += int(expected.broken.sum())
    assert broken > 0
