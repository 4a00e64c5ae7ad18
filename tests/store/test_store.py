"""The store: schema, batched writes, Parquet round trip, PEM imports, refusing bad files."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pinlab.collect import import_pem
from pinlab.store import SCHEMA_VERSION, CertificateRow, Observation, Scan, Store, StoreError
from pinlab.testbed.pki import CA, KeyType
from pinlab.verify import TrustStore

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _scan(scan_id: str = "s1") -> Scan:
    return Scan(scan_id, "scan", "test", "/targets.txt", "{}", NOW, None, "0.1.0")


def _observation(host: str, chain: tuple[str, ...], **changes: object) -> Observation:
    values: dict[str, object] = {
        "scan_id": "s1",
        "host": host,
        "port": 443,
        "sni": host,
        "ip": "127.0.0.1",
        "target_ip": None,
        "observed_at": NOW + timedelta(microseconds=123457),
        "status": "ok",
        "error": None,
        "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "chain": chain,
        "validation": "untrusted",
        "validation_error": "unknown issuer",
        "connect_ms": 0.25,
        "handshake_ms": 1.5,
        "attempts": 1,
    }
    values.update(changes)
    return Observation(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def certificates() -> list[CertificateRow]:
    root = CA.root("Store Root")
    intermediate = root.child_ca("Store Intermediate")
    leaf = intermediate.issue_leaf("a.test", key_type=KeyType.P256)
    rows = [CertificateRow.from_certificate(c.record) for c in (leaf, intermediate, root)]
    rows.append(CertificateRow.unparsable(hashlib.sha256(b"junk").hexdigest(), b"junk", "bad"))
    return rows


def _fill(store: Store, certificates: list[CertificateRow]) -> None:
    store.add_scan(_scan())
    chain = tuple(row.sha256 for row in certificates[:3])
    store.write([_observation("a.test", chain)], certificates[:3])
    store.write(
        [
            _observation("a.test", chain, port=8443),  # certificates already stored
            _observation(
                "b.test", (certificates[3].sha256,), status="malformed_certificate",
                error="bad", validation=None, validation_error=None,
            ),
            _observation(
                "c.test", (), status="timeout", error="timed out", ip=None, tls_version=None,
                cipher=None, validation=None, validation_error=None, connect_ms=None,
                handshake_ms=None, attempts=2, target_ip="192.0.2.1",
            ),
        ],
        certificates,
    )  # fmt: skip


def test_schema_batches_and_dedup(tmp_path: Path, certificates: list[CertificateRow]) -> None:
    with Store.open(tmp_path / "sub" / "store.duckdb") as store:
        _fill(store, certificates)
        assert store.counts() == {"certificates": 4, "scans": 1, "observations": 4}
        types = dict(
            store.connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'observations'"
            ).fetchall()
        )
        assert types["chain"] == "VARCHAR[]"
        assert types["observed_at"] == "TIMESTAMP WITH TIME ZONE"
        assert store.done_keys("s1") == {
            ("a.test", 443, "a.test", None),
            ("a.test", 8443, "a.test", None),
            ("b.test", 443, "b.test", None),
            ("c.test", 443, "c.test", "192.0.2.1"),
        }
        assert store.unfinished_scan("/targets.txt") == _scan()
        store.finish_scan("s1", at=NOW)
        assert store.unfinished_scan("/targets.txt") is None
        chains = store.chain_certificates_df()
        assert list(chains[chains["port"] == 443]["position"]) == [0, 1, 2]
        assert chains.iloc[0]["subject"] == "CN=a.test,O=pinlab test PKI"


def test_failed_batch_leaves_nothing(tmp_path: Path, certificates: list[CertificateRow]) -> None:
    with Store.open(tmp_path / "store.duckdb") as store:
        store.add_scan(_scan())
        bad = _observation("a.test", ("x",), attempts=None)
        with pytest.raises(duckdb.Error):
            store.write([_observation("a.test", ("x",)), bad], certificates)
        assert store.counts() == {"certificates": 0, "scans": 1, "observations": 0}


def test_parquet_round_trip_is_lossless(tmp_path: Path, certificates: list[CertificateRow]) -> None:
    with Store.open(tmp_path / "a.duckdb") as store:
        _fill(store, certificates)
        store.finish_scan("s1", at=NOW + timedelta(seconds=5))
        store.export_parquet(tmp_path / "dataset")
        original = {t: _frame(store, t) for t in ("certificates", "scans", "observations")}
        with pytest.raises(StoreError, match="already holds a dataset"):
            store.export_parquet(tmp_path / "dataset")
    with Store.open(tmp_path / "b.duckdb") as copy:
        added = copy.import_parquet(tmp_path / "dataset")
        assert added == {"certificates": 4, "scans": 1, "observations": 4}
        for table, frame in original.items():
            pd.testing.assert_frame_equal(_frame(copy, table), frame)
        again = copy.import_parquet(tmp_path / "dataset")
        assert again == {"certificates": 0, "scans": 0, "observations": 0}
    assert list(pd.read_parquet(tmp_path / "dataset" / "observations").columns)[:3] == [
        "scan_id", "host", "port",
    ]  # fmt: skip


def _frame(store: Store, table: str) -> pd.DataFrame:
    columns = "host, port, observed_at" if table == "observations" else "1"
    return store.connection.execute(f"SELECT * FROM {table} ORDER BY {columns}, 1").df()


def test_import_pem_real_histories(tmp_path: Path, shared_data: Path) -> None:
    manifest = shared_data / "real-histories" / "manifest.csv"
    with Store.open(tmp_path / "store.duckdb") as store:
        scan = import_pem(store, manifest, now=NOW, trust_store=TrustStore.certifi())
        observations = store.observations_df()
        assert len(observations) == 65
        assert observations["host"].nunique() == 18
        assert set(observations["status"]) == {"ok"}
        assert set(observations["validation"]) <= {"valid", "untrusted", "hostname"}
        assert str(observations["observed_at"].dt.tz) == "UTC"
        extra = observations.iloc[0]["source_extra"]
        assert '"source":' in extra
        assert '"source_commit":' in extra
        chains = store.chain_certificates_df()
        assert (chains["position"] == 0).sum() == 65
        assert store.scans_df().iloc[0]["source"] == "import"
        assert scan.finished_at == NOW
        with pytest.raises(StoreError, match="already imported"):
            import_pem(store, manifest, now=NOW)
        assert store.counts()["observations"] == 65


def test_import_pem_bad_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("host,observed_at,chain_file\na.test,2024-01-01,missing.pem\n")
    with Store.open(tmp_path / "store.duckdb") as store:
        with pytest.raises(StoreError, match="line 2"):
            import_pem(store, manifest, now=NOW)
        assert store.counts() == {"certificates": 0, "scans": 0, "observations": 0}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupt_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    path.write_bytes(b"this is not a database" * 1000)
    before = _digest(path)
    with pytest.raises(StoreError, match=r"is damaged .*not a valid DuckDB database file"):
        Store.open(path)
    assert _digest(path) == before


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    with Store.open(path) as store:
        store.connection.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)]
        )
    before = _digest(path)
    with pytest.raises(StoreError, match="newer"):
        Store.open(path)
    assert _digest(path) == before


def test_unwritable_places_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a file"):
        Store.open(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create directory"):
        Store.open(blocker / "store.duckdb")
