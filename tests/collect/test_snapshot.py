"""A store readable while a campaign writes it: the writer publishes snapshots that another
process opens, while the store file itself stays locked by the writer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pinlab.bench.history_data import generate
from pinlab.store import Store, StoreError, latest_snapshot, open_snapshot, snapshot_dir
from pinlab.store.snapshot import SnapshotWriter
from tests.collect.conftest import Farm

PINLAB = str(Path(sys.executable).with_name("pinlab"))
TARGETS = 200


def test_a_reader_follows_a_running_campaign_through_snapshots(tmp_path: Path, farm: Farm) -> None:
    targets = tmp_path / "targets.txt"
    port = farm.nginx.port
    targets.write_text("".join(f"127.0.0.1,s{j}.farm.test,{port}\n" for j in range(TARGETS)))
    db = tmp_path / "store.duckdb"
    with pytest.raises(StoreError, match="no snapshot to read"):
        open_snapshot(db)
    process = subprocess.Popen(
        [PINLAB, "collect", str(targets), "--db", str(db), "--rate", "60",
         "--snapshot-every", "0.2", "--timeout", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[int] = []
    refused = False
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if not refused and db.exists():
            try:
                Store.open(db, read_only=True).close()
            except StoreError as error:  # the file itself is the writer's alone
                refused = "in use by another process" in str(error)
        if latest_snapshot(db) is not None:
            with open_snapshot(db) as snapshot:
                seen.append(snapshot.counts()["observations"])
        time.sleep(0.1)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert refused
    during = [count for count in seen if 0 < count < TARGETS]
    assert during, f"no partial snapshot was read while collecting: {seen}"
    assert seen == sorted(seen)  # snapshots only grow
    with open_snapshot(db) as snapshot, Store.open(db, read_only=True) as store:
        assert snapshot.counts() == store.counts()
        assert snapshot.counts()["observations"] == TARGETS
        assert list(snapshot.scans_df()["finished_at"].notna()) == [True]
    assert len(list(snapshot_dir(db).iterdir())) <= 2  # old snapshots are removed


def test_a_snapshot_being_read_outlives_newer_ones(tmp_path: Path) -> None:
    """A reader slower than two intervals kept losing its Parquet files mid-query (the
    writer removed all but the two newest snapshots). Now the snapshot it holds stays until
    it closes, and the last one to let go of an old snapshot removes it."""
    db = tmp_path / "store.duckdb"
    with Store.open(db) as store:
        generate(store.connection, hosts=10)
        snapshots = SnapshotWriter(db, every=3600)
        snapshots(store.connection, force=True)
        with open_snapshot(db) as reader:
            held = latest_snapshot(db)
            for _ in range(3):  # the writer moves on by three snapshots
                snapshots(store.connection, force=True)
            assert held is not None
            assert held.is_dir()
            assert reader.counts()["observations"] == 120  # still readable, every part there
            assert len(list(snapshot_dir(db).iterdir())) == 3  # the held one and two newest
        assert not held.exists()  # removed by the reader as it let go
        assert len(list(snapshot_dir(db).iterdir())) == 2
        snapshots(store.connection, force=True)  # nobody reads: the writer prunes as before
        assert len(list(snapshot_dir(db).iterdir())) == 2
