"""The demo campaign: ``pinlab collect`` against a loopback farm whose answers are known."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.store import Store


def test_the_demo_campaign_records_every_planted_outcome(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    result = CliRunner().invoke(
        app, ["demo-campaign", "--db", str(db), "--out", str(tmp_path / "campaign")]
    )
    assert result.exit_code == 0, result.output
    with Store.open(db, read_only=True) as store:
        observations = store.observations_df()
        (scan,) = store.scans_df()["scan_id"]
        validations = store.validation_counts(scan)
    assert observations["status"].value_counts().to_dict() == {"ok": 32, "refused": 2}
    assert validations == {"valid": 24, "untrusted": 4, "hostname": 4}
    # the summary shows validation apart from the handshake status
    assert "chain hostname" in result.output
    assert "chain untrusted" in result.output
    assert (tmp_path / "campaign" / "targets.txt").read_text().count("\n") == 34
