"""``pinlab history`` on a store holding the real histories."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.collect import import_pem
from pinlab.store import Store


def _store(tmp_path: Path, shared_data: Path) -> Path:
    path = tmp_path / "real.duckdb"
    with Store.open(path) as store:
        import_pem(
            store, shared_data / "real-histories/manifest.csv", now=datetime(2026, 1, 1, tzinfo=UTC)
        )
    return path


def test_ledger_file_and_summary(tmp_path: Path, shared_data: Path) -> None:
    db = _store(tmp_path, shared_data)
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"ledger{suffix}"
        result = CliRunner().invoke(app, ["history", "--db", str(db), "--out", str(out)])
        assert result.exit_code == 0, result.output
        ledger = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert len(ledger) == 44  # badssl.com: 19, its key-type changes included
        assert (ledger["host"] == "lencr.org").sum() == 13
    result = CliRunner().invoke(app, ["history", "--db", str(db), "--summary"])
    assert result.exit_code == 0, result.output
    assert "lencr.org" in result.output
    assert "18 hosts, 44 renewals" in result.output
    assert "`pinlab audit` counts only those between chains that validate" in " ".join(
        result.output.split()
    )


def test_usage_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["history", "--db", str(tmp_path / "none.duckdb"), "--summary"]
    )
    assert result.exit_code == 2
    assert "no such store" in result.output
    result = CliRunner().invoke(app, ["history", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2
    assert "--out FILE and/or --summary" in result.output
