"""``pinlab bench scale``: campaigns over Dask workers, and the analyses over 10M hosts.

**(a) campaign.** One nginx (2 workers) serves wildcard SNI hosts on loopback; the same
distinct ``127.0.0.1,tJ.hN.scale.test`` targets are collected by :func:`pinlab.collect.collect`
in this process, then over a LocalCluster of 1, 2 and 4 worker processes
(:func:`pinlab.collect.cluster.run_campaign`, one lane and one shard per worker, so that the
cluster-wide per-IP cap equals the single process's). Every row says whether the
observations are identical to the single-process run (all columns but the scan id and the
timings) and what the cluster costs per target over that run; the cluster's start-up is
reported apart. On the 2 shared cores of the development machine, more workers cannot go
faster: the figure to read is the overhead.

**(b) analysis at scale.** A synthetic dataset of ``hosts`` x 12 observations (the history
benchmark's generator, :mod:`pinlab.bench.history_data`) is written as a partitioned
Parquet dataset; then, each in a fresh child process whose peak RSS is reported:

- the renewal ledger in DuckDB over the dataset (:class:`pinlab.history.History` over
  :func:`pinlab.store.open_dataset` with a DuckDB ``memory_limit``), written to
  Parquet without passing through pandas;
- survival out of core (:func:`pinlab.survival.replay_store`: every strategy under
  both semantics, pins at every observation, verified paths to the generator's roots)
  over the whole dataset, with the same DuckDB ``memory_limit``; the survival table (pins
  per strategy, semantics, days survived and outcome) is what it keeps;
- for comparison, the Python replay (:func:`pinlab.survival.observed_chains` and
  :func:`pinlab.survival.replay`: path validation by cryptography's verifier and replay in
  Python objects). The synthetic certificates are placeholders that do not parse, so it is
  timed on a sample of real histories built here (``survival_hosts`` hosts x 12
  observations, real leaves and path validation) and its per-host rate extrapolated.

A step whose code is not in this tree (the DuckDB ledger before the history stage moved to
SQL) gives a row that says so instead of a figure.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from pinlab.bench.farm import farm_hosts as shared_farm_hosts
from pinlab.bench.farm import farm_targets as shared_farm_targets
from pinlab.collect import CollectOptions, Target, collect
from pinlab.store import Scan, Store
from pinlab.testbed.nginx import NginxFarm, VirtualHost
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore

__all__ = ["farm_hosts", "farm_targets", "run_scale_benchmark", "start_farm"]

DOMAIN = "scale.test"
FARM_HOSTS = 32
CONCURRENCY = 50
PER_IP = 48
"""Connections to the farm's one address, cluster-wide (divisible by 1, 2 and 4 lanes)."""
COMPARED = [
    "host", "port", "sni", "ip", "target_ip", "status", "error", "tls_version", "cipher",
    "chain", "validation", "validation_error",
]  # fmt: skip
COLUMNS = [
    "part", "step", "workers", "items", "seconds", "per_second", "ms_per_item",
    "overhead_ms_per_item", "startup_seconds", "identical", "peak_rss_mb", "disk_mb", "note",
]  # fmt: skip

Progress = Callable[[str], None]


def farm_hosts(count: int) -> tuple[CA, list[VirtualHost]]:
    """The benchmark farm's root and ``count`` virtual hosts ``hN.scale.test``."""
    return shared_farm_hosts(count, domain=DOMAIN, name="Scale Bench")


def farm_targets(count: int, hosts: int, port: int) -> list[Target]:
    """``count`` distinct ``127.0.0.1,tJ.hN.scale.test`` targets spread over the hosts."""
    return shared_farm_targets(count, hosts, port, domain=DOMAIN)


@contextlib.contextmanager
def start_farm(hosts: list[VirtualHost]) -> Iterator[NginxFarm]:
    """``with start_farm(hosts) as farm``: a running :class:`NginxFarm`, stopped on exit."""
    with NginxFarm(hosts, workers=2) as farm:
        yield farm


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _scan() -> Scan:
    now = _utc_now()
    return Scan(uuid.uuid4().hex, "scan", "bench scale", None, "{}", now, None, "bench")


def _rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    frame = frame.assign(chain=frame["chain"].map(tuple))
    return sorted(frame[COMPARED].astype(object).itertuples(index=False, name=None), key=repr)


def _row(part: str, step: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(part=part, step=step, **values)
    return row


# -- (a) campaigns -------------------------------------------------------------------------


def campaign_rows(
    targets: int, workers: list[int], directory: Path, progress: Progress
) -> list[dict[str, Any]]:
    """One single-process campaign, then one per worker count, over the same farm."""
    from pinlab.collect.cluster import dask_client, run_campaign
    from pinlab.store import open_store

    root, hosts = farm_hosts(FARM_HOSTS)
    trust = TrustStore.from_certificates([root.record], name="scale bench root")
    options = CollectOptions(concurrency=CONCURRENCY, per_ip=PER_IP, timeout=10)
    rows = []
    with start_farm(hosts) as nginx:
        chosen = farm_targets(targets, len(hosts), nginx.port)
        progress(f"single process, {targets} targets")
        with Store.open(directory / "single.duckdb") as store:
            scan = _scan()
            store.add_scan(scan)
            started = time.perf_counter()
            collect(chosen, store, scan, clock=_utc_now, options=options, trust_store=trust)
            single = time.perf_counter() - started
            reference = _rows(store.observations_df())
        rows.append(_campaign_row("single process", 0, targets, single, single, None, True))
        for count in workers:
            progress(f"{count} Dask workers, {targets} targets")
            started = time.perf_counter()
            with dask_client(workers=count) as client:
                client.run(importlib.import_module, "pinlab.collect.shard")  # workers warm
                startup = time.perf_counter() - started
                dataset = directory / f"dataset-{count}"
                result = run_campaign(
                    dataset, _scan(), client=client, clock=_utc_now, targets=chosen,
                    options=options, trust_store=trust, shards=count, lanes=count,
                )  # fmt: skip
            with open_store(dataset) as store:
                identical = _rows(store.observations_df()) == reference
            seconds = result.summary.elapsed
            label = f"{count} worker{'s' if count > 1 else ''}"
            rows.append(_campaign_row(label, count, targets, seconds, single, startup, identical))
    return rows


def _campaign_row(
    step: str,
    workers: int,
    targets: int,
    seconds: float,
    single: float,
    startup: float | None,
    identical: bool,
) -> dict[str, Any]:
    return _row(
        "campaign", step, workers=workers, items=targets, seconds=seconds,
        per_second=targets / seconds, ms_per_item=1000 * seconds / targets,
        overhead_ms_per_item=1000 * (seconds - single) / targets, startup_seconds=startup,
        identical=identical,
        note=f"targets; same farm, per-IP cap {PER_IP} cluster-wide",
    )  # fmt: skip


# -- (b) analyses --------------------------------------------------------------------------


def _child(step: str, *arguments: str) -> dict[str, Any]:
    """Run a step of this module in a fresh interpreter; its JSON answer and peak RSS."""
    command = [sys.executable, "-m", "pinlab.bench.scale", step, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench scale {step} failed: {done.stderr.strip()[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def generate_dataset(hosts: int, dataset: Path, memory_limit: str) -> dict[str, Any]:
    """Child step: the history benchmark's synthetic tables, written as one campaign's parts.

    The tables are plain DuckDB tables without the store's primary key: DuckDB keeps a
    key's index in memory, and 40 million certificate digests would not fit the limit.
    """
    import duckdb

    from pinlab.bench.history_data import (  # type: ignore[import-not-found,unused-ignore]
        ROUNDS,
        START,
        generate,
    )
    from pinlab.store import arrow_table
    from pinlab.store.dataset import init_dataset, part_path, write_atomic, write_scan

    end = START + timedelta(days=30 * ROUNDS)
    scan = Scan("bench", "scan", "bench scale", None, "{}", START, end, "bench")
    started = time.perf_counter()
    init_dataset(dataset)
    with tempfile.TemporaryDirectory(dir=dataset.parent) as scratch:
        con = duckdb.connect(str(Path(scratch) / "generate.duckdb"))
        try:
            con.execute("SET memory_limit = ?", [memory_limit])
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET temp_directory = ?", [str(Path(scratch) / "spill")])
            for table in ("observations", "certificates"):
                con.register("_empty", arrow_table(table, []))
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM _empty")
                con.unregister("_empty")
            generate(con, hosts=hosts, rounds=ROUNDS)
            for table in ("certificates", "observations"):
                with write_atomic(part_path(dataset, table, scan, 0)) as temporary:
                    target = str(temporary).replace("'", "''")
                    con.execute(f"COPY {table} TO '{target}' (FORMAT PARQUET, COMPRESSION ZSTD)")
            counted = con.execute("SELECT count(*) FROM observations").fetchone()
        finally:
            con.close()
    write_scan(dataset, scan)
    observations = int(counted[0]) if counted else 0
    return {"seconds": time.perf_counter() - started, "observations": observations}


def ledger_over_dataset(dataset: Path, out: Path, memory_limit: str) -> dict[str, Any]:
    """Child step: the renewal ledger in DuckDB over the dataset, written to Parquet."""
    from pinlab.history import History  # type: ignore[attr-defined,unused-ignore]
    from pinlab.store import open_dataset

    started = time.perf_counter()
    with open_dataset(dataset, memory_limit=memory_limit) as store:
        derived = History.from_store(store)
        rows = derived.write_ledger(out)
        counted = store.connection.execute(
            "SELECT count(DISTINCT host) FROM history_sightings"
        ).fetchone()
    hosts = int(counted[0]) if counted else 0
    return {"seconds": time.perf_counter() - started, "rows": rows, "hosts": hosts}


def replay_over_dataset(dataset: Path, memory_limit: str) -> dict[str, Any]:
    """Child step: the out-of-core survival replay over the synthetic dataset."""
    from pinlab.bench.history_data import trust_anchors
    from pinlab.store import open_dataset
    from pinlab.survival import replay_store

    started = time.perf_counter()
    with open_dataset(dataset, memory_limit=memory_limit) as store:
        result = replay_store(store, trust_store=trust_anchors())
    return {
        "seconds": time.perf_counter() - started, "pins": result.pins,
        "observations": result.observations, "timelines": result.timelines,
        "survival_rows": len(result.counts),
    }  # fmt: skip


def survival_sample(hosts: int) -> dict[str, Any]:
    """Child step: survival's replay over ``hosts`` real histories of 12 observations."""
    from pinlab.store import frames_from_chains
    from pinlab.survival import observed_chains, replay

    root = CA.root("Survival Sample Root")
    intermediates = [root.child_ca(f"Survival Sample CA {i}") for i in range(2)]
    sightings = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for host in range(hosts):
        name = f"h{host}.survival.test"
        key = pooled_key(KeyType.P256, host % 64)
        leaf = None
        for round_ in range(12):
            if round_ % 2 == 0:  # a 60-day renewal; every other host keeps its key
                issuer = intermediates[(host + round_ // 4) % 2]
                leaf = issuer.issue_leaf(name, key=key if host % 2 else None)
            assert leaf is not None
            at = start + timedelta(days=30 * round_, seconds=host)
            sightings.append((name, 443, name, at, [leaf.record, leaf.issuer.record]))
    observations, certificates = frames_from_chains(sightings)
    trust = TrustStore.from_certificates([root.record], name="survival sample root")
    started = time.perf_counter()
    chains = observed_chains(observations, certificates, trust_stores=trust)
    rows = replay(chains)
    return {"seconds": time.perf_counter() - started, "rows": len(rows)}


def analysis_rows(
    hosts: int, survival_hosts: int, directory: Path, memory_limit: str, progress: Progress
) -> list[dict[str, Any]]:
    """Generate the dataset, derive the ledger, time survival; one row each."""
    rows = []
    dataset = directory / f"synthetic-{hosts}"
    try:
        importlib.import_module("pinlab.bench.history_data")
    except ModuleNotFoundError:
        note = "not measured: pinlab.bench.history_data (the synthetic generator) is missing"
        rows.append(_row("analysis", "generate dataset", items=hosts, note=note))
        rows.append(_row("analysis", "ledger (DuckDB over Parquet)", items=hosts, note=note))
    else:
        if not (dataset / "scans").is_dir():
            progress(f"generating {hosts:,} hosts x 12 observations")
            shutil.rmtree(dataset, ignore_errors=True)
            made = _child("generate", str(hosts), str(dataset), memory_limit)
            rows.append(
                _row(
                    "analysis",
                    "generate dataset",
                    items=hosts,
                    seconds=made["seconds"],
                    per_second=hosts / made["seconds"],
                    peak_rss_mb=made["peak_rss_mb"],
                    disk_mb=_disk_mb(dataset),
                    note=f"{made['observations']:,} observations, partitioned Parquet",
                )
            )
        rows.append(_ledger_row(hosts, dataset, directory, memory_limit, progress))
        progress(f"survival replay over {hosts:,} hosts, out of core")
        done = _child("replay", str(dataset), memory_limit)
        rows.append(
            _row(
                "analysis", "survival (DuckDB + numpy replay)", items=hosts,
                seconds=done["seconds"], per_second=hosts / done["seconds"],
                ms_per_item=1000 * done["seconds"] / hosts, peak_rss_mb=done["peak_rss_mb"],
                note=(
                    f"{done['pins']:,} pins over {done['observations']:,} observations in "
                    f"{done['timelines']:,} timelines; all strategies, both semantics; "
                    f"memory_limit {memory_limit}"
                ),
            )
        )  # fmt: skip
    progress(f"survival replay over {survival_hosts} real histories")
    sample = _child("survival", str(survival_hosts))
    per_host = sample["seconds"] / survival_hosts
    rows.append(
        _row(
            "analysis",
            "survival (Python replay, sample)",
            items=survival_hosts,
            seconds=sample["seconds"],
            per_second=1 / per_host,
            ms_per_item=1000 * per_host,
            peak_rss_mb=sample["peak_rss_mb"],
            note=(
                f"{sample['rows']:,} replay rows; all strategies, both semantics, pin at "
                f"every observation; {hosts:,} hosts would take {hosts * per_host / 3600:,.1f} "
                "h on one core: the reference the out-of-core replay is held equal to"
            ),
        )
    )
    return rows


def _ledger_row(
    hosts: int, dataset: Path, directory: Path, memory_limit: str, progress: Progress
) -> dict[str, Any]:
    history = importlib.import_module("pinlab.history")
    if not hasattr(history, "History"):
        note = "not measured: pinlab.history has no DuckDB derivation (History) in this tree"
        return _row("analysis", "ledger (DuckDB over Parquet)", items=hosts, note=note)
    progress(f"renewal ledger over {hosts:,} hosts")
    out = directory / f"ledger-{hosts}.parquet"
    done = _child("ledger", str(dataset), str(out), memory_limit)
    out.unlink(missing_ok=True)
    return _row(
        "analysis", "ledger (DuckDB over Parquet)", items=hosts, seconds=done["seconds"],
        per_second=hosts / done["seconds"], ms_per_item=1000 * done["seconds"] / hosts,
        peak_rss_mb=done["peak_rss_mb"],
        note=f"{done['rows']:,} renewals of {done['hosts']:,} hosts; memory_limit {memory_limit}",
    )  # fmt: skip


def run_scale_benchmark(
    *,
    quick: bool,
    workers: list[int] | None = None,
    targets: int | None = None,
    hosts: int | None = None,
    survival_hosts: int | None = None,
    memory_limit: str = "4GB",
    directory: Path | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Both parts; one row per measurement (columns :data:`COLUMNS`).

    Quick mode: 200 targets over 2 workers, 5,000 synthetic hosts, 10 survival hosts.
    Full: 12,000 targets over 1, 2 and 4 workers, 10,000,000 hosts, 300 survival hosts.
    ``directory`` keeps the synthetic dataset between runs (it is generated only if
    absent); by default everything lives in a temporary directory.
    """
    say = progress or (lambda _text: None)
    workers = workers or ([2] if quick else [1, 2, 4])
    targets = targets or (200 if quick else 12_000)
    hosts = hosts or (5_000 if quick else 10_000_000)
    survival_hosts = survival_hosts or (10 if quick else 300)
    with tempfile.TemporaryDirectory(prefix="pinlab-bench-scale-") as scratch:
        folder = directory or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        rows = campaign_rows(targets, workers, Path(scratch), say)
        rows += analysis_rows(hosts, survival_hosts, folder, memory_limit, say)
    return pd.DataFrame(rows, columns=COLUMNS)


def _main(arguments: list[str]) -> None:
    step, *rest = arguments
    if step == "generate":
        answer = generate_dataset(int(rest[0]), Path(rest[1]), rest[2])
    elif step == "ledger":
        answer = ledger_over_dataset(Path(rest[0]), Path(rest[1]), rest[2])
    elif step == "replay":
        answer = replay_over_dataset(Path(rest[0]), rest[1])
    elif step == "survival":
        answer = survival_sample(int(rest[0]))
    else:
        raise SystemExit(f"unknown step {step}")
    answer["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(answer, default=int))


if __name__ == "__main__":
    _main(sys.argv[1:])
