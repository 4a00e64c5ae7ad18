"""The replay's inner loop on key bit masks, over a batch of whole timelines, in numpy.

The keys of one timeline (every SPKI its chains hold, under both semantics) are numbered
from 0; a chain becomes the mask of its keys' bits, what a strategy pins becomes the mask
of the pinned keys, and "the pins accept the chain" becomes ``pins & chain != 0``: a pinned
key anywhere in the chain, which is what :meth:`pinlab.pins.PinSet.check` decides. Masks
are ``W`` 64-bit words, ``W`` set by the batch's largest timeline, so a timeline may hold
any number of keys. ``cert`` compares whole leaves: its "keys" are the leaf certificates.

The rules are those of :func:`pinlab.survival.replay` and :mod:`pinlab.survival.rules`, held
equal to them by the tests; this module only changes how they are computed: one pass per
run of equal chains a pin outlives, over every open pin of the batch at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pinlab.survival.rules import strategy

__all__ = ["Batch", "PinOutcome", "replay_batch"]

_ONE = np.uint64(1)
_NO_TIME = np.int64(np.iinfo(np.int64).min)


@dataclass(frozen=True)
class Batch:
    """Observations of whole timelines, in timeline then time order.

    ``presented`` and ``verified`` are list arrays of 64-bit key ids, leaf first (a null
    ``verified`` entry: the chain did not validate); ``organisation`` is the id of the CA
    organisation that issued the leaf (0: none), for ``ca-set``.
    """

    timeline: np.ndarray
    at: np.ndarray
    presented: pa.ListArray
    verified: pa.ListArray
    leaf: np.ndarray
    organisation: np.ndarray
    leaf_not_before: np.ndarray
    """Epoch microseconds of each observation's leaf notBefore (death bounds)."""
    leaf_not_after: np.ndarray

    def __len__(self) -> int:
        return len(self.at)


@dataclass(frozen=True)
class PinOutcome:
    """One strategy under one semantics over a batch: one entry per pin taken."""

    index: np.ndarray
    """The observation each pin was taken at (index into the batch)."""
    broken_at: np.ndarray
    """Epoch microseconds of the first chain the pins rejected; ``_NO_TIME``: never."""
    end_at: np.ndarray
    """``broken_at``, or the last observation that checked the pins (the pin time if none)."""
    checks: np.ndarray
    last_pass: np.ndarray
    """Index of the last observation the pins accepted; the pin's own index if none."""
    unchecked: np.ndarray
    """Observations in the follow-up whose chain could not be checked (did not validate)."""
    first_fail: np.ndarray
    """Index of the observation the pins rejected; the pin's own index if none."""

    @property
    def broken(self) -> np.ndarray:
        """Whether each pin broke."""
        broken: np.ndarray = self.broken_at != _NO_TIME
        return broken


@dataclass(frozen=True)
class _Chains:
    """One semantics' chains as flat arrays: owner observation, position, key bit."""

    owner: np.ndarray
    position: np.ndarray
    length: np.ndarray
    bit: np.ndarray
    present: np.ndarray


def _flatten(chains: pa.ListArray, count: int) -> tuple[np.ndarray, ...]:
    """(owner, position, length, key) of every element of ``chains`` (null lists: none)."""
    length = np.diff(chains.offsets.to_numpy()).astype(np.int64)
    length[~np.asarray(chains.is_valid())] = 0
    keys = chains.flatten().to_numpy(zero_copy_only=False).astype(np.uint64)
    owner = np.repeat(np.arange(count), length)
    starts = np.repeat(np.cumsum(length) - length, length)
    position = np.arange(len(keys)) - starts
    return owner, position, length, keys


def _local_bits(timeline: np.ndarray, owners: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each (owner, key)'s bit: the key's rank among its timeline's distinct keys."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    _, rank = np.unique(keys, return_inverse=True)
    # One 64-bit sort key per (timeline, key): a batch holds far fewer than 2**31 of each.
    packed = (timeline[owners].astype(np.int64) << 32) | rank.astype(np.int64)
    vocabulary, index = np.unique(packed, return_inverse=True)
    lines = vocabulary >> 32
    first = np.searchsorted(lines, lines)
    return (np.arange(len(vocabulary)) - first)[index]


def _masks(count: int, owners: np.ndarray, bits: np.ndarray, words: int) -> np.ndarray:
    masks = np.zeros((words, count), dtype=np.uint64)
    for word in range(words):
        chosen = bits // 64 == word
        np.bitwise_or.at(masks[word], owners[chosen], _ONE << (bits[chosen] % 64).astype(np.uint64))
    return masks


def _timeline_codes(timeline: np.ndarray) -> np.ndarray:
    """0, 1, 2... per run of equal timeline ids (the batch is in timeline order)."""
    new = np.ones(len(timeline), dtype=bool)
    new[1:] = timeline[1:] != timeline[:-1]
    return np.cumsum(new) - 1


class _Replayer:
    """Masks of one batch, built once and shared by every strategy and semantics."""

    def __init__(self, batch: Batch, catalog: pd.DataFrame) -> None:
        self.count = count = len(batch)
        self.line = _timeline_codes(batch.timeline)
        self.at = batch.at
        flat = {
            "presented": _flatten(batch.presented, count),
            "verified": _flatten(batch.verified, count),
        }
        owners = np.concatenate([flat["presented"][0], flat["verified"][0]])
        every_key = np.concatenate([flat["presented"][3], flat["verified"][3]])
        bits = _local_bits(self.line, owners, every_key)
        self.words = int(bits.max()) // 64 + 1 if len(bits) else 1
        split = len(flat["presented"][3])
        self.chains: dict[str, _Chains] = {}
        self.keys: dict[str, np.ndarray] = {}
        for name, part in (("presented", bits[:split]), ("verified", bits[split:])):
            owner, position, length, _keys = flat[name]
            self.chains[name] = _Chains(owner, position, length, part, length > 0)
            self.keys[name] = _masks(count, owner, part, self.words)
        leaf_bits = _local_bits(self.line, np.arange(count), batch.leaf.astype(np.uint64))
        leaf_words = int(leaf_bits.max()) // 64 + 1 if count else 1
        self.leaves = _masks(count, np.arange(count), leaf_bits, leaf_words)
        self.catalog = self._catalog_masks(batch, catalog, owners, every_key, bits)
        # ca-set pins the organisation's keys even where none of them is in this timeline
        # (the pin is taken, and breaks at the first chain checked).
        first = catalog.groupby("organisation")["first_seen"].min()
        known = pd.Series(batch.organisation).map(first).to_numpy(dtype=float)
        self.catalog_nonempty = ~np.isnan(known) & (known <= batch.at)

    def _catalog_masks(
        self,
        batch: Batch,
        catalog: pd.DataFrame,
        owners: np.ndarray,
        keys: np.ndarray,
        bits: np.ndarray,
    ) -> np.ndarray:
        """Per observation, the bits of its timeline's keys that ``ca-set`` would pin:
        keys of the leaf issuer's organisation seen (anywhere) by the pin time."""
        vocabulary = pd.DataFrame(
            {"line": self.line[owners], "key": keys, "bit": bits}
        ).drop_duplicates()
        known = vocabulary.merge(catalog, on="key")
        pins = pd.DataFrame(
            {"index": np.arange(self.count), "line": self.line, "organisation":
             batch.organisation, "at": batch.at}
        ).merge(known, on=["line", "organisation"])  # fmt: skip
        pins = pins[pins["first_seen"] <= pins["at"]]
        return _masks(
            self.count, pins["index"].to_numpy(), pins["bit"].to_numpy(np.int64), self.words
        )

    def _at_position(self, chains: _Chains, position: int) -> tuple[np.ndarray, np.ndarray]:
        """(owners, bits) of the key at ``position`` (-1: last) of every long enough chain."""
        if position < -1:
            raise ValueError(f"chain position {position}: only -1 counts from the end")
        if position >= 0:
            chosen = chains.position == position
        else:
            chosen = chains.position == chains.length[chains.owner] - 1
        return chains.owner[chosen], chains.bit[chosen]

    def pins(self, name: str, semantics: str) -> tuple[np.ndarray, np.ndarray]:
        """(pin masks, whether a pin was taken) of strategy ``name`` at every observation.

        Built from the strategy's :class:`~pinlab.survival.rules.KeyRecipe`, as the Python
        engine builds its pin sets: a new strategy is a new recipe, nothing here.
        """
        recipe = strategy(name).recipe
        chains = self.chains[semantics]
        if recipe.whole_leaf:
            leaves = np.where(chains.present, self.leaves, np.uint64(0))
            return leaves, chains.present
        masks = np.zeros((self.words, self.count), dtype=np.uint64)
        for position in recipe.positions:
            owner, bit = self._at_position(chains, position)
            masks |= _masks(self.count, owner, bit, self.words)
        if recipe.from_position is not None:
            tail = chains.position >= recipe.from_position
            masks |= _masks(self.count, chains.owner[tail], chains.bit[tail], self.words)
        if recipe.next_leaf_key:
            masks |= self._next_leaf_key
        pinned = (masks != 0).any(axis=0)
        if recipe.organisation_keys:
            # The organisation's keys are pinned even where none of them is in this
            # timeline (the pin is taken, and breaks at the first chain checked).
            masks |= self.catalog
            pinned = (masks != 0).any(axis=0) | self.catalog_nonempty
        return masks, chains.present & pinned

    @functools.cached_property
    def _next_leaf_key(self) -> np.ndarray:
        """The mask of the next different presented leaf key in each timeline (the backup)."""
        owner, bit = self._at_position(self.chains["presented"], 0)
        leaf_bit = np.full(self.count, -1, dtype=np.int64)
        leaf_bit[owner] = bit
        change = np.ones(self.count, dtype=bool)
        change[1:] = (leaf_bit[1:] != leaf_bit[:-1]) | (self.line[1:] != self.line[:-1])
        starts = np.flatnonzero(change)
        run = np.cumsum(change) - 1
        following = np.r_[starts[1:], self.count][run]
        has_next = following < self.count
        has_next[has_next] = self.line[following[has_next]] == self.line[has_next]
        owners = np.flatnonzero(has_next)
        return _masks(self.count, owners, leaf_bit[following[owners]], self.words)

    @functools.cached_property
    def _later(self) -> np.ndarray:
        """Per observation, the first one after it in its timeline at a later time (or the
        timeline's end): where a pin taken there starts being checked."""
        new = np.ones(self.count, dtype=bool)
        new[1:] = (self.line[1:] != self.line[:-1]) | (self.at[1:] != self.at[:-1])
        moment = np.cumsum(new)
        later: np.ndarray = np.searchsorted(moment, moment, side="right")
        return later

    def replay(self, name: str, semantics: str) -> PinOutcome:
        """When each pin of ``name`` under ``semantics`` first broke, and its checks.

        The checked observations (chain present) of a timeline fall into runs of equal
        chain masks, and a pin accepts all of a run or none of it. So each pin steps over
        runs, not observations, from the run its follow-up starts in to the first run it
        rejects: ``F(r) = r`` if the pin rejects run ``r``, else ``F(r + 1)``. The checks,
        unchecked observations and last pass follow from positions among the checked
        observations. A year of daily observations costs about 30x twelve monthly ones,
        not 900x (the pins step over as many runs); a host whose chain changes at every
        observation is the worst case, stepping as far as the old walk did.
        """
        pins, taken = self.pins(name, semantics)
        chains = self.leaves if strategy(name).recipe.whole_leaf else self.keys[semantics]
        checked = np.flatnonzero(self.chains[semantics].present)
        line = self.line
        differs = np.ones(len(checked), dtype=bool)
        differs[1:] = (line[checked[1:]] != line[checked[:-1]]) | (
            chains[:, checked[1:]] != chains[:, checked[:-1]]
        ).any(axis=0)
        run_of = np.cumsum(differs) - 1
        run_start = np.flatnonzero(differs)  # checked position of each run's first
        run_line, run_mask = line[checked[run_start]], chains[:, checked[run_start]]
        index = np.flatnonzero(taken)
        start = self._later[index]
        line_end = np.searchsorted(line, line[index], side="right")
        first = np.searchsorted(checked, start)  # first checked position of the follow-up
        checked_end = np.searchsorted(checked, line_end)
        fail = checked_end.copy()  # checked position of the first rejection; none: the end
        active = np.flatnonzero(first < checked_end)
        run = run_of[first[active]]
        while active.size:
            inside = run < len(run_start)
            inside[inside] = run_line[run[inside]] == line[index[active[inside]]]
            active, run = active[inside], run[inside]
            accepted = ((pins[:, index[active]] & run_mask[:, run]) != 0).any(axis=0)
            rejected = active[~accepted]
            fail[rejected] = np.maximum(first[rejected], run_start[run[~accepted]])
            active, run = active[accepted], run[accepted] + 1
        broke = fail < checked_end
        failing = checked[np.minimum(fail, len(checked) - 1)] if len(checked) else fail
        end = np.where(broke, failing, line_end)
        passed = fail > first
        last_pass = np.where(passed, checked[np.maximum(fail - 1, 0)], index)
        broken_at = np.where(broke, self.at[failing], _NO_TIME)
        return PinOutcome(
            index=index,
            broken_at=broken_at,
            end_at=np.where(broke, broken_at, self.at[last_pass]),
            checks=fail - first + broke,
            last_pass=last_pass,
            unchecked=(end - start) - (fail - first),
            first_fail=np.where(broke, failing, index),
        )


def replay_batch(
    batch: Batch, catalog: pd.DataFrame, plan: list[tuple[str, str]]
) -> dict[tuple[str, str], PinOutcome]:
    """Every (strategy, semantics) of ``plan`` over ``batch``.

    ``catalog`` has columns ``organisation``, ``key`` and ``first_seen`` (epoch
    microseconds): every CA key of the whole population, as :class:`CaCatalog` holds them.
    """
    replayer = _Replayer(batch, catalog)
    return {(name, semantics): replayer.replay(name, semantics) for name, semantics in plan}
