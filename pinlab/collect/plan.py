"""Shard plans: a campaign's targets split by politeness key into per-shard target files.

Every target has a politeness key (:func:`shard_key`): the address the target list pinned
it to (``ip,sni`` lines), its IP literal, or, for a name that the worker will resolve, the
name itself. All targets of a key go to one shard (a stable hash of the key, modulo the
number of shards), so one collector holds every connection to that address and ``per_ip``
holds across the cluster. Names are sharded by name, not resolved on the driver:
resolving a million names up front doubles the campaign's DNS load and still need not
agree with what the workers resolve later. Two names that share an address may therefore
land in different shards, and an address behind many names sees at most ``per_ip``
connections per worker. Give ``ip,sni`` lines (resolved beforehand) where the cluster-wide
cap must be exact.

**Lanes.** One address with very many names (a CDN edge, the loopback farm of the tests)
would be one huge shard on one worker. ``lanes=L`` spreads each key's targets over ``L``
consecutive shards (by a hash of the target), and the driver runs every shard with
``per_ip // L`` connections per address, so the cluster-wide cap is still ``per_ip``;
hence ``lanes <= per_ip``.

The plan lives on disk (one JSON-lines target file per shard, then ``plan.json``, written
last so that a plan that exists is complete): it is what a resumed campaign runs again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pinlab.collect.targets import Target
from pinlab.errors import PinlabError

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "MAX_SHARDS",
    "ShardPlan",
    "default_shards",
    "plan_shards",
    "read_targets",
    "shard_key",
]

DEFAULT_SHARD_SIZE = 5000
MAX_SHARDS = 4096
_FLUSH_LINES = 2000


def shard_key(target: Target) -> str:
    """The politeness key of a target: its pinned IP, else its host (IP literal or name)."""
    return target.ip if target.ip is not None else target.host


def _stable_hash(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def default_shards(targets: int, slots: int, *, shard_size: int = DEFAULT_SHARD_SIZE) -> int:
    """Shards for a campaign: about ``shard_size`` targets each, at least 4 per worker slot."""
    return max(1, min(MAX_SHARDS, max(4 * slots, math.ceil(targets / shard_size))))


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """A campaign's targets split into shards, kept on disk beside the dataset."""

    directory: Path
    shards: int
    lanes: int
    sizes: tuple[int, ...]
    """Targets per shard (shards without targets are never run)."""

    def path(self, shard: int) -> Path:
        """The JSON-lines target file of ``shard``."""
        return self.directory / f"shard-{shard:05d}.jsonl"

    def targets(self, shard: int) -> Iterator[Target]:
        """The targets of ``shard``, in the order the target list gave them."""
        return read_targets(self.path(shard))

    @property
    def total(self) -> int:
        """Targets in the campaign."""
        return sum(self.sizes)

    @classmethod
    def load(cls, directory: Path) -> ShardPlan:
        """The plan saved in ``directory``; :class:`PinlabError` if there is none."""
        try:
            saved = json.loads((directory / "plan.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise PinlabError(f"{directory}: no readable shard plan (plan.json)") from None
        return cls(directory, int(saved["shards"]), int(saved["lanes"]), tuple(saved["sizes"]))


def plan_shards(
    targets: Iterable[Target], directory: str | Path, *, shards: int, lanes: int = 1
) -> ShardPlan:
    """Stream ``targets`` into ``shards`` target files by politeness key; save the plan.

    Memory stays bounded (a few thousand lines buffered per shard); ``plan.json`` is
    written last, so a plan that exists is complete.
    """
    # Here, not at the top: collector processes read their shard with read_targets and
    # must not pay for importing DuckDB and pandas.
    from pinlab.store import write_atomic

    if shards < 1 or lanes < 1:
        raise ValueError("shards and lanes must be at least 1")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    plan = ShardPlan(folder, shards, lanes, ())
    buffers: dict[int, list[str]] = {}
    sizes = [0] * shards

    def flush(shard: int) -> None:
        with plan.path(shard).open("a", encoding="utf-8") as handle:
            handle.writelines(buffers.pop(shard))

    for index in range(shards):
        plan.path(index).unlink(missing_ok=True)
    for target in targets:
        lane = _stable_hash(target.key) % lanes if lanes > 1 else 0
        shard = (_stable_hash(shard_key(target)) + lane) % shards
        line = json.dumps([target.host, target.port, target.sni, target.ip]) + "\n"
        buffers.setdefault(shard, []).append(line)
        sizes[shard] += 1
        if len(buffers[shard]) >= _FLUSH_LINES:
            flush(shard)
    for shard in list(buffers):
        flush(shard)
    with write_atomic(folder / "plan.json") as temporary:
        temporary.write_text(json.dumps({"shards": shards, "lanes": lanes, "sizes": sizes}))
    return dataclasses.replace(plan, sizes=tuple(sizes))


def read_targets(path: Path) -> Iterator[Target]:
    """The targets of a shard file, in order."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            host, port, sni, ip = json.loads(line)
            yield Target(host, int(port), sni, ip)
