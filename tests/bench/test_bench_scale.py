"""``pinlab bench scale --quick``: the scale benchmark runs end to end in CI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pinlab.cli import app


def _scale_farms() -> set[int]:
    """Pids of running nginx masters that serve the scale farm's names."""
    masters = set()
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().decode().split()
            if words[:2] == ["nginx:", "master"] and "-p" in words:
                config = Path(words[words.index("-p") + 1]) / "nginx.conf"
                if "scale.test" in config.read_text():
                    masters.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return masters


def test_quick_scale_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    before = _scale_farms()
    result = CliRunner().invoke(app, ["bench", "scale", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _scale_farms() - before == set()  # its farm was stopped
    rows = json.loads(out.read_text())["rows"]
    campaigns = [row for row in rows if row["part"] == "campaign"]
    assert [row["step"] for row in campaigns] == ["single process", "2 workers"]
    assert all(row["identical"] for row in campaigns)
    assert campaigns[1]["startup_seconds"] > 0
    steps = {row["step"]: row for row in rows if row["part"] == "analysis"}
    assert set(steps) == {
        "generate dataset", "ledger (DuckDB over Parquet)", "survival (DuckDB + numpy replay)",
        "survival (Python replay, sample)",
    }  # fmt: skip
    for row in steps.values():
        assert row["seconds"] > 0
        assert row["peak_rss_mb"] > 0
    assert "5,000 hosts" in steps["ledger (DuckDB over Parquet)"]["note"]
    replayed = steps["survival (DuckDB + numpy replay)"]
    assert replayed["items"] == 5_000
    assert "pins over" in replayed["note"]
