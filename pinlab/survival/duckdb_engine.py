"""Survival replay out of core: DuckDB prepares, numpy replays, a batch of timelines at a time.

:func:`pinlab.survival.replay` walks Python objects: about 15 ms per host with path
validation, fine for thousands of hosts and hopeless for ten million. :func:`replay_store`
gives the same rows (held equal by the tests) over a DuckDB store or a Parquet dataset of
any size, in bounded memory:

1. lineages come from :class:`pinlab.history.History`, derived in DuckDB;
2. each ok observation becomes one narrow row of 64-bit ids (timeline, leaf, key, issuer,
   rest of the chain), in temporary tables that DuckDB spills to disk past its memory
   limit (:mod:`pinlab.survival.duckdb_prepare`);
3. the verified path is built once per distinct (trust anchors, leaf issuer, rest of the
   presented chain), linking issuer names to subjects up to an anchor, as the verifier
   does; each observation then checks, in SQL, its leaf's and its path's validity at the
   validation time and its leaf's names against the host. Signatures and extensions are
   not re-checked (the collector's verifier did that when it recorded the chain), and the
   SHA-1-era ``legacy`` paths of the Python replay are not built: ``legacy`` is false;
4. the observations stream out in timeline order, as Arrow batches of whole timelines
   (``batch_rows`` at most, sized from the memory budget), to
   :func:`pinlab.survival.masks.replay_batch`;
5. each batch's pins are written as a Parquet part (when asked), one strategy and semantics
   at a time straight from Arrow, and folded into the survival table: pins per (strategy,
   semantics, days survived, broken), from which :class:`pinlab.survival.PinSurvival` fits
   the same curves as from the rows. Nothing held grows with the store but DuckDB's
   tables, which spill past its ``memory_limit``.

Pin times are every observation (the Python replay's release calendar is not offered here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pinlab.pins import Semantics
from pinlab.store import Store, write_atomic
from pinlab.survival.duckdb_prepare import STREAM, AnchorSets, Prepared, anchor_frame, drop_scratch
from pinlab.survival.masks import Batch, PinOutcome, replay_batch
from pinlab.survival.python_engine import REPLAY_COLUMNS
from pinlab.survival.rules import STRATEGIES, strategy
from pinlab.truststores import TrustStoreHistory
from pinlab.verify import TrustStore

__all__ = ["COUNT_COLUMNS", "ScaleReplay", "anchor_frame", "replay_store"]

COUNT_COLUMNS = [
    "strategy", "semantics", "days_survived", "broken", "death_lower_days",
    "death_upper_days", "pins",
]  # fmt: skip
_DAY_US = 86_400e6

Progress = Callable[[int, int], None]


@dataclass
class ScaleReplay:
    """What :func:`replay_store` did: pins replayed, the survival table, the parts written."""

    pins: int = 0
    observations: int = 0
    """Observations replayed (ok, every certificate known)."""
    validated: int = 0
    """Of those, the ones whose chain validated (checked under verified semantics)."""
    timelines: int = 0
    counts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COUNT_COLUMNS))
    """Pins per (strategy, semantics, days_survived, broken): ``PinSurvival().fit`` takes it."""
    parts: list[Path] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """Every replayed pin, read back from the parts (only sensible for small stores)."""
        if not self.parts:
            return pd.DataFrame(columns=REPLAY_COLUMNS)
        return pd.concat([pd.read_parquet(p) for p in self.parts], ignore_index=True)


def replay_store(
    store: Store,
    *,
    trust_store: TrustStore | TrustStoreHistory | pd.DataFrame,
    strategies: Iterable[str] | None = None,
    semantics: Iterable[Semantics] = (Semantics.VERIFIED, Semantics.PRESENTED),
    validate_at: datetime | None = None,
    out: str | Path | None = None,
    batch_rows: int = 250_000,
    progress: Progress | None = None,
) -> ScaleReplay:
    """Replay every timeline of ``store`` (a DuckDB file or a dataset) out of core.

    ``trust_store`` anchors the verified paths: one store, a root store's history (the
    release in force at each validation time, as :meth:`TrustStoreHistory.at` picks it),
    or anchors as rows with the store's ``certificates`` columns (:func:`anchor_frame`).
    Chains are validated at each observation's time, or at ``validate_at``; scans that
    recorded their own anchors and validation time (the rotation lab's) are validated
    that way, as :func:`pinlab.survival.observed_chains` does. With ``out``, a folder, each
    batch's pins are written there as ``part-NNNNN.parquet`` with the columns of
    :data:`pinlab.survival.REPLAY_COLUMNS`. ``batch_rows`` sizes the batches: whole
    timelines, at most that many observations unless one timeline alone is longer (memory,
    not results; :meth:`pinlab.memory.MemoryBudget.replay_batch_rows` derives it from a
    budget). Give the store a budget too (:func:`pinlab.store.open_store`), or DuckDB may
    hold up to 80 % of the machine.
    """
    plan = [
        (strategy(name).name, mode.value)
        for mode in semantics
        for name in (strategies or STRATEGIES)
    ]
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    con = store.connection
    try:
        prepared = Prepared(con, _anchors_in_force(trust_store), validate_at)
        return _run(con, prepared, plan, folder, batch_rows, progress)
    finally:
        drop_scratch(con)


def _anchors_in_force(
    trust_store: TrustStore | TrustStoreHistory | pd.DataFrame,
) -> AnchorSets:
    if isinstance(trust_store, pd.DataFrame):
        return [(None, trust_store)]
    if isinstance(trust_store, TrustStore):
        return [(None, anchor_frame(trust_store))]
    if not trust_store.releases:  # no cache: the history answers with today's store
        return [(None, anchor_frame(trust_store.at(datetime.now(UTC))))]
    # Of releases on one date, the last is in force (TrustStoreHistory.release_at).
    dated = {release.released: release for release in trust_store.releases}
    return [(when, anchor_frame(trust_store.at(when))) for when in sorted(dated)]


# -- the replay (numpy, one batch of whole timelines at a time) ----------------------------


def _batches(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.Table]:
    """Tables of whole timelines, each at most ``rows`` long unless one timeline alone is
    longer (it is never split). The last timeline read waits for the next record batch,
    since its observations may continue there."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for record_batch in reader:
        if not record_batch.num_rows:
            continue
        pending.append(record_batch)
        size += record_batch.num_rows
        if size <= rows:
            continue
        table = pa.Table.from_batches(pending)
        position = 0
        for cut in _cuts(_starts(table), rows):
            yield table.slice(position, cut - position)
            position = cut
        pending = table.slice(position).to_batches()
        size = len(table) - position
    if size:  # the stream has ended: the last timeline is whole too
        table = pa.Table.from_batches(pending)
        position = 0
        for cut in _cuts(np.append(_starts(table), len(table)), rows):
            yield table.slice(position, cut - position)
            position = cut


def _starts(table: pa.Table) -> np.ndarray:
    """Where each timeline of ``table`` but the first begins."""
    timelines = table.column("tl").to_numpy()
    starts: np.ndarray = np.flatnonzero(timelines[1:] != timelines[:-1]) + 1
    return starts


def _cuts(starts: np.ndarray, rows: int) -> Iterator[int]:
    """Where to cut a table whose timelines begin at ``starts`` (0 left out) into pieces of
    whole timelines of at most ``rows``; the rows after the last cut are left over."""
    position = 0
    while True:
        # the furthest timeline start that keeps the piece within ``rows``
        index = int(np.searchsorted(starts, position + rows, side="right")) - 1
        if index < 0 or starts[index] <= position:  # one timeline longer than ``rows``
            index = int(np.searchsorted(starts, position, side="right"))
            if index >= len(starts):
                return
        position = int(starts[index])
        yield position


def _run(
    con: duckdb.DuckDBPyConnection,
    prepared: Prepared,
    plan: list[tuple[str, str]],
    folder: Path | None,
    batch_rows: int,
    progress: Progress | None,
) -> ScaleReplay:
    result = ScaleReplay()
    [(total,)] = con.execute("SELECT count(*) FROM _replay_observations").fetchall()
    names, joins = "", ""
    if folder is not None:  # names of the pins' hosts and leaves, for the rows
        names = ", h.host, h.port, h.sni, r.lineage, c.sha256 AS pinned_leaf"
        joins = (
            "\nJOIN _history_hosts h USING (hid)"
            "\nJOIN (SELECT DISTINCT ON (sha256) sha256 FROM certificates) c"
            " ON hash(c.sha256) = r.lid"
        )
    relation = con.sql(STREAM.format(names=names, joins=joins))
    reader = relation.to_arrow_reader(batch_size=max(1_024, min(batch_rows, 131_072)))
    try:
        return _replay_batches(reader, prepared, plan, folder, batch_rows, progress, result, total)
    finally:
        reader.close()


def _replay_batches(
    reader: pa.RecordBatchReader,
    prepared: Prepared,
    plan: list[tuple[str, str]],
    folder: Path | None,
    batch_rows: int,
    progress: Progress | None,
    result: ScaleReplay,
    total: int,
) -> ScaleReplay:
    keys = COUNT_COLUMNS[:-1]
    counts = pd.DataFrame(columns=COUNT_COLUMNS)
    for number, table in enumerate(_batches(reader, batch_rows)):
        batch = Batch(
            timeline=table.column("tl").to_numpy(),
            at=table.column("t_us").to_numpy(),
            presented=table.column("presented").combine_chunks(),
            verified=table.column("verified").combine_chunks(),
            leaf=table.column("leaf").to_numpy(),
            organisation=table.column("organisation").to_numpy(),
            leaf_not_before=table.column("nb").to_numpy(),
            leaf_not_after=table.column("na").to_numpy(),
        )
        outcomes = replay_batch(batch, prepared.catalog, plan)
        # The survival table is folded in as it goes: its size is the distinct outcomes,
        # not the pins, so it stays small however many batches there are.
        merged = pd.concat([df for df in (counts, _count(outcomes, batch)) if len(df)])
        counts = merged.groupby(keys, sort=True, dropna=False)["pins"].sum().reset_index()
        result.pins += sum(len(o.index) for o in outcomes.values())
        result.observations += len(batch)
        result.validated += len(batch) - batch.verified.null_count
        timelines = batch.timeline
        result.timelines += int(np.count_nonzero(timelines[1:] != timelines[:-1])) + 1
        if folder is not None:
            path = folder / f"part-{number:05d}.parquet"
            with write_atomic(path) as temporary:
                _write_rows(temporary, table, batch, outcomes)
            result.parts.append(path)
        if progress is not None:
            progress(result.observations, total)
    result.counts = counts.reset_index(drop=True) if len(counts) else result.counts
    return result


def _count(outcomes: dict[tuple[str, str], PinOutcome], batch: Batch) -> pd.DataFrame:
    frames = []
    for (name, mode), outcome in outcomes.items():
        pinned_us = batch.at[outcome.index]
        lower, upper = _death_bounds(batch, outcome, pinned_us)
        broken = outcome.broken
        frame = pd.DataFrame({
            "days_survived": np.maximum(outcome.end_at - pinned_us, 0) / _DAY_US,
            "broken": broken,
            "death_lower_days": np.where(broken, lower, np.nan),
            "death_upper_days": np.where(broken, upper, np.nan),
        })  # fmt: skip
        keys = ["days_survived", "broken", "death_lower_days", "death_upper_days"]
        grouped = frame.groupby(keys, as_index=False, dropna=False).size()
        frames.append(
            grouped.rename(columns={"size": "pins"}).assign(strategy=name, semantics=mode)
        )
    return (
        pd.concat(frames, ignore_index=True)[COUNT_COLUMNS]
        if frames
        else pd.DataFrame(columns=COUNT_COLUMNS)
    )


ROW_SCHEMA = pa.schema([
    ("host", pa.string()), ("port", pa.int64()), ("sni", pa.string()),
    ("lineage", pa.string()), ("strategy", pa.string()), ("semantics", pa.string()),
    ("pinned_at", pa.timestamp("ns", tz="UTC")), ("broken_at", pa.timestamp("ns", tz="UTC")),
    ("days_survived", pa.float64()), ("broken", pa.bool_()), ("pinned_leaf", pa.string()),
    ("checks", pa.int64()), ("legacy", pa.bool_()),
    ("last_checked_at", pa.timestamp("ns", tz="UTC")), ("death_lower_days", pa.float64()),
    ("death_upper_days", pa.float64()), ("unchecked", pa.int64()),
])  # fmt: skip
"""The parts' columns (:data:`pinlab.survival.REPLAY_COLUMNS`), typed as pandas wrote them."""


def _write_rows(
    path: Path, table: pa.Table, batch: Batch, outcomes: dict[tuple[str, str], PinOutcome]
) -> None:
    """Write the batch's pins as replay rows (the Python engine's columns and rules), one
    row group per strategy and semantics: only one of them is built at a time, in Arrow,
    never as a frame of Python strings."""
    named = table.select(["host", "port", "sni", "lineage", "pinned_leaf"])
    with pq.ParquetWriter(path, ROW_SCHEMA) as writer:
        if not outcomes:
            writer.write_table(ROW_SCHEMA.empty_table())
        for (name, mode), outcome in outcomes.items():
            writer.write_table(_piece(named, batch, name, mode, outcome))


def _piece(named: pa.Table, batch: Batch, name: str, mode: str, outcome: PinOutcome) -> pa.Table:
    pinned = named.take(pa.array(outcome.index, pa.int64()))
    pinned_us = batch.at[outcome.index]
    broken = outcome.broken
    lower, upper = _death_bounds(batch, outcome, pinned_us)
    count = len(outcome.index)
    columns = {
        "host": pinned.column("host"),
        "port": pinned.column("port").cast(pa.int64()),
        "sni": pinned.column("sni"),
        "lineage": pinned.column("lineage"),
        "strategy": pa.repeat(pa.scalar(name, pa.string()), count),
        "semantics": pa.repeat(pa.scalar(mode, pa.string()), count),
        "pinned_at": _times(pinned_us),
        "broken_at": _times(np.where(broken, outcome.broken_at, 0), valid=broken),
        "days_survived": pa.array(np.maximum(outcome.end_at - pinned_us, 0) / _DAY_US),
        "broken": pa.array(broken, pa.bool_()),
        "pinned_leaf": pinned.column("pinned_leaf"),
        "checks": pa.array(outcome.checks, pa.int64()),
        "legacy": pa.repeat(pa.scalar(False), count),
        "last_checked_at": _times(outcome.end_at),
        "death_lower_days": pa.array(lower, pa.float64(), mask=~broken),
        "death_upper_days": pa.array(upper, pa.float64(), mask=~broken),
        "unchecked": pa.array(outcome.unchecked, pa.int64()),
    }
    return pa.Table.from_pydict(
        {field.name: columns[field.name] for field in ROW_SCHEMA}, schema=ROW_SCHEMA
    )


def _times(epoch_us: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None else ~valid
    micro = pa.array(epoch_us.astype(np.int64), pa.timestamp("us", tz="UTC"), mask=mask)
    return micro.cast(pa.timestamp("ns", tz="UTC"))


def _death_bounds(
    batch: Batch, outcome: PinOutcome, pinned_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Days from the pin to the earliest and latest moment the server can have switched,
    by the Python engine's rule: before the first failing check and the old leaf's notAfter,
    after the last passing check and the new leaf's notBefore where that is not later (the
    new leaf can be the old one's successor); meaningful where the pin broke."""
    passed = np.where(outcome.last_pass == outcome.index, pinned_us, batch.at[outcome.last_pass])
    failing = batch.at[outcome.first_fail]
    upper_us = np.minimum(failing, np.maximum(batch.leaf_not_after[outcome.last_pass], passed))
    issued = batch.leaf_not_before[outcome.first_fail]
    lower_us = np.where(issued <= upper_us, np.maximum(passed, issued), passed)
    return (
        np.maximum(lower_us - pinned_us, 0) / _DAY_US,
        np.maximum(upper_us - pinned_us, 0) / _DAY_US,
    )
