"""Servers and PKIs shared by the collector tests: an nginx farm, and a Dask LocalCluster."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pinlab.bench.scale import farm_hosts, start_farm
from pinlab.collect.cluster import dask_client
from pinlab.testbed.nginx import NginxFarm, VirtualHost
from pinlab.testbed.pki import CA, KeyType, pooled_key


@dataclass(frozen=True)
class Farm:
    nginx: NginxFarm
    root: CA
    chains: dict[str, tuple[str, ...]]
    """Server name -> sha256 hex of the chain it is configured to send, in order."""


def _digest(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="session")
def farm() -> Iterator[Farm]:
    """nginx with 52 SNI hosts: P-256 and RSA-2048 leaves, chains of 1 to 4 certificates."""
    root = CA.root("Farm Root", key_type=KeyType.P256)
    upper = root.child_ca(
        "Farm Intermediate 1", key_type=KeyType.RSA2048, key=pooled_key(KeyType.RSA2048, 0)
    )
    lower = upper.child_ca("Farm Intermediate 2", key_type=KeyType.P256)
    hosts, chains = [], {}
    for index in range(52):
        name = f"h{index}.farm.test"
        length = 1 + index % 4
        issuer = upper if length <= 2 else lower
        if index % 2:
            leaf = issuer.issue_leaf(name, key=pooled_key(KeyType.RSA2048, 1 + index // 2 % 8))
        else:
            leaf = issuer.issue_leaf(name, key_type=KeyType.P256)
        sent = [leaf, upper] if length == 2 else [leaf, lower, upper, root][:length]
        hosts.append(VirtualHost(name, b"".join(c.cert_pem for c in sent), leaf.key_pem))
        chains[name] = tuple(_digest(c.der) for c in sent)
    with NginxFarm(hosts, workers=2) as nginx:
        yield Farm(nginx, root, chains)


@dataclass(frozen=True)
class ScaleFarm:
    nginx: NginxFarm
    root: CA
    hosts: int


@pytest.fixture(scope="session")
def scale_farm() -> Iterator[ScaleFarm]:
    """nginx serving 16 wildcard hosts (``*.hN.scale.test``), P-256 and RSA leaves."""
    root, hosts = farm_hosts(16)
    with start_farm(hosts) as nginx:
        yield ScaleFarm(nginx, root, len(hosts))


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """A LocalCluster of 2 single-threaded worker processes on 127.0.0.1."""
    with dask_client(workers=2) as client:
        yield client
