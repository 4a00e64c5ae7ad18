"""The CT benchmark runs in its quick mode, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pinlab.bench.ct import SyntheticLog, run_ct_benchmark
from pinlab.bench.output import read_results
from pinlab.cli import app
from pinlab.ct.entries import parse_entry
from pinlab.ct.merkle import root_hash
from pinlab.ct.prepare import EntryPreparer


def test_quick_ct_benchmark() -> None:
    frame = run_ct_benchmark(entries=1_000_000, quick=True)
    modes = list(frame["mode"])
    assert modes[0] == "filtered (1% of names)"
    assert modes[1].startswith("all entries stored (")
    assert "parse process" in modes[1]
    assert modes[2:] == [
        "all entries stored (in process)",
        "parse only (in memory, no store)",
        "signature checks only (the floor)",
    ]
    assert list(frame["entries"]) == [3000] * 5
    assert list(frame["observations"]) == [30, 3000, 3000, 0, 0]
    assert (frame["entries_per_s"] > 0).all()
    assert frame["rss_mb_end"].iloc[:3].notna().all()
    assert frame["vs_in_process"].iloc[2] == 1.0
    # where the CPU went: the in-process row started no parse worker, the pool row did
    pool = frame["parse_workers_cpu_us_per_entry"]
    assert pool.iloc[2] == 0.0
    assert pool.iloc[1] > 0
    assert (frame["backfill_process_cpu_us_per_entry"].iloc[:3] > 0).all()
    assert (frame["log_server_cpu_us_per_entry"].iloc[:3] > 0).all()
    ceiling = frame["writer_ceiling_per_s"] * frame["backfill_process_cpu_us_per_entry"]
    assert ceiling.iloc[:3].round(6).eq(1e6).all()
    # the machine's ceiling at each row's CPU per entry; the signature checks alone cost
    # less than parsing, which includes them
    cores = frame["cores_ceiling_per_s"] * frame["cpu_us_per_entry"] / frame["cores"]
    assert cores.round(6).eq(1e6).all()
    floor, parse = frame["cpu_us_per_entry"].iloc[4], frame["cpu_us_per_entry"].iloc[3]
    assert 0 < floor < parse


def test_synthetic_entries_are_distinct_and_well_formed() -> None:
    log = SyntheticLog(20)
    entries = [parse_entry(i, *log.entry(i)) for i in range(20)]
    assert len({e.certificate for e in entries}) == 20
    assert sum(e.is_precert for e in entries) == 14
    assert root_hash([e.leaf_hash for e in entries]) == log.root
    # each certificate is signed again after its patch: no chain fails the check, as in a
    # real log (a failing check would store an error text with every entry)
    batch = EntryPreparer(None).batch(entries)
    assert batch.stats.matched == 20
    assert batch.stats.bad_chains == 0


def test_bench_ct_command_writes_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "ct.json"
    result = CliRunner().invoke(app, ["bench", "ct", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "pinlab bench ct" in result.output
    rows = read_results(out).rows
    assert len(rows) == 5
    assert "writer_ceiling_per_s" in rows.columns  # the file keeps what the table narrows
