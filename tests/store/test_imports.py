"""Imports are idempotent and refuse incomplete input: a store missing a table, a dataset
naming certificates it lacks, the same rows twice by manifest or by dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinlab.collect import import_pem
from pinlab.store import Store, StoreError, import_dataset
from pinlab.testbed.pki import CA, KeyType
from tests.store.conftest import NOW, OBSERVATIONS, run_pinlab


def _copy(source: Path, folder: Path) -> Path:
    target = folder / source.name
    shutil.copyfile(source, target)
    return target


def _drop_table(db: Path, table: str) -> None:
    connection = duckdb.connect(str(db))
    connection.execute(f"DROP TABLE {table}")
    connection.close()


def test_a_store_missing_a_table_is_refused_and_not_repaired(
    tmp_path: Path, campaign_db: Path, shared_data: Path
) -> None:
    db = _copy(campaign_db, tmp_path)
    _drop_table(db, "certificates")
    for command in (
        ("export", tmp_path / "out"),
        ("import-pem", shared_data / "real-histories" / "manifest.csv"),
        ("history", "--summary"),
    ):
        result = run_pinlab(*command, "--db", db)
        assert result.returncode == 2, (command, result.stdout)
        assert "lacks the table(s) certificates" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    tables = duckdb.connect(str(db), read_only=True).execute("SHOW TABLES").fetchall()
    assert ("certificates",) not in tables  # import-pem did not recreate it


def test_an_unreadable_schema_version_is_named(tmp_path: Path, campaign_db: Path) -> None:
    db = _copy(campaign_db, tmp_path)
    connection = duckdb.connect(str(db))
    connection.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    connection.close()
    result = run_pinlab("export", tmp_path / "out", "--db", db)
    assert result.returncode == 2
    assert "schema_version is 'abc', not a number" in result.stderr
    assert result.stderr.count("\n") == 1


def _manifest_lines(folder: Path, lines: int) -> list[str]:
    """A manifest header and ``lines`` rows, each with its own chain file."""
    root = CA.root("Manifest Root")
    text = ["host,observed_at,chain_file,source"]
    for index in range(lines):
        leaf = root.issue_leaf(f"m{index}.test", key_type=KeyType.P256)
        (folder / f"chain{index}.pem").write_bytes(leaf.cert_pem + root.cert_pem)
        text.append(f"m{index}.test,2024-0{1 + index % 9}-01,chain{index}.pem,test")
    return text


def test_the_same_manifest_rows_are_stored_once(tmp_path: Path) -> None:
    lines = _manifest_lines(tmp_path, 8)
    text = "\n".join(lines[:7]) + "\n"  # six rows
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(text)
    with Store.open(tmp_path / "store.duckdb") as store:
        import_pem(store, manifest, now=NOW)
        assert store.counts()["observations"] == 6
        manifest.write_text(text + "\n")  # differs only by a trailing blank line
        with pytest.raises(StoreError, match="every one of its 6 rows is already stored"):
            import_pem(store, manifest, now=NOW)
        manifest.write_text(text + text.splitlines()[1] + "\n")  # one row twice over
        with pytest.raises(StoreError, match="already stored"):
            import_pem(store, manifest, now=NOW)
        assert store.counts() == {"certificates": 7, "scans": 1, "observations": 6}
        manifest.write_text("\n".join(lines) + "\n")  # the same six rows and two new ones
        scan = import_pem(store, manifest, now=NOW)
        assert len(store.observations_df(scan.scan_id)) == 2
        assert store.counts() == {"certificates": 9, "scans": 2, "observations": 8}


def _rewrite(part: Path, table: pa.Table) -> None:
    pq.write_table(table, part)


def _drop_counts(dataset: Path) -> None:
    """Make the meta part an older export's, which recorded no row counts."""
    part = dataset / "meta" / "part-0.parquet"
    meta = pq.read_table(part)
    keep = [not key.startswith("rows:") for key in meta.column("key").to_pylist()]
    _rewrite(part, meta.filter(pa.array(keep)))


def test_a_dataset_with_every_observation_twice_imports_once(
    tmp_path: Path, campaign_db: Path
) -> None:
    with Store.open(campaign_db, read_only=True) as store:
        store.export_parquet(tmp_path / "flat")
    part = tmp_path / "flat" / "observations" / "part-0.parquet"
    rows = pq.read_table(part)
    _rewrite(part, pa.concat_tables([rows, rows]))
    _drop_counts(tmp_path / "flat")
    with Store.open(tmp_path / "a.duckdb") as store:
        assert store.import_parquet(tmp_path / "flat")["observations"] == OBSERVATIONS
    # A partitioned dataset holding the same part twice (a shard copied by hand).
    result = run_pinlab("export", tmp_path / "parts", "--partitioned", "--db", campaign_db)
    assert result.returncode == 0, result.stderr
    (shard,) = (tmp_path / "parts" / "observations").rglob("*.parquet")
    shutil.copyfile(shard, shard.with_name("copy-" + shard.name))
    with Store.open(tmp_path / "b.duckdb") as store:
        assert import_dataset(tmp_path / "parts", store)["observations"] == OBSERVATIONS
        # Importing into a store that already holds the rows adds nothing.
        assert store.import_parquet(tmp_path / "flat") == {
            "certificates": 0, "scans": 0, "observations": 0,
        }  # fmt: skip


def test_a_dataset_naming_missing_certificates_is_refused(
    tmp_path: Path, campaign_db: Path
) -> None:
    with Store.open(campaign_db, read_only=True) as store:
        store.export_parquet(tmp_path / "flat")
    part = tmp_path / "flat" / "certificates" / "part-0.parquet"
    certificates = pq.read_table(part)
    leaf = certificates.column("subject").to_pylist().index("CN=a0.test,O=pinlab test PKI")
    _rewrite(part, pa.concat_tables([certificates.slice(0, leaf), certificates.slice(leaf + 1)]))
    _drop_counts(tmp_path / "flat")
    db = tmp_path / "store.duckdb"
    result = run_pinlab("import", tmp_path / "flat", "--db", db)
    assert result.returncode == 2
    missing = len(range(0, OBSERVATIONS, 3))  # every third observation's leaf is a0.test
    assert f"{missing} observations name 1 certificates the dataset does not hold" in result.stderr
    with Store.open(db, read_only=True) as store:
        assert store.counts() == {"certificates": 0, "scans": 0, "observations": 0}


@pytest.mark.parametrize(
    ("observed_at", "message"),
    [
        ("0001-01-01T00:00:00+01:00", "is out of range in UTC"),
        ("9999-12-31T23:59:59-01:00", "is out of range in UTC"),
        ("1900-06-01T00:00:00Z", "years 1950..9999 only"),
    ],
)
def test_a_manifest_date_outside_what_a_certificate_carries_is_named(
    tmp_path: Path, shared_data: Path, observed_at: str, message: str
) -> None:
    chain = next((shared_data / "real-histories").rglob("*.pem"))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"host,observed_at,chain_file\nx.test,{observed_at},{chain}\n")
    result = run_pinlab("import-pem", manifest, "--db", tmp_path / "s.duckdb")
    assert result.returncode == 2, result.stderr
    assert f"{manifest} line 2: observed_at {observed_at!r}" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_manifest_field_over_the_csv_limit_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("host,observed_at,chain_file\nx.test,2020-01-01," + "a" * 140_000 + "\n")
    result = run_pinlab("import-pem", manifest, "--db", tmp_path / "s.duckdb")
    assert result.returncode == 2, result.stderr
    assert f"{manifest} line 2: field larger than field limit" in result.stderr
    assert "Traceback" not in result.stderr
