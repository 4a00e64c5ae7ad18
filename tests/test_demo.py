"""The demo's first product: the pins of every shared certificate, host by host."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from pinlab.certs import load_certificate_file
from pinlab.cli import app


def test_demo_writes_every_pin(shared_data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data", str(shared_data), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "pins.csv") in result.output.replace("\n", "")
    with (tmp_path / "pins.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 237
    hosts = [row["host"] for row in rows if row["dataset"] == "real-histories"]
    assert hosts == sorted(hosts)
    row = next(r for r in rows if r["host"] == "lencr.org" and r["position"] == "0")
    (leaf, *_) = load_certificate_file(shared_data / row["file"])
    assert row["pin"] == leaf.pin


def test_demo_without_data_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "manifest.csv is missing" in result.output
