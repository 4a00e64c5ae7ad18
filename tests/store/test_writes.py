"""Every write reports failure: a full disk during export exits non-zero, says so in one
line, and leaves nothing that ``pinlab import`` would take as a complete dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pinlab.store import Store, StoreError
from tests.store.conftest import OBSERVATIONS, file_size_limit, run_pinlab

LIMIT = 32 * 1024
"""Bigger than the certificates, scans and meta parts, smaller than the observations part."""


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("partitioned", [False, True])
def test_a_full_disk_export_fails_and_leaves_no_dataset(
    tmp_path: Path, campaign_db: Path, partitioned: bool
) -> None:
    dataset = tmp_path / "dataset"
    flags = ["--partitioned"] if partitioned else []
    full = run_pinlab(
        "export", dataset, "--db", campaign_db, *flags, preexec_fn=file_size_limit(LIMIT)
    )
    assert full.returncode == 2, full.stdout + full.stderr
    assert "exported" not in full.stdout
    assert full.stderr.count("\n") == 1, full.stderr
    assert full.stderr.startswith(f"pinlab: error: {dataset}: cannot write dataset: File too large")
    assert "Traceback" not in full.stderr
    # The small parts were written before the big one failed, and are gone again.
    assert [p for p in _files(dataset) if p.suffix == ".parquet" and "meta" not in p.parts] == []
    refused = run_pinlab("import", dataset, "--db", tmp_path / "copy.duckdb")
    assert refused.returncode == 2
    assert refused.stderr.startswith("pinlab: error:"), refused.stderr
    assert "Traceback" not in refused.stderr

    # The same export without the limit succeeds: the failure above was the disk's.
    shutil.rmtree(dataset)
    whole = run_pinlab("export", dataset, "--db", campaign_db, *flags)
    assert whole.returncode == 0, whole.stderr
    assert run_pinlab("import", dataset, "--db", tmp_path / "copy.duckdb").returncode == 0
    with Store.open(tmp_path / "copy.duckdb", read_only=True) as copy:
        assert copy.counts() == {"certificates": 5, "scans": 1, "observations": OBSERVATIONS}


def test_an_export_cut_short_is_refused_by_import(tmp_path: Path, campaign_db: Path) -> None:
    with Store.open(campaign_db, read_only=True) as store:
        store.export_parquet(tmp_path / "whole")
    meta = pq.read_table(tmp_path / "whole" / "meta" / "part-0.parquet").to_pylist()
    assert {"key": "rows:observations", "value": str(OBSERVATIONS)} in meta

    killed = tmp_path / "killed"  # killed before its last write: no meta part
    shutil.copytree(tmp_path / "whole", killed)
    shutil.rmtree(killed / "meta")
    short = tmp_path / "short"  # a part that lost rows after the export
    shutil.copytree(tmp_path / "whole", short)
    part = short / "observations" / "part-0.parquet"
    pq.write_table(pq.read_table(part).slice(0, 100), part)
    with Store.open(tmp_path / "copy.duckdb") as copy:
        with pytest.raises(StoreError, match="incomplete dataset: no meta/ part"):
            copy.import_parquet(killed)
        with pytest.raises(StoreError, match="observations/ holds 100 rows, its export wrote 5000"):
            copy.import_parquet(short)
        assert copy.counts() == {"certificates": 0, "scans": 0, "observations": 0}
        assert copy.import_parquet(tmp_path / "whole")["observations"] == OBSERVATIONS
