"""Campaigns against the simulated internet: every planted outcome is recorded as its
status, once; a kill -9 mid-campaign then --resume still loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pinlab.bench.internet import Simulation, campaign_options, simulated_internet
from pinlab.certs import Certificate
from pinlab.collect import Target, collect
from pinlab.store import Scan, Store
from pinlab.testbed.internet import EXPECTED_STATUS, Scenario
from pinlab.verify import TrustStore

SCENARIO = Path(__file__).resolve().parents[2] / "data" / "internet" / "every-outcome.toml"
NAMES = 200
PINLAB = str(Path(sys.executable).with_name("pinlab"))


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulation]:
    with simulated_internet(Scenario.from_toml(SCENARIO), NAMES) as simulation:
        yield simulation


def _anchors(sim: Simulation) -> TrustStore:
    return TrustStore.from_certificates([Certificate.from_der(sim.root.der)], name="sim")


def _now() -> datetime:
    return datetime.now(UTC)


def _rows(db: Path) -> list[tuple[str, str, str | None, str | None, str | None]]:
    with Store.open(db, read_only=True) as store:
        return store.connection.execute(
            "SELECT scan_id, host, status, ip, error FROM observations"
        ).fetchall()


def _held_to_plan(
    sim: Simulation, rows: list[tuple[str, str, str | None, str | None, str | None]]
) -> None:
    planned = {n.name: n for n in sim.plan.names}
    hosts = [row[1] for row in rows]
    assert len(hosts) == len(set(hosts)) == NAMES  # nothing lost, nothing twice
    wrong = [
        (host, planned[host].outcome, status, error)
        for _, host, status, _, error in rows
        if status != EXPECTED_STATUS[planned[host].outcome]
    ]
    assert wrong == []
    for _, host, _status, ip, error in rows:
        plan = planned[host]
        assert ip == plan.ip  # resolved through the loopback DNS server, not the system's
        if plan.outcome == "blackhole":
            assert error == "timed out during connect"  # SYNs dropped: the connect budget
        if plan.outcome == "stall":
            assert error == "timed out during handshake"


def test_every_planted_outcome_is_recorded_as_its_status(tmp_path: Path, sim: Simulation) -> None:
    assert {n.outcome for n in sim.plan.names} == set(EXPECTED_STATUS)  # all of them planted
    options = campaign_options(sim.internet.resolver, quick=True)
    scan = Scan("internet", "scan", None, None, "{}", _now(), None, "test")
    port = sim.internet.port
    targets = [Target(n.name, port, n.name) for n in sim.plan.names]
    with Store.open(tmp_path / "store.duckdb") as store:
        store.add_scan(scan)
        summary = collect(
            targets, store, scan, clock=_now, options=options,
            trust_store=_anchors(sim),
        )  # fmt: skip
        validations = store.validation_counts(scan.scan_id)
    _held_to_plan(sim, _rows(tmp_path / "store.duckdb"))
    assert summary.dns_lookups == NAMES
    assert validations == {"valid": sum(EXPECTED_STATUS[n.outcome] == "ok" for n in sim.plan.names)}


def test_kill_9_then_resume_against_the_simulated_internet(tmp_path: Path, sim: Simulation) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("\n".join(sim.targets()) + "\n")
    db = tmp_path / "store.duckdb"
    options = campaign_options(sim.internet.resolver, quick=True)
    command = [
        PINLAB, "collect", str(targets), "--db", str(db), "--resolver", options.resolver,
        "--connect-timeout", "1", "--handshake-timeout", "1.5", "--dns-timeout", "1",
    ]  # fmt: skip
    process = subprocess.Popen(
        [*command, "--rate", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wal = db.with_name(db.name + ".wal")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > 50_000:  # some batches committed
            break
        time.sleep(0.05)
    time.sleep(1.0)
    assert process.poll() is None, "the campaign finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    committed = _rows(db)
    assert 0 < len(committed) < NAMES

    result = subprocess.run(
        [*command, "--resume", "--concurrency", "100"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert "resuming scan" in result.stderr
    final = _rows(db)
    assert set(committed) <= set(final)
    assert {row[0] for row in final} == {row[0] for row in committed}
    _held_to_plan(sim, final)
