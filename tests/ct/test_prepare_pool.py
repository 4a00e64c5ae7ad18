"""The parse pool and the bounded issuance index store exactly what the in-process path
stores, survive a kill -9, and deduplicate past the index's capacity."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pinlab.bench.ct import SyntheticLog
from pinlab.ct import BackfillOptions, backfill_log
from pinlab.ct.entries import parse_entry
from pinlab.ct.prepare import default_parse_workers
from pinlab.ct.registry import KeyIndex
from pinlab.store import Store
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.ctserver import LogServer
from pinlab.testbed.pki import CA
from tests.children import children, wait_until_gone
from tests.ct.conftest import clock

FAST = {"retries": 0, "backoff": 0.0, "timeout": 30.0}
SIZE = 2_400

# Every table a backfill writes, without the columns that differ from run to run.
TABLES = {
    "certificates": "SELECT * FROM certificates ORDER BY sha256",
    "observations": "SELECT * EXCLUDE (scan_id) FROM observations "
    "ORDER BY host, observed_at, source_extra",
    "ct_issuances": "SELECT * EXCLUDE (scan_id) FROM ct_issuances "
    "ORDER BY issuance, host, final_sha256",
    "ct_unparsable": "SELECT * EXCLUDE (scan_id) FROM ct_unparsable ORDER BY entry_index",
    "ct_state": "SELECT log, filter, next_index, resume_index, tree_size FROM ct_state",
}


def _mixed_log() -> LocalLog:
    """A few thousand entries: template precertificates and certificates (distinct names
    and serials, as in the benchmark), real issuances whose final certificate follows its
    precertificate, entries logged a second time, and a certificate that does not parse."""
    synthetic = SyntheticLog(SIZE)
    log = LocalLog()
    root = CA.root("Pool Test Root")
    issuer = root.child_ca("Pool Test CA")
    finals: list[tuple[bytes, tuple[bytes, ...]]] = []
    for index in range(SIZE):
        entry = parse_entry(index, *synthetic.entry(index))
        stamp = 1_600_000_000_000 + index * 10
        if entry.is_precert:
            log.add_precertificate(entry.certificate, entry.chain, timestamp=stamp)
        else:
            log.add_certificate(entry.certificate, entry.chain, timestamp=stamp)
        if index % 200 == 5:  # a real issuance, its final certificate logged a bit later
            issued = log.issue(issuer, f"real{index}.pool.test", timestamp=stamp + 1)
            finals.append((issued.final, issued.chain))
        if index % 200 == 60 and finals:
            log.add_certificate(*finals.pop(0), timestamp=stamp + 2)
        if index % 500 == 99:  # re-logged: the same certificate again
            log.add_certificate(entry.certificate, entry.chain, timestamp=stamp + 3)
        if index == 1_234:
            log.add_certificate(b"\x30\x03\x02\x01\x00", (issuer.der,), timestamp=stamp + 4)
    return log


@pytest.fixture(scope="module")
def mixed() -> LocalLog:
    return _mixed_log()


def _options(**overrides: Any) -> BackfillOptions:
    return BackfillOptions(
        **{"batch_size": 100, "commit_size": 300, "merge_window": 250, "workers": 3,
           **FAST, **overrides}
    )  # fmt: skip


def _tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {name: store.connection.execute(sql).fetchall() for name, sql in TABLES.items()}


def _backfill(path: Path, server: LogServer, log: LocalLog, **overrides: Any) -> Any:
    with Store.open(path) as store:
        result = backfill_log(
            store, server.url, key=log.key, domains=None, options=_options(**overrides),
            clock=clock,
        )  # fmt: skip
        return result, _tables(store)


def test_the_pool_stores_exactly_what_the_in_process_path_stores(
    tmp_path: Path, mixed: LocalLog
) -> None:
    with LogServer(mixed) as server:
        alone, expected = _backfill(tmp_path / "one.duckdb", server, mixed, parse_workers=0)
        pooled, stored = _backfill(tmp_path / "pool.duckdb", server, mixed, parse_workers=2)
    assert stored == expected
    assert pooled.stats == alone.stats
    assert alone.stats.entries == mixed.size
    assert alone.stats.unparsable == 1
    assert alone.stats.merged > 0
    assert alone.stats.duplicates > 0
    assert len(expected["ct_unparsable"]) == 1


def test_a_tiny_index_still_deduplicates_exactly(tmp_path: Path, mixed: LocalLog) -> None:
    """8 bytes hold 64 bits: saturated after a few keys, every key is a "maybe" and the
    database decides; nothing is stored twice, nothing lost."""
    with LogServer(mixed) as server:
        _, expected = _backfill(tmp_path / "big.duckdb", server, mixed)
        path = tmp_path / "tiny.duckdb"
        first, _ = _backfill(path, server, mixed, index_bytes=8, end=1_500)
        assert first.end == 1_500
        _, stored = _backfill(path, server, mixed, index_bytes=8)
        again, twice = _backfill(path, server, mixed, index_bytes=8, start=0)
    assert stored == expected
    assert again.stats.observations == 0
    assert again.stats.duplicates > 0
    assert {k: v for k, v in twice.items() if k != "ct_state"} == {
        k: v for k, v in expected.items() if k != "ct_state"
    }


def test_the_index_keeps_its_size_and_never_misses_a_key() -> None:
    index = KeyIndex(1 << 12)
    keys = [int(k) for k in np.random.default_rng(20).integers(-(2**63), 2**63 - 1, 50_000)]
    index.add(keys)
    assert index._bits.nbytes == 1 << 12
    assert index.hits(keys) == set(keys)
    assert len(index) == 50_000


def _backfill_in_child(path: str, url: str, spki: bytes) -> None:
    from pinlab.ct.sth import LogKey

    with Store.open(path) as store:
        backfill_log(
            store, url, key=LogKey.from_der(spki), domains=None,
            options=_options(parse_workers=2, batch_size=20, commit_size=40, workers=1),
            clock=clock,
        )  # fmt: skip


def test_kill_9_mid_backfill_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, mixed: LocalLog
) -> None:
    with LogServer(mixed) as server:
        _, expected = _backfill(tmp_path / "once.duckdb", server, mixed, parse_workers=0)
        path = tmp_path / "killed.duckdb"
        server.requests.clear()
        context = multiprocessing.get_context("spawn")
        child = context.Process(
            target=_backfill_in_child, args=(str(path), server.url, mixed.key.spki)
        )
        child.start()
        # Kill once a good part of the log was served: some groups committed, others not.
        while child.is_alive() and sum("get-entries" in r for r in server.requests) < 40:
            time.sleep(0.05)
        assert child.pid is not None
        workers = children(child.pid)
        assert len(workers) >= 2  # its parse workers (and multiprocessing's tracker)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        wait_until_gone(workers)  # the parse workers die with the backfill
        with Store.open(path) as store:
            (done,) = store.connection.execute("SELECT next_index FROM ct_state").fetchone() or (0,)
        assert 0 < done < mixed.size
        resumed, stored = _backfill(path, server, mixed, parse_workers=2)
    assert resumed.start <= done
    assert stored == expected


def test_a_backfill_prepares_on_every_usable_core_by_default() -> None:
    # one worker per core, not the cores less the backfill's own: its process leaves part of
    # its core idle (bench ct, 2 cores: 4,432-5,006 entries/s with two workers, 3,700 with one)
    assert default_parse_workers() == len(os.sched_getaffinity(0))
