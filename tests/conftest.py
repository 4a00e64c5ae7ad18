"""Fixtures shared by every test module: the real data of ../shared/data, read in place."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pinlab.certs import Certificate, load_certificate_file
from pinlab.collect import import_pem
from pinlab.store import Store
from pinlab.survival import ObservedChain, observed_chains
from pinlab.verify import TrustStore

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real certificates of ../shared/data, read in place (never copied)."""
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"{SHARED_DATA} is missing: the project expects ../shared/data")
    return SHARED_DATA


IMPORTED_AT = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def real_db(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding ../shared/data/real-histories, imported once."""
    path = tmp_path_factory.mktemp("real") / "real.duckdb"
    with Store.open(path) as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=IMPORTED_AT)
    return path


@pytest.fixture(scope="session")
def real_chains(real_db: Path) -> list[ObservedChain]:
    """The real histories' observations, validated against today's certifi roots."""
    with Store.open(real_db, read_only=True) as store:
        frames = store.observations_df(), store.certificates_df()
    return observed_chains(*frames, trust_stores=TrustStore.certifi())


@pytest.fixture(scope="session")
def le_hierarchy(shared_data: Path) -> list[Certificate]:
    """Every certificate of ../shared/data/le-hierarchy (Let's Encrypt's CA certificates)."""
    directory = shared_data / "le-hierarchy"
    with (directory / "manifest.csv").open(newline="") as manifest:
        files = [row["file"] for row in csv.DictReader(manifest)]
    return [c for name in files for c in load_certificate_file(directory / name)]


def real_leaves(shared_data: Path, host: str) -> list[tuple[datetime, Certificate]]:
    """(observed_at, leaf) of ``host`` read straight from the manifest and its PEM files."""
    directory = shared_data / "real-histories"
    with (directory / "manifest.csv").open(newline="") as manifest:
        rows = [row for row in csv.DictReader(manifest) if row["host"] == host]
    leaves = [
        (datetime.fromisoformat(row["observed_at"]), directory / row["chain_file"]) for row in rows
    ]
    return [(at, load_certificate_file(path)[0]) for at, path in sorted(leaves)]
