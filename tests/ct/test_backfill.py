"""Backfills from the loopback log: the ledger of the issued truth, resumes, and a log that
lies in every way the issue names, each a clear error with nothing half-written."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pinlab import history
from pinlab.ct import (
    BackfillOptions,
    CTError,
    DomainFilter,
    LogFetchError,
    LogMisbehaviourError,
    backfill_log,
    backfill_static,
)
from pinlab.ct.backfill import BACKFILL_CHECKPOINT_MIB
from pinlab.ct.client import RateLimiter
from pinlab.ct.entries import encode_extra_data, encode_leaf
from pinlab.store import Store
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.ctserver import LogServer, StaticServer
from pinlab.testbed.pki import CA
from tests.ct.conftest import WATCHED, History, clock

COMPARED = [c for c in history.LEDGER_COLUMNS if c not in ("old_sha256", "new_sha256")]
FAST = {"retries": 0, "backoff": 0.0, "timeout": 10.0}


def _options(**overrides: Any) -> BackfillOptions:
    return BackfillOptions(**{"batch_size": 8, "commit_size": 8, "workers": 3, **FAST, **overrides})


def _run(store: Store, server: LogServer, story: History, **overrides: Any) -> Any:
    return backfill_log(
        store, server.url, key=story.log.key, domains=DomainFilter(WATCHED),
        options=_options(**overrides), clock=clock,
    )  # fmt: skip


def _ledger(store: Store) -> pd.DataFrame:
    return history.renewal_ledger(store.observations_df(), store.certificates_df())


def _comparable(ledger: pd.DataFrame) -> pd.DataFrame:
    frame = ledger[COMPARED].sort_values(["host", "new_first_seen"]).reset_index(drop=True)
    return frame.astype({c: "object" for c in frame.columns})


def _facts(store: Store) -> list[tuple[Any, ...]]:
    """Everything a backfill writes, in a comparable form."""
    rows = store.connection.execute(
        "SELECT host, observed_at, chain FROM observations ORDER BY host, observed_at"
    ).fetchall()
    return [(host, at, tuple(chain)) for host, at, chain in rows]


def _counts(store: Store) -> dict[str, int]:
    counts = store.counts()
    for table in ("ct_state", "ct_issuances"):
        exists = store.connection.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
        ).fetchone()
        counts[table] = (
            int(store.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            if exists and exists[0]
            else 0
        )
    return counts


def test_backfill_gives_the_ledger_of_the_issued_truth(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        result = _run(store, served, ct_history, verify=True)
        assert (result.start, result.end, result.tree_size) == (
            0,
            ct_history.log.size,
            ct_history.log.size,
        )
        ledger = _ledger(store)
        assert _comparable(ledger).equals(_comparable(ct_history.truth_ledger()))
        observations = store.observations_df()
        scans = store.scans_df()
        registry = store.connection.execute("SELECT * FROM ct_issuances").df()
    # one observation per issuance and host, at the issuance time
    assert len(observations) == len(ct_history.truth)
    assert sorted(zip(observations["host"], observations["observed_at"], strict=True)) == sorted(
        (host, pd.Timestamp(at)) for host, at, _ in ct_history.truth
    )
    assert set(observations["port"]) == {443}
    assert observations["sni"].isna().all()
    assert list(scans["source"]) == ["ct"]
    assert scans["finished_at"].notna().all()
    # where the final certificate was logged, it is the leaf (merged with its precert)
    merged = registry.dropna(subset=["precert_sha256", "final_sha256"])
    assert result.stats.merged == merged["issuance"].nunique() > 0
    leaves = {chain[0] for chain in observations["chain"]}
    assert set(registry["final_sha256"].dropna()) <= leaves
    truth = {hashlib.sha256(chain[0]).hexdigest() for _, _, chain in ct_history.truth}
    lone = registry[registry["final_sha256"].isna()]
    assert leaves - truth == set(lone["precert_sha256"])


def test_lone_precertificates_stand_for_their_issuance(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    """beta.test's final certificates were never logged: its precertificates carry the
    ledger, with the same key, issuer and dates as the final certificates."""
    with Store.open(tmp_path / "s.duckdb") as store:
        _run(store, served, ct_history)
        beta = store.observations_df().query("host == 'beta.test'")
        extras = beta["source_extra"].tolist()
    assert len(beta) == 4
    assert all('"entry":"precert"' in extra for extra in extras)


def test_static_tiles_served_by_nginx_give_the_same_facts(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    tiles = ct_history.log.write_tiles(tmp_path / "tiles", origin="127.0.0.1/static")
    assert (tiles / "tile/data/000").is_file() or (tiles / "tile/data/000.p/70").is_file()
    with Store.open(tmp_path / "rfc.duckdb") as rfc:
        _run(rfc, served, ct_history)
        expected = _facts(rfc)
    with StaticServer(tiles) as static, Store.open(tmp_path / "static.duckdb") as store:
        result = backfill_static(
            store, static.url, key=ct_history.log.key, domains=DomainFilter(WATCHED),
            options=_options(verify=True, batch_size=256), clock=clock,
        )  # fmt: skip
        assert result.verified
        assert result.end == ct_history.log.size
        assert _facts(store) == expected


def test_static_log_verifies_a_start_inside_the_tree(tmp_path: Path) -> None:
    """Tiles of a larger log (600 entries: two full data tiles and a partial one): a run
    from the middle proves its prefix from the hash tiles."""
    story = _noise_log(600)
    tiles = story.write_tiles(tmp_path / "tiles", origin="127.0.0.1/big")
    with StaticServer(tiles) as static, Store.open(tmp_path / "s.duckdb") as store:
        result = backfill_static(
            store, static.url, key=story.key, domains=None,
            options=_options(verify=True, start=300, batch_size=256), clock=clock,
        )  # fmt: skip
        assert (result.start, result.end, result.stats.entries) == (300, 600, 300)
        assert len(store.observations_df()) == 300


def test_stopped_run_resumes_to_the_same_store(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    with Store.open(tmp_path / "once.duckdb") as store:
        _run(store, served, ct_history)
        expected = _facts(store)
    with Store.open(tmp_path / "twice.duckdb") as store:
        first = _run(store, served, ct_history, end=23, verify=True)
        assert first.end == 23
        second = _run(store, served, ct_history, verify=True)
        assert second.start <= 23
        assert second.end == ct_history.log.size
        assert _facts(store) == expected
        again = _run(store, served, ct_history)
        assert again.stats.entries == 0
        assert _facts(store) == expected
        assert len(store.scans_df()) == 3


def test_truncated_response_stores_whole_batches_only_then_resumes(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    with Store.open(tmp_path / "once.duckdb") as store:
        _run(store, served, ct_history)
        expected = _facts(store)
    served.misbehaviour.truncate_from = 32
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogFetchError, match="cut short"):
            _run(store, served, ct_history, workers=1)
        state = store.connection.execute("SELECT next_index FROM ct_state").fetchone()
        assert state == (32,)
        stored = _facts(store)
        assert stored
        assert stored == [row for row in expected if row in stored]
        served.misbehaviour.truncate_from = None
        _run(store, served, ct_history)
        assert _facts(store) == expected


def _swap_entry(story: History, index: int, other: LocalLog) -> tuple[bytes, bytes]:
    """The entry ``index`` of ``other``, to serve in place of the true one."""
    stored = other.stored[index]
    return stored.entry.leaf_input, stored.extra_data


def _noise_log(size: int) -> LocalLog:
    root = CA.root("Noise Root")
    log = LocalLog()
    for index in range(size):
        leaf = root.issue_leaf(f"n{index}.noise.test")
        log.add_certificate(leaf.der, (root.der,), timestamp=1_600_000_000_000 + index)
    return log


def test_tampered_entry_is_refused_with_verify(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    """Entry 20 replaced by a well-formed entry that is not in the tree: only the hashes
    can tell, and the batch holding it (16..23) stores nothing."""
    target = 20
    entry = ct_history.log.stored[target].entry
    forged = encode_leaf(
        entry.timestamp + 1, entry.certificate, tbs=entry.tbs, issuer_key_hash=entry.issuer_key_hash
    )
    served.misbehaviour.entries[target] = (forged, ct_history.log.stored[target].extra_data)
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogMisbehaviourError, match="not in its tree"):
            _run(store, served, ct_history, verify=True, workers=1)
        assert store.connection.execute("SELECT next_index FROM ct_state").fetchone() == (16,)
        indexes = store.connection.execute(
            "SELECT max(greatest(coalesce(precert_index, 0), coalesce(final_index, 0))) "
            "FROM ct_issuances"
        ).fetchone()
        assert indexes is not None
        assert indexes[0] < 16


def test_tampered_precertificate_is_refused_even_without_verify(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    """The extra_data of a precert entry carries another precertificate."""
    precerts = [s for s in ct_history.log.stored if s.entry.is_precert]
    victim, donor = precerts[0], precerts[1]
    extra = encode_extra_data(victim.entry.chain, precertificate=donor.entry.certificate)
    served.misbehaviour.entries[victim.entry.index] = (victim.entry.leaf_input, extra)
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogMisbehaviourError, match="tampered"):
            backfill_log(store, served.url, key=None, domains=None, options=_options(), clock=clock)
        assert _counts(store)["observations"] == 0
        assert _counts(store)["scans"] == 0


def test_bad_tree_head_signature_is_refused_before_anything_is_written(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    served.misbehaviour.bad_signature = True
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogMisbehaviourError, match="signature does not verify"):
            _run(store, served, ct_history)
        assert _counts(store) == dict.fromkeys(
            ("certificates", "scans", "observations", "ct_state", "ct_issuances"), 0
        )


def test_verify_needs_the_key(tmp_path: Path, served: LogServer) -> None:
    with Store.open(tmp_path / "s.duckdb") as store, pytest.raises(CTError, match="public key"):
        backfill_log(
            store, served.url, key=None, domains=None, options=_options(verify=True), clock=clock
        )


def test_a_log_that_rewinds_is_refused(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        _run(store, served, ct_history)
        before = _counts(store)
        served.misbehaviour.tree_size = ct_history.log.size - 5
        with pytest.raises(LogMisbehaviourError, match="rewound"):
            _run(store, served, ct_history)
        assert _counts(store) == before


def test_growth_is_checked_for_consistency_and_a_fork_refused(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    size = ct_history.log.size
    with Store.open(tmp_path / "s.duckdb") as store:
        served.misbehaviour.tree_size = 40
        assert _run(store, served, ct_history, verify=True).end == 40
        served.misbehaviour.tree_size = None
        assert _run(store, served, ct_history, verify=True).end == size
        before = _counts(store)
        forked = LocalLog(key=ct_history.log.private_key)
        for stored in ct_history.log.stored[:-1]:
            entry = stored.entry
            forked.add_certificate(entry.certificate, entry.chain, timestamp=entry.timestamp)
        for stored in ct_history.log.stored[-3:]:
            forked.add_certificate(stored.entry.certificate, (), timestamp=1)
        served.log = forked
        try:
            with pytest.raises(LogMisbehaviourError, match=r"consistency|forked"):
                _run(store, served, ct_history, verify=True)
        finally:
            served.log = ct_history.log
        assert _counts(store) == before


def test_second_log_with_the_same_issuances_adds_nothing(
    tmp_path: Path, ct_history: History
) -> None:
    """Every precertificate is logged in two logs in real life: the second adds no row."""
    mirror = LocalLog()
    for stored in ct_history.log.stored:
        entry = stored.entry
        if entry.is_precert:
            mirror.add_precertificate(entry.certificate, entry.chain, timestamp=entry.timestamp + 5)
        else:
            mirror.add_certificate(entry.certificate, entry.chain, timestamp=entry.timestamp + 5)
    with (
        LogServer(ct_history.log) as one,
        LogServer(mirror) as two,
        Store.open(tmp_path / "s.duckdb") as store,
    ):
        _run(store, one, ct_history)
        expected = _facts(store)
        result = backfill_log(
            store, two.url, key=mirror.key, domains=DomainFilter(WATCHED),
            options=_options(), clock=clock,
        )  # fmt: skip
        assert result.stats.observations == 0
        assert result.stats.duplicates > 0
        assert _facts(store) == expected


def test_no_filter_records_every_certificate_under_its_first_name(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        result = backfill_log(
            store, served.url, key=ct_history.log.key, domains=None, options=_options(), clock=clock
        )
        hosts = set(store.observations_df()["host"])
    assert result.stats.matched == ct_history.log.size
    assert {"alpha.test", "beta.test", "gamma.test", "noise7.other.test"} <= hosts
    assert "www.beta.test" not in hosts


def test_log_key_from_pem_and_log_id(ct_history: History) -> None:
    from pinlab.ct import LogKey
    from tests.ct.conftest import key_pem

    key = LogKey.from_pem(key_pem(ct_history.log))
    assert key.log_id == ct_history.log.key.log_id
    assert LogKey.from_pem(base64.b64encode(key.spki)) == key


def test_commits_group_batches_and_a_failure_keeps_the_last_group(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    served.misbehaviour.truncate_from = 32
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogFetchError):
            _run(store, served, ct_history, workers=1, commit_size=24)
        assert store.connection.execute("SELECT next_index FROM ct_state").fetchone() == (24,)


def test_an_overloaded_log_is_retried_then_given_up(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    served.misbehaviour.unavailable = 2
    with Store.open(tmp_path / "s.duckdb") as store:
        result = _run(store, served, ct_history, retries=2, workers=1)
        assert result.end == ct_history.log.size
    served.misbehaviour.unavailable = 1
    with Store.open(tmp_path / "t.duckdb") as store, pytest.raises(LogFetchError, match="HTTP 503"):
        _run(store, served, ct_history, retries=0)


def test_rate_limit_spaces_requests() -> None:
    limiter = RateLimiter(50.0)
    started = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - started >= 0.09


def test_final_certificate_after_its_precert_was_recorded_is_linked(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    """No merge window: every precertificate is stored at once, and its final certificate,
    one entry later, is linked to that issuance instead of making a second observation."""
    with Store.open(tmp_path / "s.duckdb") as store:
        result = _run(store, served, ct_history, batch_size=1, commit_size=1, merge_window=0)
        assert result.stats.linked > 0
        assert result.stats.merged == 0
        assert len(store.observations_df()) == len(ct_history.truth)
        assert _comparable(_ledger(store)).equals(_comparable(ct_history.truth_ledger()))
        linked = store.connection.execute(
            "SELECT count(*) FROM ct_issuances WHERE precert_sha256 IS NOT NULL "
            "AND final_sha256 IS NOT NULL"
        ).fetchone()
        finals = store.connection.execute(
            "SELECT count(*) FROM certificates c JOIN ct_issuances i ON c.sha256 = i.final_sha256 "
            "WHERE i.precert_sha256 IS NOT NULL"
        ).fetchone()
    assert linked == finals
    assert linked is not None
    assert linked[0] > 0


def test_a_backfill_checkpoints_a_row_group_at_a_time_then_restores_the_store(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    def threshold(store: Store) -> str:
        query = "SELECT current_setting('checkpoint_threshold')"
        return str((store.connection.execute(query).fetchone() or ("",))[0])

    with Store.open(tmp_path / "s.duckdb") as store:
        before, during = threshold(store), set()
        backfill_log(
            store, served.url, key=ct_history.log.key, domains=DomainFilter(WATCHED),
            options=_options(), clock=clock,
            progress=lambda done, total: during.add(threshold(store)),
        )  # fmt: skip
        assert during == {f"{BACKFILL_CHECKPOINT_MIB}.0 MiB"}
        assert threshold(store) == before
