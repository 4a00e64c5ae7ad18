"""A campaign on every core: targets sharded by IP over collector processes, one store writer.

:func:`pinlab.collect.collect` with ``processes=N > 1`` lands here. The asyncio collector
uses one core (OpenSSL's handshakes, parsing and path validation all run on its thread), so
N collector processes (:mod:`pinlab.collect.worker`) each run it over a shard of the
targets and send their finished results to this process through one ``multiprocessing``
queue. This process alone writes the store, through the same writer thread and batches as a
single-process campaign (DuckDB admits one writer): a batch is one transaction, so a
``kill -9`` loses at most what was not yet committed and ``--resume`` (``skip``) does it
again, never twice.

**Sharding and politeness.** Targets are split as a cluster campaign splits them
(:func:`pinlab.collect.plan.plan_shards`): by politeness key, the pinned IP or else the
host. An address behind many names (a CDN edge, the loopback farm) would leave all but one
process idle, so each key spreads over ``lanes = min(N, per_ip)`` processes and each
process gets ``per_ip // lanes`` connections per address: the cap still holds across
processes. ``concurrency`` (handshakes in flight) and ``rate`` are the campaign's, divided
evenly among the processes.

**Start-up.** The processes are spawned (not forked: this process may hold DuckDB's and
rich's threads) before the shard files are written, so their interpreter start-up overlaps
the planning; they start collecting once the plan is complete.

**Stopping.** Ctrl-C, SIGTERM (turned into the same ``KeyboardInterrupt`` while a campaign
runs), a store failure or a crashed collector process: the processes are terminated,
what this process already received is committed, the scan stays unfinished for
``--resume``, and the shard files are removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import queue
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pinlab.children import usable_cores
from pinlab.collect.engine import CollectOptions, CollectSummary, _conclude, _Result, _Writer
from pinlab.collect.engine import collect as collect_one
from pinlab.collect.plan import ShardPlan, plan_shards
from pinlab.collect.shard import remove_orphans
from pinlab.collect.targets import Target
from pinlab.collect.worker import WorkerSpec, run_worker
from pinlab.errors import PinlabError
from pinlab.store import Observation, Scan
from pinlab.verify import TrustStore

if TYPE_CHECKING:
    from pinlab.store import Store

__all__ = [
    "CollectorProcessError",
    "ProcessChoice",
    "choose_processes",
    "collect",
    "collect_in_processes",
    "share_options",
    "usable_cores",
]

_POLL = 0.25
_QUEUED_PER_PROCESS = 32
"""Hand-overs (up to 64 results each) waiting in the pipe per process: bounded memory."""


class CollectorProcessError(PinlabError):
    """A collector process failed (a bug) or died; the scan stays unfinished for --resume."""


TARGETS_PER_PROCESS = 2_000
"""``--processes`` by default gives each process at least this many targets. A collector
process costs about a second of start-up (a Python interpreter importing cryptography,
pyOpenSSL and the collector): against the bench's nginx farm on 2 cores, one and two
processes took the same 5.3 s over 4,000 targets, two were slower below that and faster
above it (7.3 against 8.6 s over 8,000)."""
RATE_PER_PROCESS = 500.0
"""``--processes`` by default adds a process per this many targets a second of ``--rate``:
what the internet-wide plan counts a collector process to sustain against real servers."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessChoice:
    """How many collector processes ``pinlab collect`` runs when not told, and why."""

    processes: int
    reason: str


def choose_processes(targets: int, rate: float | None, cores: int | None = None) -> ProcessChoice:
    """The default ``--processes``: one per usable core, fewer when the campaign is too small
    (``targets`` below :data:`TARGETS_PER_PROCESS` per process) or too slow (``rate`` below
    :data:`RATE_PER_PROCESS` per process) to keep them busy."""
    cores = usable_cores() if cores is None else cores
    limits = [
        (cores, f"one per usable core ({cores})"),
        (
            targets // TARGETS_PER_PROCESS,
            f"{targets:,} target{'s' * (targets != 1)}, "
            f"at least {TARGETS_PER_PROCESS:,} per process",
        ),
    ]
    if rate is not None:
        limits.append(
            (
                int(rate // RATE_PER_PROCESS),
                f"--rate {rate:g}, at least {RATE_PER_PROCESS:g}/s per process",
            )
        )
    # the lowest limit, each at least one process; on a tie the first listed says why
    processes, reason = min(((max(1, n), why) for n, why in limits), key=lambda limit: limit[0])
    return ProcessChoice(processes, reason)


def share_options(options: CollectOptions, processes: int) -> tuple[CollectOptions, int]:
    """One process's share of ``options`` over ``processes``, and the lanes per address."""
    lanes = max(1, min(processes, options.per_ip))
    shared = dataclasses.replace(
        options,
        concurrency=max(1, options.concurrency // processes),
        per_ip=options.per_ip // lanes,
        rate=None if options.rate is None else options.rate / processes,
    )
    return shared, lanes


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the collector processes are stopped, not orphaned."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(workers: list[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + 5
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()


def collect(
    targets: Iterable[Target],
    store: Store,
    scan: Scan,
    *,
    clock: Callable[[], datetime],
    options: CollectOptions | None = None,
    trust_store: TrustStore | None = None,
    skip: set[tuple[object, ...]] | None = None,
    observer: Callable[[Observation], None] | None = None,
    validation_clock: Callable[[], datetime] | None = None,
    processes: int = 1,
) -> CollectSummary:
    """Collect ``targets`` into ``store`` as observations of ``scan`` (already added).

    The arguments are those of :func:`pinlab.collect.engine.collect`, which runs when
    ``processes`` is 1. With more, the targets are sharded by IP over that many collector
    processes whose results this process writes (see the module's documentation); the
    clocks must then pickle (module-level functions, not lambdas).
    """
    if processes < 1:
        raise ValueError("processes must be at least 1")
    if processes == 1:
        return collect_one(
            targets, store, scan, clock=clock, options=options, trust_store=trust_store,
            skip=skip, observer=observer, validation_clock=validation_clock,
        )  # fmt: skip
    for name, function in (("clock", clock), ("validation_clock", validation_clock)):
        try:
            pickle.dumps(function)
        except (pickle.PicklingError, AttributeError, TypeError):
            raise ValueError(
                f"{name} must reach the collector processes: give a module-level function, "
                "not a lambda or a closure (or use processes=1)"
            ) from None
    return collect_in_processes(
        targets, store, scan, processes=processes, clock=clock,
        options=options or CollectOptions(), trust_store=trust_store or TrustStore.certifi(),
        skip=skip or set(), observer=observer, validation_clock=validation_clock,
    )  # fmt: skip


def collect_in_processes(
    targets: Iterable[Target],
    store: Store,
    scan: Scan,
    *,
    processes: int,
    clock: Callable[[], datetime],
    options: CollectOptions,
    trust_store: TrustStore,
    skip: set[tuple[object, ...]],
    observer: Callable[[Observation], None] | None,
    validation_clock: Callable[[], datetime] | None,
) -> CollectSummary:
    """:func:`pinlab.collect.collect` over ``processes`` collector processes (see above)."""
    remove_orphans()  # shard files of campaigns whose process was killed
    shared, lanes = share_options(options, processes)
    context = multiprocessing.get_context("spawn")
    inbox: multiprocessing.Queue[tuple[str, int, object]] = context.Queue(
        _QUEUED_PER_PROCESS * processes
    )
    ready = context.Event()
    summary = CollectSummary(scan)
    started = time.perf_counter()
    anchors = tuple(root.der for root in trust_store.roots)
    writer = _Writer(store, options, observer)
    workers: list[BaseProcess] = []
    with (
        _sigterm_as_interrupt(),
        tempfile.TemporaryDirectory(prefix=f"pinlab-shard-{os.getpid()}-") as folder,
    ):
        try:
            paths = ShardPlan(Path(folder), processes, lanes, ())
            for index in range(processes):
                spec = WorkerSpec(
                    index, str(paths.path(index)), scan, shared,
                    anchors, trust_store.name, clock, validation_clock, os.getpid(),
                )  # fmt: skip
                worker = context.Process(
                    target=run_worker, args=(spec, inbox, ready), name=f"pinlab-collect-{index}"
                )
                worker.start()
                workers.append(worker)

            def fresh() -> Iterator[Target]:
                for target in targets:
                    if target.key in skip:
                        summary.skipped += 1
                    else:
                        yield target

            plan_shards(fresh(), folder, shards=processes, lanes=lanes)
            ready.set()
            writer.start()
            try:
                summary.handshakes = _pump(inbox, workers, writer)
            finally:
                _stop(workers)
                writer.queue.put(None)
                writer.join()
        finally:
            _stop(workers)
            inbox.close()
            inbox.cancel_join_thread()
    return _conclude(summary, store, writer, clock, started)


def _pump(
    inbox: multiprocessing.Queue[tuple[str, int, object]],
    workers: list[BaseProcess],
    writer: _Writer,
) -> int:
    """Pass results from the collector processes to the writer until all are done."""
    done: set[int] = set()
    handshakes = 0
    while len(done) < len(workers):
        if writer.error is not None or not writer.is_alive():
            return handshakes  # _conclude raises the writer's error
        try:
            kind, index, payload = inbox.get(timeout=_POLL)
        except queue.Empty:
            for index, worker in enumerate(workers):
                # exit code 0 with "done" still in the pipe is fine; anything else is a death
                if index not in done and worker.exitcode not in (None, 0):
                    raise CollectorProcessError(
                        f"collector process {index} died (exit code {worker.exitcode}); "
                        "continue with --resume"
                    ) from None
            continue
        if kind == "results":
            results: list[_Result] = payload  # type: ignore[assignment]
            writer.queue.put(results)
        elif kind == "done":
            done.add(index)
            handshakes += int(payload)  # type: ignore[call-overload]
        else:
            raise CollectorProcessError(f"collector process {index} failed:\n{payload}")
    return handshakes
