"""Backfill the store from a CT log: RFC 6962 (``get-entries``) or static-ct-api (tiles).

::

    result = backfill_log(store, "https://ct.example/log/", key=LogKey.load("log.pem"),
                          domains=DomainFilter(["example.com"]), options=BackfillOptions(),
                          clock=lambda: datetime.now(UTC))

A run reads the tree head (signature checked when the key is given), refuses a log whose
tree shrank or forked since the last run, then streams entries in batches with several
fetches in flight. With ``verify`` every batch is checked against the tree head before
it is stored: for RFC 6962 with one ``get-proof-by-hash`` per batch (its left siblings must
be the hashes of everything before the batch's last entry), for a tiled log with the hash
tiles to the right of the batch. A batch that fails stores nothing; batches before it stay
committed and a rerun resumes after them (the position is kept per log and domain filter).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

from pinlab.ct.client import HttpSource, RFC6962Log, ordered_fetch
from pinlab.ct.domains import DomainFilter
from pinlab.ct.entries import LogEntry
from pinlab.ct.errors import CTError, LogFetchError, LogMisbehaviourError
from pinlab.ct.ingest import IngestStats, IssuanceWriter, Prepared
from pinlab.ct.merkle import CompactRange, ProofError, verify_consistency, verify_inclusion
from pinlab.ct.prepare import POOL_MIN_ENTRIES, PreparePool, default_parse_workers
from pinlab.ct.registry import DEFAULT_INDEX_BYTES, last_tree_head, state_of
from pinlab.ct.static import TILE_WIDTH, TiledLog
from pinlab.ct.sth import LogKey, SignedTreeHead
from pinlab.store import Scan, Store, pinlab_version

__all__ = [
    "BACKFILL_CHECKPOINT_MIB",
    "BackfillOptions",
    "BackfillResult",
    "Progress",
    "backfill_log",
    "backfill_static",
]

BACKFILL_CHECKPOINT_MIB = 256
"""Write-ahead log a backfill lets grow before DuckDB checkpoints it (see
:meth:`pinlab.store.Store.checkpoints_every`): the benchmark's entries take 1.5 kB of
log each (certificate, observation and registry rows), so some 170,000 entries go between
checkpoints, more than a row group (122,880 rows); fewer for real certificates, which are
larger. Backfilling 400,000 entries of
``pinlab bench ct``'s log on 2 cores, two runs each: 4,928 and 5,530 entries/s against
3,948 and 4,825 at DuckDB's 16 MiB, the backfill's process at 101-115 µs an entry against
131-162, and a 294 MB store against 470 MB."""

Progress = Callable[[int, int], None]
"""Called after each committed batch with (entries done, entries to do) of the run."""


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    """How much to read and how hard to push the log."""

    start: int | None = None
    """First entry; default: where the last run with the same filter stopped, else 0."""
    end: int | None = None
    """One past the last entry; default: the tree head's size."""
    verify: bool = False
    """Check every batch against the tree head before storing it (needs the log key)."""
    batch_size: int = 1000
    """Entries per request (logs cap it, often at 256 or 1000)."""
    commit_size: int = 10_000
    """Entries per store transaction (also committed every 10 s): a crash loses at most
    that much work, and fewer commits keep a full backfill fast."""
    workers: int = 4
    """Fetches in flight."""
    rate: float | None = None
    """At most this many requests per second."""
    retries: int = 4
    backoff: float = 1.0
    timeout: float = 30.0
    merge_window: int = 10_000
    """Entries a precertificate waits for its final certificate (see pinlab.ct.ingest)."""
    parse_workers: int | None = None
    """Processes preparing entries (see pinlab.ct.prepare); 0: in this process. Default:
    one per core but the one this process keeps busy fetching, merging and writing (at
    least one), when the run reads at least ``POOL_MIN_ENTRIES`` entries."""
    index_bytes: int = DEFAULT_INDEX_BYTES
    """Memory of the index of recorded issuances (see pinlab.ct.registry)."""
    label: str | None = None


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a run did."""

    scan_id: str
    log: str
    start: int
    end: int
    tree_size: int
    verified: bool
    requests: int
    stats: IngestStats = field(repr=False)


def _log_name(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _source(url: str, options: BackfillOptions) -> HttpSource:
    return HttpSource(
        url,
        timeout=options.timeout,
        retries=options.retries,
        backoff=options.backoff,
        rate=options.rate,
    )


def _check_history(
    store: Store,
    log: str,
    sth: SignedTreeHead,
    *,
    old_root: Callable[[int], bytes] | None,
) -> None:
    """Refuse a tree that shrank or forked since the last run; ``old_root(size)`` gives the
    current tree's root at the recorded size when it can be proven (``None``: size check)."""
    previous = last_tree_head(store, log)
    if previous is None:
        return
    size, root = previous
    if sth.tree_size < size:
        raise LogMisbehaviourError(
            f"{log}: the log rewound: its tree head has {sth.tree_size} entries, "
            f"{size} were recorded before. Nothing was read."
        )
    if sth.tree_size == size and sth.root_hash != root:
        raise LogMisbehaviourError(f"{log}: forked: same tree size {size}, another root hash")
    if old_root is not None and sth.tree_size > size and old_root(size) != root:
        raise LogMisbehaviourError(
            f"{log}: the tree of {sth.tree_size} entries does not extend the tree of {size} "
            "recorded before (consistency check failed)"
        )


def _begin(
    store: Store,
    log: str,
    sth: SignedTreeHead,
    domains: DomainFilter | None,
    options: BackfillOptions,
    clock: Callable[[], datetime],
    kind: str,
) -> tuple[Scan, IssuanceWriter, int, int]:
    filter_key = domains.key if domains is not None else "*"
    state = state_of(store, log, filter_key)
    start = options.start if options.start is not None else state[1] if state else 0
    end = min(options.end if options.end is not None else sth.tree_size, sth.tree_size)
    if start < 0 or (options.end is not None and options.end < start):
        raise CTError(f"entry range {start}..{options.end} is empty or negative")
    if start > sth.tree_size:
        raise CTError(f"{log}: start {start} is beyond the log's {sth.tree_size} entries")
    parameters = {
        **{k: v for k, v in asdict(options).items() if k != "label"},
        "kind": kind, "start": start, "end": end, "tree_size": sth.tree_size,
        "domains": domains.entries if domains is not None else None, "filter": filter_key,
    }  # fmt: skip
    scan = Scan(
        scan_id=uuid.uuid4().hex,
        source="ct",
        label=options.label or f"ct:{log}",
        targets=log,
        parameters=json.dumps(parameters, sort_keys=True),
        started_at=clock(),
        finished_at=None,
        pinlab_version=pinlab_version(),
    )
    writer = IssuanceWriter(
        store, scan=scan, log=log, domains=domains, merge_window=options.merge_window,
        index_bytes=options.index_bytes,
    )  # fmt: skip
    return scan, writer, start, end


def _parse_workers(options: BackfillOptions, entries: int) -> int:
    """Processes to prepare with; 0: in this process."""
    if options.parse_workers is not None:
        return max(0, options.parse_workers)
    return default_parse_workers() if entries >= POOL_MIN_ENTRIES else 0


def _drive(
    store: Store,
    scan: Scan,
    writer: IssuanceWriter,
    batches: Iterator[tuple[int, Sequence[LogEntry]]],
    *,
    sth: SignedTreeHead,
    start: int,
    end: int,
    clock: Callable[[], datetime],
    progress: Progress | None,
    options: BackfillOptions,
) -> None:
    workers = _parse_workers(options, end - start)
    commit = functools.partial(
        _commit_all, writer, sth=sth, start=start, end=end, clock=clock, progress=progress,
        commit_size=options.commit_size,
    )  # fmt: skip
    with store.checkpoints_every(BACKFILL_CHECKPOINT_MIB):
        if workers:
            with PreparePool(writer.domains, workers=workers) as pool:
                commit((e, writer.absorb(batch)) for e, batch in pool.prepare(batches))
        else:
            commit(
                (e, [p for entry in entries if (p := writer.prepare(entry)) is not None])
                for e, entries in batches
            )
    store.finish_scan(scan.scan_id, at=clock())


def _commit_all(
    writer: IssuanceWriter,
    batches: Iterator[tuple[int, list[Prepared]]],
    *,
    sth: SignedTreeHead,
    start: int,
    end: int,
    clock: Callable[[], datetime],
    progress: Progress | None,
    commit_size: int,
) -> None:
    group: list[Prepared] = []
    counted, last_commit = start, time.monotonic()
    for batch_end, prepared in batches:
        group.extend(prepared)
        last = batch_end >= end
        if last or batch_end - counted >= commit_size or time.monotonic() - last_commit > 10:
            writer.commit(group, next_index=batch_end, sth=sth, now=clock(), flush_all=last)
            group, counted, last_commit = [], batch_end, time.monotonic()
        if progress is not None:
            progress(batch_end - start, end - start)
    if start >= end:  # nothing new: still record the tree head seen
        writer.commit([], next_index=start, sth=sth, now=clock(), flush_all=True)


def backfill_log(
    store: Store,
    url: str,
    *,
    key: LogKey | None,
    domains: DomainFilter | None,
    options: BackfillOptions,
    clock: Callable[[], datetime],
    progress: Progress | None = None,
) -> BackfillResult:
    """Backfill from an RFC 6962 log at ``url`` (see the module docstring)."""
    if options.verify and key is None:
        raise CTError("--verify needs the log's public key (--public-key FILE.pem)")
    log = _log_name(url)
    client = RFC6962Log(_source(log, options), key=key)
    sth = client.sth()

    def old_root(size: int) -> bytes:
        proof = client.consistency(size, sth.tree_size)
        previous = last_tree_head(store, log)
        assert previous is not None
        try:
            verify_consistency(size, sth.tree_size, previous[1], sth.root_hash, proof)
        except ProofError as error:
            raise LogMisbehaviourError(f"{log}: consistency proof refused: {error}") from None
        return previous[1]

    _check_history(store, log, sth, old_root=old_root if options.verify else None)
    scan, writer, start, end = _begin(store, log, sth, domains, options, clock, "rfc6962")
    ranges = ((a, min(a + options.batch_size, end)) for a in range(start, end, options.batch_size))
    fetched = ordered_fetch(ranges, lambda r: client.entries(*r), workers=options.workers)

    def batches() -> Iterator[tuple[int, Sequence[LogEntry]]]:
        compact: CompactRange | None = None
        for (_, batch_end), entries in fetched:
            if options.verify:
                compact = _verify_batch(client, sth, entries, compact)
            yield batch_end, entries

    _drive(
        store,
        scan,
        writer,
        batches(),
        sth=sth,
        start=start,
        end=end,
        clock=clock,
        progress=progress,
        options=options,
    )
    return BackfillResult(
        scan.scan_id, log, start, end, sth.tree_size, options.verify, client.source.requests,
        writer.stats,
    )  # fmt: skip


def _verify_batch(
    client: RFC6962Log,
    sth: SignedTreeHead,
    entries: Sequence[LogEntry],
    compact: CompactRange | None,
) -> CompactRange:
    """Check a batch against the tree head; return the compact range after it."""
    first, last = entries[0], entries[-1]

    def proven(entry: LogEntry) -> CompactRange:
        try:
            index, path = client.proof_by_hash(entry.leaf_hash, sth.tree_size)
        except LogFetchError as error:
            if error.status != 404:
                raise
            # The log served this entry below the tree size of its own tree head, yet does
            # not know its hash: the entry is not in its tree (RFC 6962 section 4.5).
            raise LogMisbehaviourError(
                f"entry {entry.index}: the log does not know the leaf hash of the entry it "
                f"served (get-proof-by-hash answered HTTP 404 for the tree head of size "
                f"{sth.tree_size}): the log served an entry that is not in its tree. Nothing "
                "of this batch was stored; rerunning will not help, report it to the log's "
                "operator"
            ) from None
        if index != entry.index:
            raise LogMisbehaviourError(
                f"entry {entry.index}: the log proves its hash at index {index}"
            )
        try:
            return verify_inclusion(entry.leaf_hash, index, sth.tree_size, path, sth.root_hash)
        except ProofError as error:
            raise LogMisbehaviourError(
                f"entry {entry.index}: not included in the tree head of size {sth.tree_size} "
                f"({error}): the log served an entry that is not in its tree"
            ) from None

    if compact is None:
        compact = CompactRange() if first.index == 0 else proven(first)
    work = compact.copy()
    for entry in entries[:-1]:
        work.append(entry.leaf_hash)
    if last.index + 1 < sth.tree_size:
        if proven(last).hashes != work.hashes:
            raise LogMisbehaviourError(
                f"entries {first.index}-{last.index} do not hash into the tree head of size "
                f"{sth.tree_size}: the log served entries that are not in its tree"
            )
        work.append(last.leaf_hash)
    else:
        work.append(last.leaf_hash)
        if work.root() != sth.root_hash:
            raise LogMisbehaviourError(
                f"entries {first.index}-{last.index} do not hash to the root of the tree "
                f"head of size {sth.tree_size}: the log served entries that are not in its tree"
            )
    return work


def backfill_static(
    store: Store,
    url: str,
    *,
    key: LogKey | None,
    domains: DomainFilter | None,
    options: BackfillOptions,
    clock: Callable[[], datetime],
    progress: Progress | None = None,
) -> BackfillResult:
    """Backfill from a static-ct-api log whose monitoring prefix is ``url``."""
    if options.verify and key is None:
        raise CTError("--verify needs the log's public key (--public-key FILE.pem)")
    log = _log_name(url)
    tiled = TiledLog(_source(log, options), key=key)
    sth = tiled.checkpoint()
    _check_history(
        store, log, sth, old_root=(lambda size: tiled.compact_range(size, sth.tree_size).root())
        if options.verify else None,
    )  # fmt: skip
    scan, writer, start, end = _begin(store, log, sth, domains, options, clock, "static")
    tiles = range(start // TILE_WIDTH, -(-end // TILE_WIDTH))
    fetched = ordered_fetch(
        tiles, lambda n: tiled.data_tile(n, sth.tree_size), workers=options.workers
    )
    per_batch = max(1, options.batch_size // TILE_WIDTH)

    def batches() -> Iterator[tuple[int, Sequence[LogEntry]]]:
        compact: CompactRange | None = None
        pending: list[LogEntry] = []
        for number, (_, entries) in enumerate(fetched, start=1):
            pending.extend(entries)
            if number % per_batch and number != len(tiles):
                continue
            if options.verify:
                if compact is None:
                    compact = tiled.compact_range(pending[0].index, sth.tree_size)
                for entry in pending:
                    compact.append(entry.leaf_hash)
                if tiled.complete(compact, sth.tree_size) != sth.root_hash:
                    raise LogMisbehaviourError(
                        f"entries {pending[0].index}-{pending[-1].index} do not hash into the "
                        f"checkpoint of size {sth.tree_size}: the log served entries that are "
                        "not in its tree"
                    )
            batch_end = min(pending[-1].index + 1, end)
            yield batch_end, [e for e in pending if start <= e.index < end]
            pending = []

    _drive(
        store,
        scan,
        writer,
        batches(),
        sth=sth,
        start=start,
        end=end,
        clock=clock,
        progress=progress,
        options=options,
    )
    return BackfillResult(
        scan.scan_id, log, start, end, sth.tree_size, options.verify, tiled.source.requests,
        writer.stats,
    )  # fmt: skip
