"""Campaigns over a Dask cluster: targets sharded by IP, one pair of Parquet parts per shard.

Targets are split into shards by politeness key, so that every connection to one address
comes from one worker (:mod:`pinlab.collect.plan`: IP, or host for names; ``lanes`` for an
address behind very many names). The campaign's ``rate`` is divided by the number of
shards that run at once (the cluster's worker threads); ``concurrency`` is per worker.

**Shards are the unit of retry and resume.** The driver writes the plan (one JSON-lines
target file per shard, then ``plan.json``) under ``DATASET/_campaigns/<scan_id>/`` and the
campaign's ``scans`` row, then submits one Dask task per shard. A task
(:func:`pinlab.collect.shard.run_shard`) collects its shard into a private DuckDB file and
then into the shard's two parts; a worker killed mid-shard loses that private file,
nothing else: Dask runs the task again elsewhere and the rerun writes the same part names,
so nothing is lost or counted twice. A campaign interrupted on the driver is resumed with
the same plan; shards whose observations part exists are skipped. The ``scans`` row gets
``finished_at`` once every shard is committed. The dataset (and the plan) must be on a
filesystem every worker sees.

Progress: each shard task posts its count of committed observations to the scheduler's
event log a few times a second; the driver sums them into one figure over all shards (a
restarted shard starts again from zero).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from pinlab.collect.engine import CollectOptions, CollectSummary
from pinlab.collect.plan import ShardPlan, default_shards, plan_shards
from pinlab.collect.shard import ShardResult, ShardSpec, run_shard
from pinlab.collect.targets import Target
from pinlab.errors import PinlabError
from pinlab.store import Scan
from pinlab.store.dataset import (
    campaign_dir,
    init_dataset,
    part_path,
    read_scans,
    remove_temporaries,
    write_scan,
)
from pinlab.verify import TrustStore

__all__ = [
    "CampaignResult",
    "ClusterError",
    "ShardProgress",
    "dask_client",
    "run_campaign",
    "unfinished_campaign",
]


class ClusterError(PinlabError):
    """The Dask cluster cannot be used (unreachable scheduler, no workers)."""


@dataclass(frozen=True, slots=True)
class ShardProgress:
    """A progress event as the driver sees it."""

    shard: int
    run: str
    """Identifies one execution of the shard (a restarted shard has a new one)."""
    done: int
    """Observations committed by this execution so far."""
    pid: int
    """Process id of the worker running it."""
    total: int
    """Observations committed over the whole campaign, as far as the driver knows."""


# -- the driver ----------------------------------------------------------------------------


@dataclass(slots=True)
class CampaignResult:
    """What a cluster campaign did; ``summary`` has the single-process collector's shape."""

    summary: CollectSummary
    plan: ShardPlan
    ran: int = 0
    """Shards collected by this run."""
    already_done: int = 0
    """Shards committed before this run (resume)."""
    restarted: int = 0
    """Shards that had to start again (a worker died under them)."""
    failed: dict[int, str] = field(default_factory=dict)
    """Shards that did not commit, with the last error: rerun with resume."""
    workers: int = 0


class _Tracker:
    def __init__(self, scan_id: str, on_progress: Callable[[ShardProgress], None] | None) -> None:
        self.scan_id, self.on_progress = scan_id, on_progress
        self.lock = threading.Lock()
        self.current: dict[int, tuple[str, int]] = {}
        self.runs: dict[int, set[str]] = {}
        self.final: dict[int, int] = {}

    def event(self, event: tuple[float, dict[str, Any]]) -> None:
        message = event[1]
        shard = int(message["shard"])
        with self.lock:
            if shard in self.final:
                return
            self.current[shard] = (str(message["run"]), int(message["done"]))
            self.runs.setdefault(shard, set()).add(str(message["run"]))
            total = self._total()
        if self.on_progress is not None:
            progress = ShardProgress(
                shard, str(message["run"]), int(message["done"]), int(message["pid"]), total
            )
            self.on_progress(progress)

    def finish(self, result: ShardResult) -> None:
        with self.lock:
            self.final[result.shard] = result.observations
            total = self._total()
        if self.on_progress is not None:
            run = self.current.get(result.shard, ("", 0))[0]
            self.on_progress(
                ShardProgress(result.shard, run, result.observations, result.pid, total)
            )

    def _total(self) -> int:
        running = sum(done for shard, (_, done) in self.current.items() if shard not in self.final)
        return sum(self.final.values()) + running

    @property
    def restarted(self) -> int:
        return sum(1 for runs in self.runs.values() if len(runs) > 1)


def unfinished_campaign(dataset: str | Path, targets: str) -> Scan | None:
    """The latest unfinished cluster campaign of the target file ``targets`` in a dataset."""
    if not Path(dataset).is_dir():
        return None
    candidates = [
        scan
        for scan in read_scans(dataset)
        if scan.targets == targets and scan.finished_at is None and scan.source == "scan"
    ]
    return candidates[-1] if candidates else None


def run_campaign(
    dataset: str | Path,
    scan: Scan,
    *,
    client: Any,
    clock: Callable[[], datetime],
    targets: Iterable[Target] | None = None,
    options: CollectOptions | None = None,
    trust_store: TrustStore | None = None,
    shards: int | None = None,
    lanes: int = 1,
    retries: int = 2,
    on_progress: Callable[[ShardProgress], None] | None = None,
) -> CampaignResult:
    """Collect ``targets`` over the Dask cluster of ``client`` into the dataset.

    A new campaign needs ``targets``: they are planned into ``shards`` (default:
    :func:`default_shards` of the target count and the cluster's threads) and ``scan`` is
    recorded. If ``scan`` already has a plan in the dataset, the campaign is resumed:
    ``targets`` is ignored and only shards without an observations part run. ``retries``
    reruns a shard whose task raised; a shard whose worker died is rerun by Dask itself.
    ``on_progress`` is called from the client's event thread. Failed shards are reported
    in the result (the scan stays unfinished), not raised.
    """
    options = options or CollectOptions()
    trust_store = trust_store or TrustStore.certifi()
    if lanes < 1 or lanes > options.per_ip:
        raise ValueError(f"lanes must be between 1 and per_ip ({options.per_ip})")
    started = time.perf_counter()
    init_dataset(dataset)
    folder = campaign_dir(dataset, scan.scan_id)
    try:
        client.wait_for_workers(1, timeout=60)
    except TimeoutError:
        raise ClusterError("the Dask cluster has no worker (waited 60 s)") from None
    slots = max(1, sum(client.nthreads().values()))
    if (folder / "plan.json").exists():
        plan = ShardPlan.load(folder)
    else:
        if targets is None:
            raise ValueError(f"scan {scan.scan_id} has no plan in {dataset}: give targets")
        if shards is None:  # the count decides the shards: one pass to count first
            targets = list(targets)
            shards = default_shards(len(targets), slots)
        plan = plan_shards(targets, folder, shards=shards, lanes=lanes)
        write_scan(dataset, scan)
    shard_options = dataclasses.replace(
        options,
        per_ip=max(1, options.per_ip // plan.lanes),
        rate=options.rate / slots if options.rate else None,
    )
    anchors = tuple(root.der for root in trust_store.roots)
    topic = f"pinlab-progress-{scan.scan_id}"
    tracker = _Tracker(scan.scan_id, on_progress)
    result = CampaignResult(CollectSummary(scan), plan, workers=len(client.nthreads()))
    todo = []
    for shard, size in enumerate(plan.sizes):
        if size == 0:
            continue
        if part_path(dataset, "observations", scan, shard).exists():
            result.already_done += 1
            result.summary.skipped += size
            continue
        todo.append(shard)
    client.subscribe_topic(topic, tracker.event)
    futures = {}
    try:
        for shard in todo:
            spec = ShardSpec(
                str(Path(dataset).resolve()), scan, shard, str(plan.path(shard).resolve()),
                shard_options, anchors, trust_store.name, clock, topic,
            )  # fmt: skip
            key = f"pinlab-shard-{scan.scan_id}-{shard:05d}-{uuid.uuid4().hex[:8]}"
            futures[client.submit(run_shard, spec, key=key, pure=False, retries=retries)] = shard
        _gather(futures, tracker, result)
    finally:
        client.cancel(list(futures))
        client.unsubscribe_topic(topic)
    result.restarted = tracker.restarted
    result.summary.elapsed = time.perf_counter() - started
    if not result.failed:
        write_scan(dataset, dataclasses.replace(scan, finished_at=clock()))
        remove_temporaries(dataset, scan)
    result.summary.distinct_certificates = _distinct_certificates(dataset, scan, plan)
    return result


def _gather(futures: dict[Any, int], tracker: _Tracker, result: CampaignResult) -> None:
    from distributed import as_completed

    for future in as_completed(list(futures)):  # type: ignore[no-untyped-call]
        shard = futures[future]
        try:
            done: ShardResult = future.result()
        except Exception as error:  # a shard's failure is reported, the others go on
            result.failed[shard] = f"{type(error).__name__}: {error}"
            continue
        tracker.finish(done)
        result.ran += 1
        result.summary.statuses.update(Counter(done.statuses))
        result.summary.handshakes += done.handshakes


def _distinct_certificates(dataset: str | Path, scan: Scan, plan: ShardPlan) -> int:
    parts = [
        str(part_path(dataset, "observations", scan, shard))
        for shard, size in enumerate(plan.sizes)
        if size and part_path(dataset, "observations", scan, shard).exists()
    ]
    if not parts:
        return 0
    con = duckdb.connect()
    try:
        row = con.execute(
            "SELECT count(DISTINCT c) FROM (SELECT unnest(chain) AS c FROM read_parquet(?))",
            [parts],
        ).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def dask_client(*, workers: int | None = None, address: str | None = None) -> Iterator[Any]:
    """A Dask client: of the scheduler at ``address``, or of a LocalCluster of ``workers``.

    The LocalCluster binds 127.0.0.1 only and runs no dashboard; each worker is one process
    with one thread, i.e. one collector event loop on one core.
    """
    from distributed import Client, LocalCluster

    if (workers is None) == (address is None):
        raise ValueError("give either workers or address")
    if address is not None:
        try:
            client = Client(address, timeout=30)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as error:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address}: {error} "
                "(start one with `dask scheduler` and workers with `dask worker ADDRESS`)"
            ) from None
        with client:
            yield client
        return
    assert workers is not None
    if workers < 1:
        raise ValueError("workers must be at least 1")
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client
