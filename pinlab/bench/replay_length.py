"""How a replay's cost grows with a timeline's length (issue 20): 365 daily vs 12 monthly.

The same synthetic hosts are observed over one year twice: 12 times (monthly) and 365 times
(daily). Each host renews its leaf every 60 days (every other host keeps its key) under one
of two intermediates of one root, so both timelines hold the same renewals. Both engines'
replays are timed on every strategy under both semantics: :func:`pinlab.survival.replay`
(the Python engine) and :func:`pinlab.survival.masks.replay_batch` (the DuckDB engine's
inner loop, fed the same chains as key ids). A replay linear in a timeline's length costs
about 365/12 ≈ 30x more on the daily timeline; one that follows each pin forward through
the rest of the timeline costs about (365/12)^2 ≈ 900x.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from pinlab.certs import Certificate
from pinlab.survival.masks import Batch, replay_batch
from pinlab.survival.python_engine import replay
from pinlab.survival.rules import STRATEGIES, CaCatalog, ObservedChain, organisation
from pinlab.testbed.pki import CA, KeyType, pooled_key

__all__ = ["LENGTHS", "batch_of", "replay_length_rows", "synthetic_timelines"]

LENGTHS = (12, 365)
"""Observations per host over one year: monthly, then daily."""
_START = datetime(2025, 1, 1, tzinfo=UTC)


def synthetic_timelines(hosts: int, observations: int) -> list[ObservedChain]:
    """``hosts`` timelines of ``observations`` evenly spread over a year (see the module)."""
    root = CA.root("Replay Length Root")
    intermediates = [root.child_ca(f"Replay Length CA {i}") for i in range(2)]
    anchor = root.record  # ``record`` parses the DER again at every call
    step = 365 / observations
    chains = []
    for host in range(hosts):
        name = f"h{host}.replay-length.test"
        key = pooled_key(KeyType.P256, host % 64)
        served = []
        for renewal in range(7):
            issuer = intermediates[(host + renewal // 2) % 2]
            leaf = issuer.issue_leaf(name, key=key if host % 2 else None)
            presented = (leaf.record, issuer.record)
            served.append((presented, (*presented, anchor)))
        for index in range(observations):
            day = index * step
            presented, verified = served[int(day) // 60]
            at = _START + timedelta(days=day)
            chains.append(ObservedChain(name, 443, name, at, presented, verified))
    return chains


def _id(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big", signed=True)


def batch_of(chains: Sequence[ObservedChain]) -> tuple[Batch, pd.DataFrame]:
    """The chains as the DuckDB engine streams them (key ids), and its CA catalog."""
    catalog = CaCatalog.build(chains)
    names = {name: number for number, name in enumerate(sorted(catalog.first_seen), 1)}
    lines = {(c.host, c.port, c.sni, c.lineage) for c in chains}
    line = {key: number for number, key in enumerate(sorted(lines))}

    def us(at: datetime) -> int:
        return int(at.timestamp() * 1_000_000)

    ids: dict[Certificate, int] = {}

    def keys(chain: Sequence[Certificate] | None) -> list[int] | None:
        if chain is None:
            return None
        return [ids.setdefault(c, _id(c.spki_sha256)) for c in chain]

    batch = Batch(
        timeline=np.array([line[(c.host, c.port, c.sni, c.lineage)] for c in chains]),
        at=np.array([us(c.observed_at) for c in chains], dtype=np.int64),
        presented=pa.array([keys(c.presented) for c in chains], pa.list_(pa.int64())),
        verified=pa.array([keys(c.verified) for c in chains], pa.list_(pa.int64())),
        leaf=np.array([_id(bytes.fromhex(c.presented[0].sha256)) for c in chains]),
        organisation=np.array([names.get(organisation(c.presented[0].issuer), 0) for c in chains]),
        leaf_not_before=np.array([us(c.leaf_not_before) for c in chains], dtype=np.int64),
        leaf_not_after=np.array([us(c.leaf_not_after) for c in chains], dtype=np.int64),
    )
    known = pd.DataFrame(
        [
            (names[name], _id(key), us(seen))
            for name, seen_keys in catalog.first_seen.items()
            for key, seen in seen_keys.items()
        ],
        columns=["organisation", "key", "first_seen"],
    )
    return batch, known


def replay_length_rows(hosts: int) -> list[dict[str, object]]:
    """One row per engine: seconds per host at each length, and their ratio."""
    plan = [(name, mode) for mode in ("verified", "presented") for name in STRATEGIES]
    timings: dict[str, dict[int, float]] = {"python": {}, "duckdb": {}}
    pins: dict[str, dict[int, int]] = {"python": {}, "duckdb": {}}
    for length in LENGTHS:
        chains = synthetic_timelines(hosts, length)
        started = time.perf_counter()
        pins["python"][length] = len(replay(chains))
        timings["python"][length] = time.perf_counter() - started
        batch, catalog = batch_of(chains)
        started = time.perf_counter()
        outcomes = replay_batch(batch, catalog, plan)
        timings["duckdb"][length] = time.perf_counter() - started
        pins["duckdb"][length] = sum(len(o.index) for o in outcomes.values())
    short, long = LENGTHS
    rows: list[dict[str, object]] = []
    for engine, seconds in timings.items():
        ratio = seconds[long] / seconds[short]
        rows.append(
            {
                "phase": f"replay {engine}, {long} vs {short} observations: x{ratio:.0f}",
                "hosts": hosts,
                "rows": pins[engine][long],
                "seconds": round(seconds[long], 3),
                "ratio": round(ratio, 1),
            }
        )
    return rows
