"""``simulate --engine auto`` chooses by size, never by format, and says which and why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import certifi

from pinlab.bench.history_data import generate
from pinlab.collect import import_pem
from pinlab.commands.simulate import AUTO_PYTHON_LIMIT
from pinlab.store import Store
from tests.conformance.conftest import invoke_pinlab

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_auto_keeps_a_small_store_in_python_and_says_so(shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "real.duckdb"
    with Store.open(db) as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
    run = invoke_pinlab(
        "simulate", "--db", str(db), "--out", str(tmp_path / "replay.csv"),
        "--ca-file", certifi.where(), "--strategy", "leaf-spki",
    )  # fmt: skip
    assert run.returncode == 0, str(run)
    line = next(x for x in run.stderr.splitlines() if x.startswith("engine python:"))
    assert f"is within the Python engine's {AUTO_PYTHON_LIMIT:,}" in line
    assert "which checks every rule" in line


def test_auto_goes_out_of_core_above_the_limit_and_says_why(tmp_path: Path) -> None:
    db = tmp_path / "synthetic.duckdb"
    with Store.open(db) as store:  # about 11.6 ok observations a host
        generate(store.connection, hosts=AUTO_PYTHON_LIMIT // 11)
    run = invoke_pinlab(
        "simulate", "--db", str(db), "--out", str(tmp_path / "replay"), "--ca-file",
        certifi.where(), "--strategy", "leaf-spki", "--semantics", "presented",
        "--memory-limit", "1GB",
    )  # fmt: skip
    assert run.returncode == 0, str(run)
    line = next(x for x in run.stderr.splitlines() if x.startswith("engine duckdb:"))
    assert f"is above the Python engine's {AUTO_PYTHON_LIMIT:,}" in line
    assert "an observation there); out of core within --memory-limit 1.0 GB" in line
    assert list((tmp_path / "replay").glob("part-*.parquet"))
