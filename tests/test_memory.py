"""``--memory-limit``: read and checked where it enters, and it reaches DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pinlab.bench.history_data import START, generate
from pinlab.commands._options import memory_budget
from pinlab.memory import (
    ENVIRONMENT,
    MIN_BYTES,
    MemoryBudget,
    MemoryLimitError,
    physical_memory,
)
from pinlab.store import Scan, Store, export_dataset, open_store
from tests.conformance.conftest import invoke_pinlab
from tests.test_options import assert_usage_error

BAD_LIMITS = ["abc", "0", "-1GB", "inf", "nan", "0%", "150%", "1KB", "4 parsecs", "1e9"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4GB", 4 * 10**9),
        ("512MB", 512 * 10**6),
        ("512 mb", 512 * 10**6),
        ("3.5GiB", int(3.5 * 2**30)),
        ("100000000", 10**8),
        ("100%", physical_memory()),
    ],
)
def test_sizes_are_read_as_duckdb_reads_them(text: str, size: int) -> None:
    assert MemoryBudget.parse(text).bytes == size


def test_the_default_is_half_of_the_machine() -> None:
    assert MemoryBudget.default().bytes == physical_memory() // 2
    assert memory_budget(None) == MemoryBudget.default()
    assert MemoryBudget.parse("50%").bytes == physical_memory() // 2


@pytest.mark.parametrize("text", BAD_LIMITS)
def test_nonsense_is_refused_with_what_to_give(text: str) -> None:
    with pytest.raises(MemoryLimitError, match="memory limit"):
        MemoryBudget.parse(text)


def test_more_than_the_machine_has_is_refused() -> None:
    with pytest.raises(MemoryLimitError, match="more than this machine"):
        MemoryBudget.parse(f"{physical_memory() + 1}")


def test_pinlab_buffers_are_sized_from_the_budget() -> None:
    small, large = MemoryBudget(MIN_BYTES), MemoryBudget.parse("4GB")
    assert 1 <= small.replay_batch_rows() < large.replay_batch_rows()
    assert large.duckdb_bytes + large.buffer_bytes < large.bytes  # headroom left


@pytest.mark.parametrize(
    "command",
    [
        ["history", "--out", "x.csv"],
        ["simulate", "--out", "x.csv"],
        ["recommend", "h.test"],
        ["audit", "x.xml"],
        ["updates"],
        ["forward", "--pool", "x.pem"],
        ["report", "--out", "report"],
    ],
)
@pytest.mark.parametrize("value", ["abc", "0", "-1GB", "inf"])
def test_every_analysis_command_checks_it_where_it_enters(
    tmp_path: Path, command: list[str], value: str
) -> None:
    db = tmp_path / "absent.duckdb"
    run = invoke_pinlab(*command, "--db", str(db), "--memory-limit", value)
    assert_usage_error(run, "--memory-limit", "memory limit")
    assert not db.exists()


def duckdb_shows(limit: str) -> str:
    """What DuckDB reports for ``limit`` set on a connection of its own."""
    con = duckdb.connect()
    con.execute("SET memory_limit = ?", [limit])
    [(shown,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    con.close()
    return str(shown)


def test_the_budget_reaches_duckdb_for_a_file_and_a_dataset(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        generate(store.connection, hosts=20)
        store.add_scan(Scan("bench", "scan", "bench", None, "{}", START, None, "test"))
        export_dataset(store, tmp_path / "dataset")
    budget = MemoryBudget.parse("1GB")
    for path in (tmp_path / "s.duckdb", tmp_path / "dataset"):
        with open_store(path, memory=budget) as store:
            con = store.connection
            [(limit, spill)] = con.execute(
                "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
            ).fetchall()
            assert limit == duckdb_shows(budget.duckdb_limit) == duckdb_shows("572MiB")  # 60 %
            assert store.spill is not None
            assert Path(spill) == store.spill
            assert store.spill.is_dir()
            # the analysis still runs within it
            assert con.execute("SELECT count(*) FROM observations").fetchall()[0][0] == 240
        assert not store.spill.exists()  # removed on close
    with open_store(tmp_path / "s.duckdb") as store:  # no budget: DuckDB's own default
        assert store.spill is None


def test_stores_opened_without_a_budget_take_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pinlab report`` hands its budget to the notebooks' kernels this way."""
    with Store.open(tmp_path / "s.duckdb") as store:
        generate(store.connection, hosts=5)
    monkeypatch.setenv(ENVIRONMENT, "1GB")
    with open_store(tmp_path / "s.duckdb") as store:
        [(limit,)] = store.connection.execute("SELECT current_setting('memory_limit')").fetchall()
        assert limit == duckdb_shows("572MiB")  # 60 % of 1 GB
        assert store.spill is not None
    monkeypatch.setenv(ENVIRONMENT, "lots")
    with pytest.raises(MemoryLimitError, match="PINLAB_MEMORY_LIMIT=lots"):
        open_store(tmp_path / "s.duckdb")


def test_history_runs_within_a_small_limit(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        generate(store.connection, hosts=200)
    out = tmp_path / "ledger.parquet"
    run = invoke_pinlab(
        "history", "--db", str(tmp_path / "s.duckdb"), "--out", str(out), "--memory-limit", "256MB"
    )
    assert run.returncode == 0, str(run)
    assert "renewals of 200 hosts" in run.stdout
    assert out.stat().st_size > 0
