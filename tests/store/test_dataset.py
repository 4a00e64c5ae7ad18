"""A store as a partitioned Parquet dataset: written, read back with the store's API, merged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinlab import history
from pinlab.store import (
    SCHEMA_VERSION,
    CertificateRow,
    DatasetStore,
    Observation,
    Scan,
    Store,
    StoreError,
    export_dataset,
    import_dataset,
    open_dataset,
    open_store,
    write_atomic,
)
from pinlab.testbed.pki import CA

DAY1 = datetime(2025, 6, 1, 12, tzinfo=UTC)
DAY2 = datetime(2025, 7, 1, 12, tzinfo=UTC)


def _fill(path: Path) -> Store:
    """Two campaigns a month apart; the leaf is renewed in between, the intermediate kept."""
    root = CA.root("Dataset Root")
    intermediate = root.child_ca("Dataset Intermediate")
    old, new = (intermediate.issue_leaf("a.test") for _ in range(2))
    rows = {
        c.record.sha256: CertificateRow.from_certificate(c.record) for c in (old, new, intermediate)
    }
    store = Store.open(path)
    for day, leaf in ((DAY1, old), (DAY2, new)):
        scan = Scan(f"scan-{day:%m}", "scan", None, "/t.txt", "{}", day, day, "test")
        store.add_scan(scan)
        chain = (leaf.record.sha256, intermediate.record.sha256)
        observations = [
            _observation(scan.scan_id, host, day + timedelta(seconds=i), "ok", chain)
            for i, host in enumerate(("a.test", "b.a.test"))
        ]
        observations.append(_observation(scan.scan_id, "down.test", day, "timeout", ()))
        store.write(observations, rows.values())
    return store


def _observation(
    scan_id: str, host: str, at: datetime, status: str, chain: tuple[str, ...]
) -> Observation:
    ok = status == "ok"
    return Observation(
        scan_id=scan_id,
        host=host,
        port=443,
        sni=host,
        ip="127.0.0.1" if ok else None,
        target_ip=None,
        observed_at=at,
        status=status,
        error=None if ok else "timed out",
        tls_version="TLSv1.3" if ok else None,
        cipher="TLS_AES_128_GCM_SHA256" if ok else None,
        chain=chain,
        validation="valid" if ok else None,
        validation_error=None,
        connect_ms=1.0 if ok else None,
        handshake_ms=2.0 if ok else None,
        attempts=1,
    )


def _same(left: pd.DataFrame, right: pd.DataFrame, key: list[str]) -> None:
    pd.testing.assert_frame_equal(
        left.sort_values(key, ignore_index=True), right.sort_values(key, ignore_index=True)
    )


def test_a_dataset_reads_like_the_store_it_came_from(tmp_path: Path) -> None:
    store = _fill(tmp_path / "store.duckdb")
    export_dataset(store, tmp_path / "dataset")
    assert sorted(p.name for p in (tmp_path / "dataset" / "observations").iterdir()) == [
        "date=2025-06-01",
        "date=2025-07-01",
    ]
    with open_store(tmp_path / "dataset") as dataset:
        assert isinstance(dataset, DatasetStore)
        assert dataset.counts() == store.counts() == {
            "certificates": 3, "scans": 2, "observations": 6,
        }  # fmt: skip
        _same(dataset.observations_df(), store.observations_df(), ["scan_id", "host"])
        _same(dataset.observations_df("scan-07"), store.observations_df("scan-07"), ["host"])
        _same(dataset.certificates_df(), store.certificates_df(), ["sha256"])
        _same(dataset.scans_df(), store.scans_df(), ["scan_id"])
        keys = ["scan_id", "host", "position"]
        _same(dataset.chain_certificates_df(), store.chain_certificates_df(), keys)
        sql = "SELECT host, count(*) FROM observations GROUP BY host ORDER BY host"
        expected = store.connection.execute(sql).fetchall()
        assert dataset.connection.execute(sql).fetchall() == expected
        with pytest.raises(StoreError, match="read-only"):
            dataset.write([], [])
    store.close()
    with open_store(tmp_path / "store.duckdb") as again:
        assert type(again) is Store


def test_history_reads_a_dataset_in_duckdb(tmp_path: Path) -> None:
    engine = getattr(history, "History", None)
    if engine is None:
        pytest.skip("pinlab.history has no DuckDB derivation in this tree")
    store = _fill(tmp_path / "store.duckdb")
    export_dataset(store, tmp_path / "dataset")
    with open_store(tmp_path / "dataset") as dataset:
        from_dataset = engine.from_store(dataset).ledger()
    from_store = engine.from_store(store).ledger()
    assert len(from_store) == 2  # a.test and b.a.test renewed once
    _same(from_dataset, from_store, ["host"])
    store.close()


def test_flat_export_and_merge_back(tmp_path: Path) -> None:
    store = _fill(tmp_path / "store.duckdb")
    store.export_parquet(tmp_path / "flat")
    with open_store(tmp_path / "flat") as flat:
        _same(flat.observations_df(), store.observations_df(), ["scan_id", "host"])
    export_dataset(store, tmp_path / "dataset")
    with Store.open(tmp_path / "merged.duckdb") as merged:
        assert import_dataset(tmp_path / "dataset", merged) == store.counts()
        assert import_dataset(tmp_path / "dataset", merged) == {
            "certificates": 0, "scans": 0, "observations": 0,
        }  # fmt: skip
        _same(merged.observations_df(), store.observations_df(), ["scan_id", "host"])
    store.close()


def test_unusable_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such dataset"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a pinlab dataset"):
        open_store(tmp_path / "empty")
    store = _fill(tmp_path / "store.duckdb")
    export_dataset(store, tmp_path / "dataset")
    with pytest.raises(StoreError, match="already holds scan"):
        export_dataset(store, tmp_path / "dataset")
    store.close()
    newer = pa.table({"key": ["schema_version"], "value": [str(SCHEMA_VERSION + 1)]})
    pq.write_table(newer, tmp_path / "dataset" / "meta" / "part-0.parquet")
    with pytest.raises(StoreError, match="newer than this"):
        open_store(tmp_path / "dataset")


def test_write_atomic_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    target = tmp_path / "part.parquet"
    with write_atomic(target) as temporary:
        temporary.write_bytes(b"first")

    def interrupted() -> None:
        with write_atomic(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        interrupted()
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["part.parquet"]


def test_cli_exports_partitioned_and_imports_either_layout(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pinlab.cli import app

    runner = CliRunner()
    store = _fill(tmp_path / "store.duckdb")
    counts = store.counts()
    store.close()
    source = ["--db", str(tmp_path / "store.duckdb")]
    for name, extra in (("flat", []), ("partitioned", ["--partitioned"])):
        done = runner.invoke(app, ["export", str(tmp_path / name), *source, *extra])
        assert done.exit_code == 0, done.output
        target = ["--db", str(tmp_path / f"{name}.duckdb")]
        first = runner.invoke(app, ["import", str(tmp_path / name), *target])
        assert first.exit_code == 0, first.output
        with Store.open(tmp_path / f"{name}.duckdb", read_only=True) as merged:
            assert merged.counts() == counts
        again = runner.invoke(app, ["import", str(tmp_path / name), *target])
        assert "imported 0 certificates, 0 scans, 0 observations" in again.output
    assert any((tmp_path / "partitioned" / "observations").glob("date=*/*.parquet"))
    missing = runner.invoke(app, ["import", str(tmp_path / "nowhere"), *source])
    assert missing.exit_code == 2
    assert "no such dataset folder" in missing.output
