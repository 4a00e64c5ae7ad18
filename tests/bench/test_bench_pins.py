"""``pinlab bench pins --quick`` runs and writes a sane file (shape, not speed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pinlab.bench.cases import CHECK_OPERATIONS, OP_HANDSHAKE, OP_LIMIT, REQUIRED_OPERATIONS
from pinlab.bench.output import read_results
from pinlab.bench.pins import COLUMNS
from pinlab.commands import bench

# The bench group alone, registered as pinlab.cli registers it: the test does not depend
# on the other command modules importing cleanly.
app = typer.Typer()
bench.register(app)
app.command("version")(lambda: None)  # a second command keeps "bench" a sub-group

KEY = ("operation", "implementation", "key_type", "chain_length", "pin_set_size")
MACHINE = ("cpu_model", "cpu_count", "python", "cryptography", "cryptography_openssl")


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench") / "x.json"
    result = CliRunner().invoke(app, ["bench", "pins", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "limit" in result.output
    document: dict[str, object] = json.loads(out.read_text())
    return document


def _rows(document: dict[str, object]) -> list[dict[str, Any]]:
    rows = document["rows"]
    assert isinstance(rows, list)
    return rows


def test_every_required_operation_is_present(quick_json: dict[str, object]) -> None:
    operations = {row["operation"] for row in _rows(quick_json)}
    assert set(REQUIRED_OPERATIONS) <= operations


def test_rows_have_the_columns_and_one_row_per_key(quick_json: dict[str, object]) -> None:
    rows = _rows(quick_json)
    assert all(set(row) == set(COLUMNS) for row in rows)
    keys = [tuple(row[name] for name in KEY) for row in rows]
    assert len(keys) == len(set(keys))


def test_all_figures_are_positive(quick_json: dict[str, object]) -> None:
    for row in _rows(quick_json):
        for name in ("median_ns", "ratio_to_limit"):
            assert row[name] > 0, (name, row)
            assert math.isfinite(row[name]), (name, row)
        assert row["runs"] >= 5


def test_ratios_are_against_the_limit_of_the_same_run(quick_json: dict[str, object]) -> None:
    rows = _rows(quick_json)
    limits = {row["key_type"]: row for row in rows if row["operation"] == OP_LIMIT}
    assert limits
    for row in limits.values():
        assert row["limit_ns"] == row["median_ns"]
        assert row["ratio_to_limit"] == pytest.approx(1.0)
    for row in rows:
        # Each row's limit runs were interleaved with its own runs (paired), or, for the
        # handshakes, are the limit row's; either way the limit of the row's key type.
        limit = row["limit_ns"]
        if row["operation"] == OP_HANDSHAKE:
            assert limit == limits[row["key_type"]]["median_ns"]
        assert row["ratio_to_limit"] == pytest.approx(row["median_ns"] / limit)
        if row["operation"] in CHECK_OPERATIONS:
            examined = row["certificates_examined"]
            assert 1 <= examined <= row["chain_length"]
            assert row["ratio_per_certificate"] == pytest.approx(
                row["median_ns"] / (limit * examined)
            )


def test_handshake_rows_carry_percentiles_and_overhead(quick_json: dict[str, object]) -> None:
    handshakes = [row for row in _rows(quick_json) if row["operation"] == OP_HANDSHAKE]
    assert len(handshakes) == 2
    for row in handshakes:
        assert 0 < row["p50_ns"] <= row["p99_ns"]
    assert any(row["overhead_pct_of_handshake"] is not None for row in handshakes)


def test_machine_is_described(quick_json: dict[str, object]) -> None:
    machine = quick_json["machine"]
    assert isinstance(machine, dict)
    assert all(machine.get(name) for name in MACHINE)
    assert machine["mode"] == "quick"


def test_csv_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    result = CliRunner().invoke(app, ["bench", "pins", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = read_results(out)
    assert list(report.rows.columns) == list(COLUMNS)
    assert report.machine["mode"] == "quick"
    assert isinstance(report.machine["limit_drift"], dict)


def test_bad_out_suffix_is_refused_before_measuring(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "pins", "--quick", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert ".json or .csv" in result.output


def test_collect_without_its_module_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def missing(name: str, package: str | None = None) -> object:
        if name == "pinlab.bench.collect":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", missing)
    result = CliRunner().invoke(app, ["bench", "collect", "--quick"])
    assert result.exit_code == 2
    assert "collect" in result.output
