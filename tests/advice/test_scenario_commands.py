"""``pinlab updates`` and ``pinlab forward`` on the real histories, through the CLI."""

from __future__ import annotations

from pathlib import Path

import certifi
import pandas as pd
from typer.testing import CliRunner

from pinlab.cli import app

CA = ["--ca-file", certifi.where()]


def test_cli_updates_tabulates_expiry_against_no_expiry(real_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "daily.csv"
    result = CliRunner().invoke(
        app,
        ["updates", "--db", str(real_db), *CA, "--strategy", "leaf-spki", "--expiry", "90",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "releases every 30 days; adoption: median 7 days" in result.output
    daily = pd.read_csv(out)
    assert set(daily["strategy"]) == {"leaf-spki"}
    assert set(daily["expiry_days"].fillna(0)) == {0, 90}
    assert daily["stranded_share"].between(0, 1).all()
    # lencr.org takes a fresh key at every renewal: some of its users are stranded.
    assert daily.loc[daily["host"] == "lencr.org", "stranded_share"].max() > 0
    bad = CliRunner().invoke(app, ["updates", "--db", str(real_db), *CA, "--never", "1"])
    assert bad.exit_code == 2
    assert "never is a share of users" in bad.output


def test_cli_forward_with_the_le_hierarchy(
    real_db: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "forward.parquet"
    result = CliRunner().invoke(
        app,
        ["forward", "--pool", str(shared_data / "le-hierarchy"), "--db", str(real_db), *CA,
         "--end", "2027-06-01", "--strategy", "intermediate-spki", "--seed", "1",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "10 rotating intermediates, seed 1" in result.output
    replayed = pd.read_parquet(out)
    assert set(replayed["scenario"]) == {
        "398-day", "398-day+rotation", "sc-081", "sc-081+rotation", "six-day",
        "six-day+rotation",
    }  # fmt: skip
    rotation = replayed[replayed["scenario"] == "398-day+rotation"]
    assert rotation["broken"].any()
    assert not replayed[replayed["scenario"] == "398-day"]["broken"].any()
    missing = CliRunner().invoke(
        app, ["forward", "--pool", str(tmp_path), "--db", str(real_db), *CA]
    )
    assert missing.exit_code == 2
    assert "needs a manifest.csv" in missing.output
