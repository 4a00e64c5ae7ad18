"""A CT history issued by the tests, logged in a correct RFC 6962 log, and its truth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pinlab import history
from pinlab.certs import Certificate
from pinlab.store import frames_from_chains
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.ctserver import LogServer
from pinlab.testbed.pki import CA

T0 = datetime(2021, 1, 1, tzinfo=UTC)
WATCHED = ["alpha.test", "beta.test", "www.beta.test", "gamma.test", "www.delta.test"]


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def clock() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class History:
    """The log, and what was issued for the watched names (the truth)."""

    log: LocalLog
    truth: list[tuple[str, datetime, tuple[bytes, ...]]] = field(default_factory=list)
    """(host, issued at, the final certificate's chain) per watched issuance and host."""
    finals: dict[bytes, bytes] = field(default_factory=dict)
    """Precertificate DER -> final DER, for every precert issuance."""

    def truth_ledger(self) -> pd.DataFrame:
        sightings = [
            (host, 443, None, at, [Certificate.from_der(der) for der in chain])
            for host, at, chain in self.truth
        ]
        observations, certificates = frames_from_chains(sightings)
        return history.renewal_ledger(observations, certificates)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build_history() -> History:
    """~60 entries over four years: renewals with fresh and reused keys, an issuer
    change, a wildcard, precertificates with and without their final certificate, noise."""
    root = CA.root("CT Test Root")
    first = root.child_ca("CT Test CA 1")
    second = root.child_ca("CT Test CA 2")
    log = LocalLog()
    story = History(log)
    events: list[tuple[datetime, str, int]] = []
    events += [(T0 + timedelta(days=60 * i), "alpha", i) for i in range(6)]
    events += [(T0 + timedelta(days=5 + 90 * i), "beta", i) for i in range(4)]
    events += [(T0 + timedelta(days=11 + 120 * i), "gamma", i) for i in range(5)]
    events += [(T0 + timedelta(days=17 + 365 * i), "delta", i) for i in range(3)]
    events += [(T0 + timedelta(days=3 + 45 * i), "noise", i) for i in range(30)]
    beta_key = _key()
    for at, kind, i in sorted(events):
        stamp = ms(at)
        if kind in ("alpha", "beta", "delta"):
            names = {
                "alpha": ("alpha.test",),
                "beta": ("beta.test", "www.beta.test"),
                "delta": ("*.delta.test", "delta.test"),
            }[kind]
            issued = log.issue(
                first, *names, timestamp=stamp, key=beta_key if kind == "beta" else None
            )
            story.finals[issued.precert] = issued.final
            if (kind == "alpha" and i % 3 != 2) or kind == "delta":
                log.add_certificate(issued.final, issued.chain, timestamp=stamp + 2000)
            hosts = {"alpha": ["alpha.test"], "beta": ["beta.test", "www.beta.test"]}
            for host in hosts.get(kind, ["www.delta.test"]):
                story.truth.append((host, at, (issued.final, *issued.chain)))
        elif kind == "gamma":
            ca = first if i < 2 else second
            leaf = ca.issue_leaf("gamma.test", not_before=at, not_after=at + timedelta(days=398))
            chain = (leaf.der, ca.der, root.der)
            log.add_certificate(leaf.der, chain[1:], timestamp=stamp)
            story.truth.append(("gamma.test", at, chain))
        else:
            issued = log.issue(first, f"noise{i}.other.test", timestamp=stamp)
            if i % 2:
                log.add_certificate(issued.final, issued.chain, timestamp=stamp + 1000)
    return story


@pytest.fixture(scope="session")
def ct_history() -> History:
    return build_history()


@pytest.fixture
def served(ct_history: History) -> Iterator[LogServer]:
    with LogServer(ct_history.log) as server:
        yield server


def key_pem(log: LocalLog) -> bytes:
    return log.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
