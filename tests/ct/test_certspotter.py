"""An independent client reads the test log: Debian's certspotter (SSLMate's CT monitor).

certspotter checks the tree head signature, rebuilds the Merkle tree from every entry it
downloads and compares it with the signed root, parses precertificates the RFC 6962 way,
and for each certificate matching its watch list writes the SHA-256 of the certificate
and of its TBS without poison or SCT list: the very key pinlab merges issuances by.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pinlab.ct import BackfillOptions, DomainFilter, backfill_log
from pinlab.store import Store
from pinlab.testbed.ctserver import LogServer
from tests.ct.conftest import WATCHED, History, clock

CERTSPOTTER = shutil.which("certspotter")
pytestmark = pytest.mark.skipif(
    CERTSPOTTER is None, reason="certspotter missing: install the Debian package (make deb)"
)


def _run_certspotter(tmp_path: Path, server: LogServer, story: History) -> tuple[Path, str]:
    assert CERTSPOTTER is not None
    (tmp_path / "logs.json").write_text(json.dumps(story.log.log_list(server.url)))
    (tmp_path / "watchlist").write_text("\n".join(WATCHED) + "\n")
    state = tmp_path / "state"
    command = [
        CERTSPOTTER, "-logs", str(tmp_path / "logs.json"), "-watchlist",
        str(tmp_path / "watchlist"), "-state_dir", str(state), "-verbose", "-stdout",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            states = list((state / "logs").glob("*/state.json"))
            if states:
                verified = json.loads(states[0].read_text()).get("verified_position") or {}
                if verified.get("size") == story.log.size:
                    break
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    return state, stderr


def test_certspotter_verifies_the_log_and_agrees_on_the_entries(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    state, stderr = _run_certspotter(tmp_path, served, ct_history)
    states = list((state / "logs").glob("*/state.json"))
    assert states, stderr
    log_state = json.loads(states[0].read_text())
    assert log_state["verified_position"]["size"] == ct_history.log.size, stderr
    root = base64.b64decode(log_state["verified_sth"]["sha256_root_hash"])
    assert root == ct_history.log.tree.root()
    assert "misbehav" not in stderr.lower()
    assert "does not match" not in stderr
    found = {
        path.name.split(".")[0]: json.loads(path.read_text())
        for path in (state / "certs").rglob("*.json")
    }

    with Store.open(tmp_path / "s.duckdb") as store:
        backfill_log(
            store, served.url, key=ct_history.log.key, domains=DomainFilter(WATCHED),
            options=BackfillOptions(verify=True, batch_size=16), clock=clock,
        )  # fmt: skip
        registry = store.connection.execute(
            "SELECT DISTINCT issuance, precert_sha256, final_sha256 FROM ct_issuances"
        ).fetchall()
    ours = {sha for _, precert, final in registry for sha in (precert, final) if sha}
    # every certificate the watch list matches, precertificates and final ones alike
    assert set(found) == ours
    # and certspotter's TBS digest is pinlab's issuance key, for both halves of an issuance
    assert {record["tbs_sha256"] for record in found.values()} == {row[0] for row in registry}
