"""pytest-benchmark micro-benchmarks of the pin check's hot path.

CI runs them with ``--benchmark-disable`` (pyproject addopts): each body then runs once, as
a test, so they cannot rot. For figures, ``pytest tests/bench --benchmark-enable``; for the
full comparison against the limit, ``pinlab bench pins``.
"""

from __future__ import annotations

import hashlib

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pinlab.bench.cases import pin_set
from pinlab.bench.chains import AT, HOSTNAME, bench_chain
from pinlab.der import spki_from_certificate
from pinlab.pins import CheckStatus
from pinlab.testbed.pki import KeyType
from pinlab.verify import verify_chain

KEY_TYPES = [KeyType.RSA2048, KeyType.P256]


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=lambda k: k.value)
def test_limit_sha256_and_lookup(benchmark: BenchmarkFixture, key_type: KeyType) -> None:
    leaf = bench_chain(key_type, 3).verified[0]
    spki, digests = leaf.spki, frozenset({leaf.spki_sha256})
    assert benchmark(lambda: hashlib.sha256(spki).digest() in digests)


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=lambda k: k.value)
def test_spki_slice(benchmark: BenchmarkFixture, key_type: KeyType) -> None:
    leaf = bench_chain(key_type, 3).verified[0]
    assert benchmark(spki_from_certificate, leaf.der) == leaf.spki


@pytest.mark.parametrize("size", [1, 100])
def test_pin_check_no_match(benchmark: BenchmarkFixture, size: int) -> None:
    chain = bench_chain(KeyType.P256, 3).verified
    pins = pin_set(None, size)
    assert benchmark(lambda: pins.check(chain, at=AT)).status is CheckStatus.NO_MATCH


def test_pin_check_first_match(benchmark: BenchmarkFixture) -> None:
    chain = bench_chain(KeyType.P256, 3).verified
    pins = pin_set(chain[0], 2)
    assert benchmark(lambda: pins.check(chain, at=AT)).matched_index == 0


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=lambda k: k.value)
def test_verify_chain(benchmark: BenchmarkFixture, key_type: KeyType) -> None:
    chain = bench_chain(key_type, 3)
    result = benchmark(
        lambda: verify_chain(
            chain.presented, hostname=HOSTNAME, at=AT, trust_store=chain.trust_store
        )
    )
    assert len(result.path) == 3
