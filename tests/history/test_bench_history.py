"""``pinlab bench history`` in its quick mode: the benchmark runs in CI and cannot rot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pinlab.bench.history import QUICK_HOSTS, QUICK_REPLAY_HOSTS, run_history_benchmark
from pinlab.cli import app


def test_quick_run_times_every_phase(tmp_path: Path) -> None:
    frame = run_history_benchmark(hosts=1_000_000, quick=True, directory=tmp_path)
    ledger = frame[frame["ratio"].isna()]
    assert (ledger["hosts"] == QUICK_HOSTS).all()
    phases: dict[str, dict[Any, Any]] = {str(row["phase"]): row for row in frame.to_dict("records")}
    assert phases["generate store (x12 obs)"]["rows"] == QUICK_HOSTS * 12
    assert phases["build ledger"]["rows"] > QUICK_HOSTS  # several renewals per host
    assert phases["host summary"]["rows"] == QUICK_HOSTS
    goal = phases["GOAL: ledger + summaries"]
    assert goal["seconds"] > 0
    assert goal["peak_rss_mb"] > 0
    assert goal["met"]
    assert list(tmp_path.iterdir()) == []  # the synthetic store is gone
    for engine in ("python", "duckdb"):
        [replayed] = [row for phase, row in phases.items() if phase.startswith(f"replay {engine}")]
        assert "365 vs 12 observations: x" in str(replayed["phase"])
        # every observation pins under every strategy and both semantics (root included)
        assert replayed["rows"] == QUICK_REPLAY_HOSTS * 365 * 7 * 2
        assert replayed["ratio"] > 1


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app, ["bench", "history", "--quick", "--hosts", "2000", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "ledger + summaries of 2,000 hosts" in result.output
    assert "met" in result.output
    assert "replay python, 365 vs 12 observations: x" in result.output
    assert out.exists()
