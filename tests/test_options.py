"""Every number and date is checked where it enters, and the message gives the range."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pinlab.commands._options import OptionRangeError, parse_time
from tests.conformance.conftest import Run, invoke_pinlab

PIN = "sha256/" + "A" * 43 + "="
BAD_SECONDS = ["0", "-1", "inf", "nan", "-inf", "1e300"]
BAD_RATES = ["0", "-5", "1e-9", "inf", "nan"]
BAD_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01",
    "1949-12-31T23:59:59Z",
    "not a date",
]


def assert_usage_error(run: Run, *fragments: str) -> None:
    text = " ".join((run.stdout + run.stderr).split()).replace("│", "")
    text = " ".join(text.split())
    assert run.returncode == 2, str(run)
    assert "Traceback" not in run.stderr, str(run)
    for fragment in fragments:
        assert fragment in text, (fragment, str(run))


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize("command", ["pins", "check"])
def test_timeouts_must_be_positive_and_finite(command: str, value: str) -> None:
    extra = ["--pin", PIN] if command == "check" else []
    run = invoke_pinlab(command, "127.0.0.1:9", *extra, "--timeout", value)
    assert_usage_error(run, "--timeout", "0.001..86400")


@pytest.mark.parametrize(
    ("option", "value", "bounds"),
    [
        *(("--timeout", value, "0.001..86400") for value in BAD_SECONDS),
        *(("--processes", value, "0..1024") for value in ["-1", "1025", "99999999999999999999"]),
    ],
)
def test_collect_options_are_checked_before_the_store_is_made(
    tmp_path: Path, option: str, value: str, bounds: str
) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1:9\n")
    run = invoke_pinlab("collect", str(targets), "--db", str(tmp_path / "s.duckdb"), option, value)
    assert_usage_error(run, option, bounds)
    assert not (tmp_path / "s.duckdb").exists()


@pytest.mark.parametrize("value", BAD_RATES)
def test_rates_must_be_positive_finite_and_not_vanishing(tmp_path: Path, value: str) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1:9\n")
    run = invoke_pinlab("collect", str(targets), "--db", str(tmp_path / "s.duckdb"),
                        "--rate", value)  # fmt: skip
    assert_usage_error(run, "--rate", "0.001..1e+06")
    run = invoke_pinlab("ct", "crtsh", "example.test", "--rate", value, "--offline")
    assert_usage_error(run, "--rate", "0.001..1e+06")


@pytest.mark.parametrize("option", ["--concurrency", "--per-ip", "--workers"])
@pytest.mark.parametrize("value", ["0", "-1", "10000000"])
def test_counts_are_bounded(tmp_path: Path, option: str, value: str) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1:9\n")
    run = invoke_pinlab("collect", str(targets), "--db", str(tmp_path / "s"), option, value)
    assert_usage_error(run, option, "1..")


@pytest.mark.parametrize("value", BAD_TIMES)
def test_dates_outside_what_a_certificate_carries_are_refused(value: str) -> None:
    assert_usage_error(invoke_pinlab("pins", "127.0.0.1:9", "--at", value), "--at")
    run = invoke_pinlab("check", "127.0.0.1:9", "--pin", PIN, "--pins-expire", value)
    assert_usage_error(run, "--pins-expire")
    assert_usage_error(invoke_pinlab("audit", "x.xml", "--at", value), "--at")


def test_a_date_error_names_the_range() -> None:
    run = invoke_pinlab("pins", "127.0.0.1:9", "--at", "0001-01-01T00:00:00+01:00")
    assert_usage_error(run, "1950-01-01T00:00:00Z to 9999-12-31T23:59:59Z")


def test_parse_time_gives_utc_inside_the_range() -> None:
    assert parse_time("2030-01-01T01:00:00+01:00") == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_time("2030-01-01").tzinfo is UTC
    assert parse_time("1950-01-01T00:00:00Z") == datetime(1950, 1, 1, tzinfo=UTC)
    assert parse_time("9999-12-31T23:59:59Z").year == 9999
    for value in BAD_TIMES:
        with pytest.raises(OptionRangeError):
            parse_time(value)


BAD_DAYS = ["0", "-3", "nan", "inf", "1e9"]


@pytest.mark.parametrize("value", BAD_DAYS)
@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["recommend", "h.test"], "--horizon"),
        (["simulate", "--out", "replay.csv"], "--release-every"),
        (["updates"], "--release-every"),
        (["updates"], "--median-lag"),
        (["forward"], "--release-every"),
    ],
)
def test_spans_of_days_are_positive_finite_and_at_most_a_century(
    tmp_path: Path, command: list[str], option: str, value: str
) -> None:
    db = tmp_path / "absent.duckdb"
    run = invoke_pinlab(*command, "--db", str(db), option, value)
    assert_usage_error(run, option, "above 0, at most 36525")
    assert not db.exists()


@pytest.mark.parametrize(
    ("option", "value", "range_text"),
    [
        ("--users", "-1", "above 0, at most 1e+12"),
        ("--users", "nan", "above 0, at most 1e+12"),
        ("--never", "1.5", "shares in 0..1"),
        ("--never", "-0.1", "shares in 0..1"),
        ("--lag-sigma", "0", "above 0, at most 10"),
        ("--expiry", "-1", "days in 0..36525"),
    ],
)
def test_update_model_numbers_are_checked(
    tmp_path: Path, option: str, value: str, range_text: str
) -> None:
    db = tmp_path / "absent.duckdb"
    run = invoke_pinlab("updates", "--db", str(db), "--expiry", "30", option, value)
    assert_usage_error(run, option, range_text)
