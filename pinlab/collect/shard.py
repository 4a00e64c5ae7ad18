"""One shard, on a worker: collect its targets into a private store, then into two parts.

:func:`run_shard` is the Dask task. It runs :func:`pinlab.collect.collect` on the shard's
targets into a DuckDB file in the worker's temporary directory, then copies it to the
shard's parts (:func:`pinlab.store.dataset.write_shard_parts`: atomic renames,
observations last). A worker killed mid-shard loses that private file and nothing else:
the task runs again elsewhere and writes the same part names, so nothing is lost or
counted twice (the next shard on that machine deletes the dead worker's private folder).
While it runs, the task posts its count of committed observations to the
scheduler's event log a few times a second (the driver's progress bar).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pinlab.certs import Certificate
from pinlab.collect.engine import CollectOptions, collect
from pinlab.collect.plan import read_targets
from pinlab.store import Observation, Scan, Store
from pinlab.store.dataset import write_shard_parts
from pinlab.verify import TrustStore

__all__ = ["ShardResult", "ShardSpec", "remove_orphans", "run_shard"]

_REPORT_SECONDS = 0.25
_PRIVATE = "pinlab-shard-"
"""Prefix of a shard's private folder in the worker's temporary directory (then its pid)."""


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """Everything a worker needs to collect one shard (picklable)."""

    dataset: str
    scan: Scan
    shard: int
    targets: str
    """The shard's JSON-lines target file."""
    options: CollectOptions
    anchors: tuple[bytes, ...]
    """DER of the trust anchors (a TrustStore itself does not pickle)."""
    anchors_name: str
    clock: Callable[[], datetime]
    topic: str


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What one shard's collection did."""

    shard: int
    statuses: dict[str, int]
    handshakes: int
    observations: int
    elapsed: float
    pid: int


_TRUST_STORES: dict[tuple[str, tuple[bytes, ...]], TrustStore] = {}


def _trust_store(name: str, anchors: tuple[bytes, ...]) -> TrustStore:
    key = (name, anchors)
    if key not in _TRUST_STORES:
        roots = [Certificate.from_der(der) for der in anchors]
        _TRUST_STORES[key] = TrustStore.from_certificates(roots, name=name)
    return _TRUST_STORES[key]


class _Reporter:
    """Posts a shard's committed count to the scheduler's event log, a few times a second."""

    def __init__(self, topic: str, shard: int) -> None:
        try:
            from distributed import get_worker

            self.worker: Any = get_worker()
        except (ImportError, ValueError):  # run outside a Dask worker: nobody to tell
            self.worker = None
        self.topic, self.shard = topic, shard
        self.run = uuid.uuid4().hex
        self.done = 0
        self.sent = -1
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="pinlab-progress", daemon=True)

    def __enter__(self) -> _Reporter:
        if self.worker is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self.send()

    def observe(self, _observation: Observation) -> None:
        self.done += 1  # called by the collector's one writer thread only

    def _loop(self) -> None:
        while not self.stopped.wait(_REPORT_SECONDS):
            self.send()

    def send(self) -> None:
        done = self.done
        if self.worker is None or done == self.sent:
            return
        self.sent = done
        message = {"shard": self.shard, "run": self.run, "done": done, "pid": os.getpid()}
        self.worker.log_event(self.topic, message)


def remove_orphans(directory: Path | None = None) -> int:
    """Delete private shard stores left by killed workers (their process is gone); how many."""
    removed = 0
    for folder in Path(directory or tempfile.gettempdir()).glob(f"{_PRIVATE}*-*"):
        pid = folder.name[len(_PRIVATE) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_shard(spec: ShardSpec) -> ShardResult:
    """Collect one shard into its Parquet parts (the task each worker runs)."""
    remove_orphans()
    trust = _trust_store(spec.anchors_name, spec.anchors)
    with (
        _Reporter(spec.topic, spec.shard) as reporter,
        tempfile.TemporaryDirectory(prefix=f"{_PRIVATE}{os.getpid()}-") as private,
        Store.open(Path(private) / "shard.duckdb") as store,
    ):
        store.add_scan(spec.scan)
        summary = collect(
            read_targets(Path(spec.targets)),
            store,
            spec.scan,
            clock=spec.clock,
            options=spec.options,
            trust_store=trust,
            observer=reporter.observe,
        )
        observations = write_shard_parts(store, spec.dataset, spec.scan, spec.shard)
    return ShardResult(
        spec.shard,
        dict(summary.statuses),
        summary.handshakes,
        observations,
        summary.elapsed,
        os.getpid(),
    )
