"""One collector process of a multi-core campaign: its shard's handshakes, results to the parent.

:func:`run_worker` runs in a process started by :mod:`pinlab.collect.processes`. It runs the
collector's asyncio engine over its shard's target file, and instead of writing a store it
sends each hand-over of finished results (observations and the certificate rows first seen)
to the parent through one ``multiprocessing`` queue; the parent is the store's only writer,
since DuckDB admits one. Messages are tuples: ``("results", index, [results])``, then
``("done", index, handshakes)``, or ``("error", index, traceback)`` for a bug.

The process ignores SIGINT (Ctrl-C reaches the whole process group; the parent decides
when to stop, and stops it with SIGTERM) and dies with its parent: a parent killed with
``kill -9`` leaves no collector running, and the results still in the pipe were never
committed, so ``--resume`` does them again. Its imports stay light (no DuckDB, no pandas)
so that it starts in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

from pinlab.certs import Certificate
from pinlab.children import die_with_parent
from pinlab.collect import loop as event_loop
from pinlab.collect.engine import CollectOptions, _Engine, _Result
from pinlab.collect.plan import read_targets
from pinlab.store.records import Scan
from pinlab.verify import TrustStore

__all__ = ["WorkerSpec", "run_worker"]

_PARENT_POLL = 0.5


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything one collector process needs (picklable)."""

    index: int
    targets: str
    """The shard's JSON-lines target file (complete once the parent sets ``ready``)."""
    scan: Scan
    options: CollectOptions
    """This process's share: ``concurrency``, ``per_ip`` and ``rate`` already divided."""
    anchors: tuple[bytes, ...]
    """DER of the trust anchors (a TrustStore itself does not pickle)."""
    anchors_name: str
    clock: Callable[[], datetime]
    validation_clock: Callable[[], datetime] | None
    parent: int
    """The parent's pid: once it is gone, nobody will read what this process sends."""


class _Outbox:
    """The engine's hand-over, tagged with this process's index, into the parent's queue."""

    def __init__(self, queue: Queue[tuple[str, int, object]], index: int) -> None:
        self.mp_queue, self.index = queue, index

    def put(self, item: list[_Result], /) -> None:
        self.mp_queue.put(("results", self.index, item))

    def put_nowait(self, item: list[_Result], /) -> None:
        self.mp_queue.put_nowait(("results", self.index, item))


class _ToParent:
    """The engine's sink in a collector process: alive as long as the parent is."""

    def __init__(self, queue: Queue[tuple[str, int, object]], index: int, parent: int) -> None:
        self.queue = _Outbox(queue, index)
        self.error: BaseException | None = None
        self.parent = parent

    def is_alive(self) -> bool:
        return os.getppid() == self.parent


async def _watch_parent(parent: int) -> None:
    # Where PR_SET_PDEATHSIG is missing: an orphan stops itself within half a second.
    while os.getppid() == parent:
        await asyncio.sleep(_PARENT_POLL)
    os._exit(1)


def run_worker(spec: WorkerSpec, queue: Queue[tuple[str, int, object]], ready: Event) -> None:
    """Collect the shard of ``spec`` once ``ready`` is set; results go to ``queue``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(spec.parent)
    try:
        roots = [Certificate.from_der(der) for der in spec.anchors]
        trust = TrustStore.from_certificates(roots, name=spec.anchors_name)
        while not ready.wait(_PARENT_POLL):  # the parent is still writing the shard files
            if os.getppid() != spec.parent:
                os._exit(1)
        sink = _ToParent(queue, spec.index, spec.parent)
        engine = _Engine(spec.scan, spec.options, trust, spec.clock, sink, spec.validation_clock)

        async def main() -> None:
            watcher = asyncio.create_task(_watch_parent(spec.parent))
            try:
                await engine.run(read_targets(Path(spec.targets)), set())
            finally:
                watcher.cancel()

        event_loop.run(main())
        queue.put(("done", spec.index, engine.handshakes))
    except BaseException:
        queue.put(("error", spec.index, traceback.format_exc()))
        raise
