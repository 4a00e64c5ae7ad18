"""An nginx farm of wildcard SNI hosts and a two-worker LocalCluster for the scale tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pinlab.bench.scale import farm_hosts, start_farm
from pinlab.nginx import NginxFarm
from pinlab.pki import CA
from pinlab.scale.cluster import dask_client


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
