"""The commands end to end: a real kill -9 mid-campaign then --resume; bad input -> exit 2."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.store import SCHEMA_VERSION, Store
from tests.children import children, wait_until_gone
from tests.collect.conftest import Farm

PINLAB = str(Path(sys.executable).with_name("pinlab"))
runner = CliRunner()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _observations(db: Path) -> list[tuple[object, ...]]:
    with Store.open(db, read_only=True) as store:
        return store.connection.execute(
            "SELECT scan_id, host, port, sni, target_ip, observed_at, status FROM observations"
        ).fetchall()


@pytest.mark.parametrize("processes", [1, 2])
def test_kill_9_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, farm: Farm, processes: int
) -> None:
    port = farm.nginx.port
    targets = tmp_path / "targets.txt"
    lines = [f"127.0.0.1,t{j}.farm.test,{port}" for j in range(300)]
    targets.write_text("# crash test\n" + "\n".join(lines) + "\n")
    db = tmp_path / "store.duckdb"
    command = [PINLAB, "collect", str(targets), "--db", str(db), "--timeout", "2"]
    command += ["--processes", str(processes)]
    process = subprocess.Popen(
        [*command, "--rate", "40", "--per-ip", "8"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wal = db.with_name(db.name + ".wal")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > 100_000:  # some batches committed
            break
        time.sleep(0.05)
    time.sleep(0.7)
    assert process.poll() is None, "the campaign finished before it could be killed"
    workers = children(process.pid)
    assert len(workers) >= processes - 1 + int(processes > 1)  # workers, their tracker
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    wait_until_gone(workers)  # the collector processes die with their parent

    committed = _observations(db)
    assert 0 < len(committed) < 300
    scan_ids = {row[0] for row in committed}
    assert len(scan_ids) == 1

    result = subprocess.run(
        [*command, "--resume", "--per-ip", "50", "--concurrency", "50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "resuming scan" in result.stderr
    final = _observations(db)
    assert set(committed) <= set(final)
    keys = [row[:5] for row in final]
    assert len(keys) == len(set(keys)) == 300
    assert {row[0] for row in final} == scan_ids
    assert {row[6] for row in final} == {"ok"}
    with Store.open(db, read_only=True) as store:
        scans = store.scans_df()
    assert len(scans) == 1
    assert scans.iloc[0]["finished_at"] is not None


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_processes_stop_and_resume_finishes(
    tmp_path: Path, farm: Farm, how: str
) -> None:
    targets = tmp_path / "targets.txt"
    port = farm.nginx.port
    targets.write_text("".join(f"127.0.0.1,t{j}.farm.test,{port}\n" for j in range(200)))
    db = tmp_path / "store.duckdb"
    command = [PINLAB, "collect", str(targets), "--db", str(db), "--processes", "2"]
    process = subprocess.Popen(
        [*command, "--rate", "40"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # A background job starts with SIGINT ignored; a terminal's Ctrl-C would not be.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    while len(children(process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # some observations committed
    workers = children(process.pid)
    assert len(workers) == 3  # two collector processes and multiprocessing's tracker
    if how == "ctrl-c":  # the terminal signals the whole group
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted; continue with --resume" in stderr
    assert "Traceback" not in stderr
    wait_until_gone(workers)
    committed = _observations(db)
    assert 0 < len(committed) < 200
    with Store.open(db, read_only=True) as store:
        unfinished = store.connection.execute("SELECT finished_at IS NULL FROM scans")
        assert unfinished.fetchall() == [(True,)]  # left for --resume

    result = subprocess.run(
        [*command, "--resume", "--per-ip", "50"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    final = _observations(db)
    assert set(committed) <= set(final)
    assert len({row[:5] for row in final}) == len(final) == 200


def test_repeated_run_is_a_new_scan_and_round_trips(tmp_path: Path, farm: Farm) -> None:
    targets = tmp_path / "targets.txt"
    names = list(farm.chains)[:5]
    targets.write_text("".join(f"127.0.0.1,{name}\n" for name in names) + "not a host!\n")
    db = tmp_path / "store.duckdb"
    arguments = ["collect", str(targets), "--db", str(db), "--port", str(farm.nginx.port)]
    for _ in range(2):
        result = runner.invoke(app, [*arguments, "--timeout", "2", "--label", "weekly"])
        assert result.exit_code == 0, result.output
        assert "line 6" in result.output
        # not told how many processes: it says how many it runs, and why
        assert "1 collector process: 6 targets, at least 2,000 per process" in result.output
    assert "distinct certificates" in result.output
    with Store.open(db, read_only=True) as store:
        assert store.counts()["scans"] == 2
        assert store.counts()["observations"] == 10
        before = store.observations_df().sort_values(["scan_id", "host"], ignore_index=True)
    assert runner.invoke(app, ["collect", str(targets), "--db", str(db), "--strict"]).exit_code == 2

    dataset = tmp_path / "dataset"
    assert runner.invoke(app, ["export", str(dataset), "--db", str(db)]).exit_code == 0
    copy = tmp_path / "copy.duckdb"
    result = runner.invoke(app, ["import", str(dataset), "--db", str(copy)])
    assert result.exit_code == 0, result.output
    with Store.open(copy, read_only=True) as store:
        after = store.observations_df().sort_values(["scan_id", "host"], ignore_index=True)
    assert before.equals(after)


def test_import_pem_command(tmp_path: Path, shared_data: Path) -> None:
    db = tmp_path / "store.duckdb"
    manifest = shared_data / "real-histories" / "manifest.csv"
    result = runner.invoke(app, ["import-pem", str(manifest), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "imported 65 observations" in result.output
    again = runner.invoke(app, ["import-pem", str(manifest), "--db", str(db)])
    assert again.exit_code == 2
    assert "already imported" in again.output


def _newer_schema(path: Path) -> None:
    with Store.open(path) as store:
        store.connection.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)]
        )


@pytest.mark.parametrize("problem", ["missing targets", "corrupt store", "newer schema"])
def test_bad_input_exits_2_and_leaves_the_store_intact(tmp_path: Path, problem: str) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1:1\n")
    db = tmp_path / "store.duckdb"
    if problem == "missing targets":
        targets = tmp_path / "missing.txt"
        with Store.open(db):
            pass
    elif problem == "corrupt store":
        db.write_bytes(b"\x00garbage" * 512)
    else:
        _newer_schema(db)
    before = _digest(db)
    result = subprocess.run(
        [PINLAB, "collect", str(targets), "--db", str(db), "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pinlab: error: ")
    assert _digest(db) == before
    export = runner.invoke(app, ["export", str(tmp_path / "out"), "--db", str(db)])
    assert export.exit_code == (0 if problem == "missing targets" else 2)
    assert _digest(db) == before
