"""Damaged stores: truncated, bit-flipped and zeroed files give one line naming the file and
the way out, on every command; ``pinlab store check`` says what is wrong."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from pinlab.store import Store, check_store
from tests.store.conftest import OBSERVATIONS, run_pinlab

BLOCK = 256 * 1024  # DuckDB's block size; the file starts with a 12 KiB header


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    for offset in range(12 * 1024, len(flipped), 512):  # a bit in every sector past the header
        flipped[offset] ^= 0x10
    return bytes(flipped)


def _zero(data: bytes) -> bytes:
    return bytes(len(data))


@pytest.mark.parametrize(
    "damage", [_truncate, _flip, _zero], ids=["truncated", "flipped", "zeroed"]
)
def test_every_command_names_a_damaged_store(
    tmp_path: Path, campaign_db: Path, shared_data: Path, damage: Callable[[bytes], bytes]
) -> None:
    db = tmp_path / "store.duckdb"
    db.write_bytes(damage(campaign_db.read_bytes()))
    commands = {
        "history": ("history", "--summary"),
        "simulate": ("simulate", "--out", tmp_path / "replay.csv"),
        "export": ("export", tmp_path / "dataset"),
        "import-pem": ("import-pem", shared_data / "real-histories" / "manifest.csv"),
    }
    for name, command in commands.items():
        result = run_pinlab(*command, "--db", db)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, name
        assert result.stderr.count("\n") == 1, (name, result.stderr)
        assert result.stderr.startswith(f"pinlab: error: the store {db} is damaged ("), name
        assert f"run `pinlab store check {db}`" in result.stderr, name
    check = run_pinlab("store", "check", db)
    assert check.returncode == 1, check.stdout
    assert "Traceback" not in check.stderr
    assert f"pinlab: {db}:" in check.stderr
    assert "is not healthy" in check.stderr


def test_store_check_reads_every_block(tmp_path: Path, campaign_db: Path) -> None:
    """A bad block the opening checks never read is still found: check reads every row."""
    healthy = run_pinlab("store", "check", campaign_db)
    assert healthy.returncode == 0, healthy.stderr
    assert f"observations: {OBSERVATIONS} rows" in healthy.stdout
    assert "healthy" in healthy.stdout
    data = campaign_db.read_bytes()
    found = []
    for offset in range(12 * 1024, len(data), BLOCK):
        damaged = bytearray(data)
        damaged[offset + 4096] ^= 0x01
        db = tmp_path / f"flip-{offset}.duckdb"
        db.write_bytes(bytes(damaged))
        try:
            Store.open(db, read_only=True).close()  # the store still opens...
        except Exception:
            continue
        report = check_store(db)  # ...but check finds the bad block
        if not report.healthy:
            found.append(report.problems)
    assert found, "no block of the store was read by check"
    assert any("cannot be read: Corrupt database file" in " ".join(p) for p in found)


def test_store_check_names_missing_tables_and_certificates(
    tmp_path: Path, campaign_db: Path
) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(campaign_db, db)
    connection = duckdb.connect(str(db))
    connection.execute("DELETE FROM certificates WHERE subject LIKE 'CN=a1.test%'")
    connection.close()
    report = check_store(db)
    missing = len(range(1, OBSERVATIONS, 3))
    assert report.problems[0].startswith(
        f"{missing} observations name 1 certificates the store does not hold"
    )
    connection = duckdb.connect(str(db))
    connection.execute("DROP TABLE scans")
    connection.close()
    result = run_pinlab("store", "check", db)
    assert result.returncode == 1
    assert "table scans is missing" in result.stderr


def test_os_errors_reach_the_user_as_one_line(tmp_path: Path, campaign_db: Path) -> None:
    out = tmp_path / "file" / "ledger.csv"
    (tmp_path / "file").write_text("a file where a folder should be")
    result = run_pinlab("history", "--out", out, "--db", campaign_db)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--debug shows the traceback" in result.stderr
    debug = run_pinlab("--debug", "history", "--out", out, "--db", campaign_db)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
