"""A campaign over several collector processes: same observations, one writer, clean failure."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pinlab.collect import CollectOptions, Target, collect
from pinlab.collect.processes import choose_processes, share_options
from pinlab.store import Observation, Scan, Store, StoreError
from pinlab.verify import TrustStore
from tests.collect.conftest import Farm

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def fixed_clock() -> datetime:
    """Module-level, so that collector processes can import it by name."""
    return NOW


@pytest.mark.parametrize(
    ("targets", "rate", "cores", "processes", "reason"),
    [
        (100_000, None, 4, 4, "one per usable core (4)"),
        (100_000, None, 1, 1, "one per usable core (1)"),
        (5_000, None, 4, 2, "5,000 targets, at least 2,000 per process"),
        (3_999, None, 2, 1, "3,999 targets, at least 2,000 per process"),
        (4_000, None, 2, 2, "one per usable core (2)"),
        (0, None, 2, 1, "0 targets, at least 2,000 per process"),
        (1, None, 2, 1, "1 target, at least 2,000 per process"),
        (100_000, 1_200.0, 8, 2, "--rate 1200, at least 500/s per process"),
        (100_000, 40.0, 2, 1, "--rate 40, at least 500/s per process"),
        (3_000, 40.0, 4, 1, "3,000 targets, at least 2,000 per process"),  # the first of ties
    ],
)
def test_the_default_processes_are_the_cores_a_campaign_keeps_busy(
    targets: int, rate: float | None, cores: int, processes: int, reason: str
) -> None:
    choice = choose_processes(targets, rate, cores=cores)
    assert (choice.processes, choice.reason) == (processes, reason)


@pytest.mark.parametrize(
    ("processes", "per_ip", "lanes", "each"),
    [(2, 2, 2, 1), (2, 1, 1, 1), (4, 2, 2, 1), (2, 50, 2, 25)],
)
def test_the_per_ip_cap_holds_across_processes(
    processes: int, per_ip: int, lanes: int, each: int
) -> None:
    options = CollectOptions(concurrency=100, per_ip=per_ip, rate=200.0)
    shared, got_lanes = share_options(options, processes)
    assert (got_lanes, shared.per_ip) == (lanes, each)
    assert shared.per_ip * got_lanes <= per_ip  # an address's targets span `lanes` processes
    assert shared.rate == 200.0 / processes
    assert shared.concurrency == 100 // processes


def test_two_processes_store_what_one_does(tmp_path: Path, farm: Farm) -> None:
    names = sorted(farm.chains)
    targets = [Target(f"t{j}.{name}", farm.nginx.port, name, "127.0.0.1") for j, name in
               enumerate(names * 4)]  # fmt: skip
    trust = TrustStore.from_certificates([farm.root.record], name="farm root")
    stored = {}
    for processes in (1, 2):
        store = Store.open(tmp_path / f"store-{processes}.duckdb")
        scan = Scan(f"s{processes}", "scan", None, None, "{}", NOW, None, "test")
        store.add_scan(scan)
        seen: list[Observation] = []
        summary = collect(
            targets, store, scan, clock=fixed_clock, trust_store=trust, observer=seen.append,
            options=CollectOptions(concurrency=20, per_ip=20, timeout=5), processes=processes,
        )  # fmt: skip
        assert summary.statuses == {"ok": len(targets)} == {"ok": len(seen)}
        assert summary.handshakes == len(targets)
        assert summary.distinct_certificates == len({c for ch in farm.chains.values() for c in ch})
        frame = store.observations_df()
        stored[processes] = sorted(
            (row.host, row.sni, tuple(row.chain), row.validation, row.observed_at)
            for row in frame.itertuples()
        )
        for row in frame.itertuples():  # every chain exactly as configured, in order
            assert tuple(row.chain) == farm.chains[row.sni]
        finished = store.connection.execute("SELECT finished_at IS NOT NULL FROM scans")
        assert finished.fetchall() == [(True,)]
        store.close()
    assert stored[1] == stored[2]
    assert multiprocessing.active_children() == []


def test_a_failing_store_stops_every_process(
    tmp_path: Path, farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "store.duckdb")
    scan = Scan("broken", "scan", None, None, "{}", NOW, None, "test")
    store.add_scan(scan)

    def broken(*_: object, **__: object) -> None:
        raise duckdb.IOException("disk full")

    monkeypatch.setattr(store, "write", broken)
    port = farm.nginx.port
    targets = [Target(f"t{j}.h1.farm.test", port, "h1.farm.test", "127.0.0.1") for j in range(3000)]
    with pytest.raises(StoreError, match="disk full"):
        collect(
            targets, store, scan, clock=fixed_clock, trust_store=TrustStore.certifi(),
            options=CollectOptions(per_ip=10, concurrency=10, timeout=2, batch_size=10),
            processes=2,
        )  # fmt: skip
    assert multiprocessing.active_children() == []
    unfinished = store.connection.execute("SELECT finished_at IS NULL FROM scans").fetchone()
    assert unfinished == (True,)  # left for --resume
    store.close()


def test_a_clock_that_cannot_reach_another_process_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store.duckdb")
    scan = Scan("lambda", "scan", None, None, "{}", NOW, None, "test")
    store.add_scan(scan)
    with pytest.raises(ValueError, match="module-level"):
        collect([Target("127.0.0.1", 1, None)], store, scan, clock=lambda: NOW, processes=2)
    assert multiprocessing.active_children() == []
    store.close()
