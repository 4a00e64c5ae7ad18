"""``pinlab bench scale --sizes``: the commands at several sizes, with fitted exponents."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pinlab.bench.sizes import fit_exponents, parse_sizes
from tests.conformance.conftest import invoke_pinlab
from tests.test_options import assert_usage_error


def test_sizes_are_read_with_their_suffixes() -> None:
    assert parse_sizes("1k,10k, 100K,1M,250") == [250, 1_000, 10_000, 100_000, 1_000_000]
    assert parse_sizes("1.5k") == [1_500]
    for bad in ("", "abc", "0", "-1k", "1.5", "inf", "1G"):
        with pytest.raises(ValueError, match="size"):
            parse_sizes(bad)


def test_exponents_are_log_log_slopes() -> None:
    rows = pd.DataFrame({
        "command": ["a", "a", "a", "b"], "hosts": [10, 100, 1000, 10],
        "seconds": [1.0, 10.0, 100.0, 1.0], "peak_rss_mb": [5.0, 5.0, 50.0, 1.0],
    })  # fmt: skip
    fits = fit_exponents(rows).set_index("command")
    assert fits.loc["a", "time_exponent"] == pytest.approx(1.0)
    assert fits.loc["a", "time_last"] == pytest.approx(1.0)
    assert fits.loc["a", "rss_last"] == pytest.approx(1.0)
    assert pd.isna(fits.loc["b", "time_exponent"])  # one size: no slope


def test_quick_sizes_run_every_command_and_print_exponents(tmp_path: Path) -> None:
    out = tmp_path / "sizes.json"
    run = invoke_pinlab(
        "bench", "scale", "--quick", "--sizes", "20,60", "--python-max", "20",
        "--memory-limit", "1GB", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, str(run)
    for command in ("history", "simulate duckdb"):
        assert f"{command}: time ~ N^" in run.stdout
    assert "simulate python: one size measured, no exponent" in run.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["command"], r["hosts"]) for r in rows] == [
        ("history", 20), ("simulate duckdb", 20), ("simulate python", 20),
        ("history", 60), ("simulate duckdb", 60), ("simulate python", 60),
    ]  # fmt: skip
    skipped = rows[-1]
    assert skipped["seconds"] is None
    assert "not run" in skipped["note"]
    assert "not extrapolated" in skipped["note"]
    for row in rows[:-1]:
        assert row["seconds"] > 0
        assert row["peak_rss_mb"] > 50  # a child's own peak, an interpreter at least
        assert row["memory_limit"] == "1GB"


def test_bad_sizes_stop_where_they_enter() -> None:
    run = invoke_pinlab("bench", "scale", "--sizes", "1k,lots")
    assert_usage_error(run, "--sizes", "'lots' is not a host count")
