"""Campaigns over a real two-worker LocalCluster against a real nginx on loopback."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pinlab.bench.scale import farm_targets
from pinlab.collect import CollectOptions, Target, collect
from pinlab.collect.cluster import ShardProgress, run_campaign
from pinlab.collect.plan import plan_shards, shard_key
from pinlab.store import Scan, Store
from pinlab.store.dataset import open_store, part_path, read_scans, write_scan
from pinlab.verify import TrustStore
from tests.collect.conftest import ScaleFarm

NOW = datetime(2025, 6, 1, tzinfo=UTC)
COMPARED = [
    "host", "port", "sni", "ip", "target_ip", "status", "error", "tls_version", "cipher",
    "chain", "validation", "validation_error",
]  # fmt: skip


def clock() -> datetime:
    return NOW


def _scan() -> Scan:
    return Scan(uuid.uuid4().hex, "scan", "test", "/targets.txt", "{}", NOW, None, "test")


def _trust(farm: ScaleFarm) -> TrustStore:
    return TrustStore.from_certificates([farm.root.record], name="scale root")


def _rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    frame = frame.assign(chain=frame["chain"].map(tuple))
    return sorted(frame[COMPARED].astype(object).itertuples(index=False, name=None), key=repr)


def _single_process(tmp_path: Path, targets: list[Target], farm: ScaleFarm) -> Store:
    store = Store.open(tmp_path / "single.duckdb")
    scan = _scan()
    store.add_scan(scan)
    options = CollectOptions(concurrency=20, per_ip=4, timeout=5)
    collect(targets, store, scan, clock=clock, options=options, trust_store=_trust(farm))
    return store


def test_plan_keeps_each_address_in_one_shard_per_lane(tmp_path: Path) -> None:
    targets = [Target(f"n{i}.test", 443, f"n{i}.test", f"192.0.2.{i % 5}") for i in range(200)]
    targets += [Target(f"name{i}.test", 443, f"name{i}.test") for i in range(50)]
    plan = plan_shards(targets, tmp_path / "one", shards=16)
    where: dict[str, set[int]] = {}
    for shard in range(plan.shards):
        for target in plan.targets(shard):
            where.setdefault(shard_key(target), set()).add(shard)
    assert all(len(shards) == 1 for shards in where.values())
    assert plan.total == 250

    laned = plan_shards(targets, tmp_path / "four", shards=16, lanes=4)
    seen: list[Target] = []
    spread: dict[str, set[int]] = {}
    for shard in range(laned.shards):
        for target in laned.targets(shard):
            seen.append(target)
            spread.setdefault(shard_key(target), set()).add(shard)
    assert sorted(seen, key=repr) == sorted(targets, key=repr)  # each target exactly once
    assert max(len(shards) for shards in spread.values()) == 4
    assert all(len(shards) <= 4 for shards in spread.values())


def test_two_workers_give_the_single_process_observations(
    tmp_path: Path, scale_farm: ScaleFarm, client: Any
) -> None:
    targets = farm_targets(240, scale_farm.hosts, scale_farm.nginx.port)
    single = _single_process(tmp_path, targets, scale_farm)
    dataset, scan = tmp_path / "dataset", _scan()
    totals: list[int] = []
    result = run_campaign(
        dataset, scan, client=client, clock=clock, targets=targets,
        options=CollectOptions(concurrency=20, per_ip=4, timeout=5),
        trust_store=_trust(scale_farm), shards=4, lanes=4,
        on_progress=lambda p: totals.append(p.total),
    )  # fmt: skip
    assert not result.failed
    assert result.ran == 4
    assert result.summary.observations == 240
    assert result.summary.statuses == Counter({"ok": 240})
    assert totals[-1] == 240
    with open_store(dataset) as store:
        observations = store.observations_df()
        certificates = store.certificates_df()
        assert store.scans_df()["finished_at"].notna().all()
        chains = store.chain_certificates_df()
    assert _rows(observations) == _rows(single.observations_df())
    expected = single.certificates_df().drop(columns="der")
    got = certificates.drop(columns="der").sort_values("sha256", ignore_index=True)
    pd.testing.assert_frame_equal(got, expected.sort_values("sha256", ignore_index=True))
    assert len(chains) == 2 * 240
    single.close()


def test_a_worker_killed_mid_shard_loses_and_duplicates_nothing(
    tmp_path: Path, scale_farm: ScaleFarm, client: Any
) -> None:
    targets = farm_targets(240, scale_farm.hosts, scale_farm.nginx.port)
    dataset, scan = tmp_path / "dataset", _scan()
    killed: list[ShardProgress] = []
    lock = threading.Lock()

    def kill_once(progress: ShardProgress) -> None:
        with lock:
            if killed or progress.done == 0 or progress.done >= 60:
                return
            killed.append(progress)
        os.kill(progress.pid, signal.SIGKILL)  # a real kill of the worker process

    # 80 handshakes/s over 2 slots: each shard of 60 targets takes about 1.5 s.
    result = run_campaign(
        dataset, scan, client=client, clock=clock, targets=targets,
        options=CollectOptions(concurrency=20, per_ip=4, timeout=5, rate=80),
        trust_store=_trust(scale_farm), shards=4, lanes=4, on_progress=kill_once,
    )  # fmt: skip
    assert killed, "no shard reported progress before finishing"
    victim = killed[0]
    assert 0 < victim.done < 60  # it was killed mid-shard, with rows committed locally
    assert not result.failed
    assert result.restarted >= 1
    with open_store(dataset) as store:
        frame = store.observations_df()
        assert store.scans_df()["finished_at"].notna().all()
    keys = Counter(zip(frame["host"], frame["port"], frame["sni"], frame["target_ip"], strict=True))
    assert set(keys) == {t.key for t in targets}
    assert set(keys.values()) == {1}
    assert (frame["status"] == "ok").all()
    leftovers = [p.name for p in dataset.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    # The rerun deleted the killed worker's private store from the temporary directory.
    assert list(Path(tempfile.gettempdir()).glob(f"pinlab-shard-{victim.pid}-*")) == []


def test_resume_runs_only_uncommitted_shards(
    tmp_path: Path, scale_farm: ScaleFarm, client: Any
) -> None:
    targets = farm_targets(64, scale_farm.hosts, scale_farm.nginx.port)
    dataset, scan = tmp_path / "dataset", _scan()
    options = CollectOptions(concurrency=20, per_ip=4, timeout=5)
    first = run_campaign(
        dataset, scan, client=client, clock=clock, targets=targets, options=options,
        trust_store=_trust(scale_farm), shards=4, lanes=4,
    )  # fmt: skip
    assert first.ran == 4
    # As if the driver had died before shard 2 committed: its part is missing, scan open.
    part_path(dataset, "observations", scan, 2).unlink()
    write_scan(dataset, scan)
    assert read_scans(dataset)[0].finished_at is None
    again = run_campaign(
        dataset, scan, client=client, clock=clock, options=options,
        trust_store=_trust(scale_farm),
    )  # fmt: skip
    assert (again.ran, again.already_done) == (1, 3)
    assert again.summary.skipped + again.summary.observations == 64
    with open_store(dataset) as store:
        frame = store.observations_df()
    assert len(frame) == 64
    assert frame["host"].is_unique
    assert read_scans(dataset)[0].finished_at == NOW


def test_lanes_cannot_exceed_per_ip(tmp_path: Path, client: Any) -> None:
    with pytest.raises(ValueError, match="lanes"):
        run_campaign(
            tmp_path, _scan(), client=client, clock=clock, targets=[],
            options=CollectOptions(per_ip=2), lanes=4,
        )  # fmt: skip
