"""A store shaped like a campaign (few certificates, thousands of observations), and the
real ``pinlab`` script run as a user runs it."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pinlab.store import CertificateRow, Observation, Scan, Store
from pinlab.testbed.pki import CA, KeyType

PINLAB = str(Path(sys.executable).with_name("pinlab"))
NOW = datetime(2025, 3, 1, tzinfo=UTC)
OBSERVATIONS = 5000


@pytest.fixture(scope="session")
def campaign_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 certificates, 1 scan, 5000 observations: the observations part is the big one."""
    root = CA.root("Campaign Root")
    intermediate = root.child_ca("Campaign Intermediate")
    leaves = [intermediate.issue_leaf(f"a{i}.test", key_type=KeyType.P256) for i in range(3)]
    certificates = [
        CertificateRow.from_certificate(c.record) for c in (*leaves, intermediate, root)
    ]
    path = tmp_path_factory.mktemp("campaign") / "campaign.duckdb"
    with Store.open(path) as store:
        store.add_scan(Scan("s1", "scan", None, "/targets.txt", "{}", NOW, NOW, "test"))
        rows = [_observation(i, certificates) for i in range(OBSERVATIONS)]
        store.write(rows, certificates)
    return path


def _observation(i: int, certificates: list[CertificateRow]) -> Observation:
    chain = (certificates[i % 3].sha256, certificates[3].sha256)
    return Observation(
        "s1", f"h{i}.test", 443, f"h{i}.test", "127.0.0.1", None,
        NOW + timedelta(seconds=i * 1.37), "ok", None, "TLSv1.3", "TLS_AES_128_GCM_SHA256",
        chain, "untrusted", "unknown issuer", 0.1 * i, 0.2 * i, 1,
    )  # fmt: skip


def file_size_limit(size: int) -> Callable[[], None]:
    """A ``preexec_fn`` capping the size of any file the child writes (``RLIMIT_FSIZE``).

    Past it, ``write`` fails with ``EFBIG``, a real error of the operating system, as a
    full disk's ``ENOSPC`` is; SIGXFSZ is ignored so that the write fails rather than the
    process being killed.
    """

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


def run_pinlab(
    *args: str | Path, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``pinlab`` script; stdout and stderr captured as text."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    env.pop("PINLAB_DEBUG", None)
    return subprocess.run(
        [PINLAB, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=preexec_fn,
    )
