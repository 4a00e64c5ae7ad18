"""A small store for the notebooks: the real histories, a tiny scan of a loopback nginx and a
tiny rotation-lab run (its truth in ``lab/`` beside the store, where ``pinlab report`` looks)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pinlab.bench.output import write_results
from pinlab.bench.pins import run_pins_benchmark
from pinlab.cli import app
from pinlab.collect import import_pem
from pinlab.lab import run_lab
from pinlab.lab.scenario import parse_scenario
from pinlab.store import Store
from pinlab.testbed.nginx import NginxFarm, VirtualHost
from pinlab.testbed.pki import CA, KeyType, pooled_key, write_pem
from pinlab.verify import TrustStore

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
IMPORTED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Real histories (import) and one collected scan: valid, untrusted, wrong-name and
    refused targets, P-256 and RSA leaves."""
    folder = tmp_path_factory.mktemp("notebook-store")
    db = folder / "small.duckdb"
    with Store.open(db) as store:
        import_pem(
            store,
            shared_data / "real-histories" / "manifest.csv",
            now=IMPORTED_AT,
            trust_store=TrustStore.certifi(),
            label="real-histories",
        )
    root = CA.root("Notebook Root")
    issuer = root.child_ca("Notebook Intermediate")
    stranger = CA.root("Stranger Root").child_ca("Stranger Intermediate")
    leaves = {
        "ecdsa.nb.test": issuer.issue_leaf("ecdsa.nb.test"),
        "rsa.nb.test": issuer.issue_leaf("rsa.nb.test", key=pooled_key(KeyType.RSA2048, 0)),
        "wrong-name.nb.test": issuer.issue_leaf("elsewhere.nb.test"),
        "untrusted.nb.test": stranger.issue_leaf("untrusted.nb.test"),
    }
    hosts = [
        VirtualHost(name, leaf.cert_pem + leaf.chain_pem, leaf.key_pem)
        for name, leaf in leaves.items()
    ]
    anchors = write_pem(folder / "root.pem", root)
    with NginxFarm(hosts, workers=1) as farm:
        lines = [f"127.0.0.1,{name},{farm.port}" for name in leaves]
        lines.append(f"127.0.0.1,refused.nb.test,{_closed_port()}")
        targets = folder / "targets.txt"
        targets.write_text("\n".join(lines) + "\n")
        result = CliRunner().invoke(
            app,
            ["collect", str(targets), "--db", str(db), "--ca-file", str(anchors),
             "--timeout", "5", "--label", "loopback"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    scenario = parse_scenario(LAB_SCENARIO, source="notebook-lab.toml")
    with Store.open(db) as store:
        run_lab(scenario, folder / "lab", store, validation_clock=lambda: datetime.now(UTC))
    return db


# Two policies, a rollover: enough for every check of page 06 to have something to count.
LAB_SCENARIO = {
    "lab": {"name": "notebook", "rounds": 4, "days_per_round": 30},
    "ca": [{"name": "primary", "rollover_rounds": [2]}],
    "group": [
        {"name": "fresh", "policy": "fresh", "key_type": "p256"},
        {"name": "reuse", "policy": "reuse", "key_type": "p256", "renew_every": 2},
    ],
}


@pytest.fixture(scope="session")
def bench_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick run of ``pinlab bench pins`` (seconds), as 04 reads it."""
    target = tmp_path_factory.mktemp("bench") / "bench.json"
    return write_results(run_pins_benchmark(quick=True), target)
