"""The sample configurations of data/configs: read, pins on real keys, audited on real data."""

from __future__ import annotations

import json
from pathlib import Path

import certifi
import pytest
from typer.testing import CliRunner

from pinlab.advice.audit import parse_config
from pinlab.certs import Certificate
from pinlab.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "data" / "configs"
SAMPLES = {
    "PinningClient.kt": "okhttp",
    "network_security_config.xml": "android-nsc",
    "TrustKitConfig.swift": "trustkit",
    "Info.plist": "ns-pinned-domains",
}


def _root_pins(le_hierarchy: list[Certificate]) -> set[str]:
    """The pins of ISRG Root X1 and X2, computed from Let's Encrypt's published certificates."""
    return {
        c.pin
        for c in le_hierarchy
        if c.subject
        in {
            "CN=ISRG Root X1,O=Internet Security Research Group,C=US",
            "CN=ISRG Root X2,O=Internet Security Research Group,C=US",
        }
    }


def test_one_sample_per_platform() -> None:
    assert sorted(p.name for p in CONFIGS.iterdir()) == sorted(SAMPLES)


@pytest.mark.parametrize(("name", "platform"), SAMPLES.items())
def test_sample_pins_the_two_isrg_roots(
    name: str, platform: str, le_hierarchy: list[Certificate]
) -> None:
    config = parse_config((CONFIGS / name).read_bytes(), name=name)
    assert config.findings == ()
    (rule,) = config.rules
    assert (rule.domain, rule.platform) == ("lencr.org", platform)
    roots = _root_pins(le_hierarchy)
    assert len(roots) == 2
    assert {str(p) for p in rule.all_pins} == roots


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_audited_on_the_real_history(name: str, real_db: Path) -> None:
    args = ["audit", str(CONFIGS / name), "--db", str(real_db), "--at", "2026-06-01"]
    result = CliRunner().invoke(app, [*args, "--ca-file", certifi.where(), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (host,) = report["hosts"]
    assert host["host"] == "lencr.org"
    assert host["enforced"]
    # Every chain of lencr.org ends at one of the two roots: 13 validated, none rejected.
    assert (host["accepted"], host["rejected"], host["broken_at"]) == (13, 0, None)
    assert not [f for f in report["findings"] if f["severity"] in {"error", "warning"}]
