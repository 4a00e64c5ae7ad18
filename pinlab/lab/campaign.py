"""A collection campaign on loopback for ``make demo``: what ``pinlab collect`` records
against servers whose answers are known.

One nginx serves hosts under a demo root (their chains validate), hosts under a second
root that no trust store holds (untrusted), and a default certificate for every other
name (a hostname mismatch); a few targets point at a closed port (refused). The campaign
is an ordinary ``pinlab collect`` run with the demo root as ``--ca-file``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pinlab.bench.farm import farm_hosts
from pinlab.testbed.nginx import NginxFarm
from pinlab.testbed.pki import write_pem

__all__ = ["DemoCampaign", "demo_campaign"]


@dataclass(frozen=True)
class DemoCampaign:
    """A running demo farm: the target file and the trust anchors to collect with."""

    targets: Path
    ca_file: Path
    expected: dict[str, int]
    """Targets per expected outcome (valid, hostname, untrusted, refused)."""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def demo_campaign(
    out: Path, *, valid: int = 24, untrusted: int = 4, misnamed: int = 4, refused: int = 2
) -> Iterator[DemoCampaign]:
    """``with demo_campaign(DIR) as campaign``: nginx serving the demo hosts until exit."""
    root, trusted_hosts = farm_hosts(valid, domain="demo.test", name="Demo")
    _, rogue_hosts = farm_hosts(untrusted, domain="rogue.test", name="Rogue")
    out.mkdir(parents=True, exist_ok=True)
    ca_file = write_pem(out / "demo-root.pem", root)
    closed = _closed_port()
    with NginxFarm(trusted_hosts + rogue_hosts, workers=2) as farm:
        lines = [f"127.0.0.1,{host.server_name},{farm.port}" for host in trusted_hosts]
        lines += [f"127.0.0.1,{host.server_name},{farm.port}" for host in rogue_hosts]
        lines += [f"127.0.0.1,www{i}.unknown.test,{farm.port}" for i in range(misnamed)]
        lines += [f"127.0.0.1,closed{i}.demo.test,{closed}" for i in range(refused)]
        targets = out / "targets.txt"
        targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected = {
            "valid": valid, "untrusted": untrusted, "hostname": misnamed, "refused": refused
        }  # fmt: skip
        yield DemoCampaign(targets, ca_file, expected)
