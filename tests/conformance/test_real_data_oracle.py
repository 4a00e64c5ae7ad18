"""Real-data oracle: pinlab's pins of the Let's Encrypt hierarchy equal OpenSSL's.

For every certificate in ../shared/data/le-hierarchy the pin is recomputed by the pipeline
that HPKP documentation and every pinning guide give::

    openssl x509 -pubkey -noout | openssl pkey -pubin -outform der
        | openssl dgst -sha256 -binary | base64

run for real, one certificate at a time, and compared with the library and the CLI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pinlab.certs import load_certificate_file

from .conftest import Pinlab

LE_CERTS = sorted(
    (Path(__file__).resolve().parents[3] / "shared" / "data" / "le-hierarchy" / "certs").glob(
        "*.pem"
    )
)
PIPELINE = (
    'openssl x509 -pubkey -noout -in "$1" | openssl pkey -pubin -outform der'
    " | openssl dgst -sha256 -binary | base64"
)


def openssl_pin(path: Path) -> str:
    """The pin of the certificate in ``path`` by the OpenSSL command-line pipeline."""
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-ec", PIPELINE, "bash", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    digest = done.stdout.strip()
    assert len(digest) == 44, done  # a whole pipeline must have produced a SHA-256
    return "sha256/" + digest


def test_the_hierarchy_is_all_there(shared_data: Path) -> None:
    assert LE_CERTS, "no certificate found in le-hierarchy/certs"
    assert LE_CERTS[0].is_relative_to(shared_data)
    assert len(LE_CERTS) == 83


@pytest.mark.parametrize("path", LE_CERTS, ids=[path.stem for path in LE_CERTS])
def test_pin_equals_openssl_pipeline(path: Path) -> None:
    (certificate,) = load_certificate_file(path)
    assert certificate.pin == openssl_pin(path)


def test_cli_pins_of_the_whole_hierarchy_equal_openssl(tmp_path: Path, pinlab: Pinlab) -> None:
    """One ``pinlab pins --json`` over a bundle of all 83 (one process, not 83)."""
    bundle = tmp_path / "le-hierarchy.pem"
    bundle.write_bytes(b"".join(path.read_bytes() for path in LE_CERTS))
    run = pinlab("pins", str(bundle), "--json", "--at", "2026-01-01T00:00:00Z")
    assert run.returncode == 0, str(run)
    listed = {row["sha256"]: row["pin"] for row in json.loads(run.stdout)}
    expected = {load_certificate_file(path)[0].sha256: openssl_pin(path) for path in LE_CERTS[::8]}
    assert len(listed) == len(LE_CERTS)
    for sha256, pin in expected.items():
        assert listed[sha256] == pin


def test_cross_signs_share_a_pin() -> None:
    """Cross-signed CA certificates carry one key: the pin follows the key, not the cert."""
    by_pin: dict[str, set[str]] = {}
    for path in LE_CERTS:
        (certificate,) = load_certificate_file(path)
        by_pin.setdefault(certificate.pin, set()).add(certificate.sha256)
    assert any(len(certs) > 1 for certs in by_pin.values())
