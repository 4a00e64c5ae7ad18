"""``pinlab collect --cluster`` against the tests' scheduler, and its usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.store import open_store
from tests.collect.conftest import ScaleFarm

runner = CliRunner()


def test_collect_over_a_scheduler_writes_a_dataset(
    tmp_path: Path, scale_farm: ScaleFarm, client: Any
) -> None:
    targets = tmp_path / "targets.txt"
    lines = [f"127.0.0.1,t{j}.h{j % scale_farm.hosts}.scale.test" for j in range(30)]
    targets.write_text("\n".join([*lines, "not a host!"]) + "\n")
    anchors = tmp_path / "root.pem"
    anchors.write_bytes(scale_farm.root.cert_pem)
    dataset = tmp_path / "dataset"
    arguments = [
        "collect", str(targets), "--db", str(dataset), "--port", str(scale_farm.nginx.port),
        "--ca-file", str(anchors), "--cluster", client.scheduler.address, "--label", "cli",
    ]  # fmt: skip
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "line 31" in result.output
    assert "shards on 2 workers" in result.output
    with open_store(dataset) as store:
        frame = store.observations_df()
        scans = store.scans_df()
    assert len(frame) == 30
    assert set(frame["validation"]) == {"valid"}
    assert scans["label"].tolist() == ["cli"]
    assert scans["finished_at"].notna().all()
    again = runner.invoke(app, [*arguments, "--resume"])
    assert again.exit_code == 0, again.output
    assert "no unfinished scan" in again.output


def test_cluster_usage_errors(tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1:1\n")
    db = ["--db", str(tmp_path / "store.duckdb")]
    result = runner.invoke(app, ["collect", str(targets), *db, "--workers", "2"])
    assert result.exit_code == 2
    assert "write a Parquet dataset" in result.output
    both = ["--workers", "1", "--cluster", "tcp://127.0.0.1:1"]
    result = runner.invoke(app, ["collect", str(targets), "--db", str(tmp_path), *both])
    assert result.exit_code == 2
    assert "not both" in result.output
