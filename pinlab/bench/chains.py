"""The certificate chains every benchmark runs on, made with :mod:`pinlab.testbed.pki`.

One hierarchy per key type, every certificate of it with that key type (so that one limit,
SHA-256 over an SPKI of that size, applies to the whole chain): a root, an intermediate
under it and a second intermediate under that. Leaves hang from each level, giving verified
chains of length 2 (leaf, root), 3 and 4. Keys come from :func:`pinlab.testbed.pki.pooled_key`, so
RSA-4096 keys are made once per process. Validity is pki's fixed window; validation time is
fixed inside it: nothing here reads the clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from pinlab.certs import Certificate
from pinlab.testbed.pki import CA, KeyType, Leaf, pooled_key
from pinlab.verify import TrustStore, verify_chain

__all__ = [
    "AT",
    "CHAIN_LENGTHS",
    "HOSTNAME",
    "KEY_LABELS",
    "BenchChain",
    "bench_chain",
]

AT = datetime(2030, 6, 1, tzinfo=UTC)
"""Validation time of every benchmark: inside :mod:`pinlab.testbed.pki`'s default validity."""
HOSTNAME = "bench.pinlab.test"
CHAIN_LENGTHS = (2, 3, 4)
KEY_LABELS = {
    KeyType.RSA2048: "RSA-2048",
    KeyType.RSA4096: "RSA-4096",
    KeyType.P256: "P-256",
    KeyType.P384: "P-384",
}

# Pooled key indexes: distinct keys, hence distinct pins, for each level of the hierarchy.
_ROOT_KEY, _FIRST_KEY, _SECOND_KEY, _LEAF_KEY = 40, 41, 42, 43


@dataclass(frozen=True, slots=True)
class BenchChain:
    """A leaf, what its server presents, and the path validation builds from it."""

    key_type: KeyType
    leaf: Leaf
    root: CA
    presented: tuple[Certificate, ...]
    """Leaf then intermediates, as a server sends them (no root)."""
    verified: tuple[Certificate, ...]
    """Leaf to trust anchor, as :func:`pinlab.verify.verify_chain` built it."""
    trust_store: TrustStore

    @property
    def label(self) -> str:
        """``RSA-2048``, ``P-256``...: the key type as the tables print it."""
        return KEY_LABELS[self.key_type]

    @property
    def length(self) -> int:
        """Certificates in the verified path."""
        return len(self.verified)


@functools.cache
def _hierarchy(key_type: KeyType) -> tuple[CA, CA, CA]:
    label = KEY_LABELS[key_type]
    root = CA.root(f"pinlab bench root {label}", key=pooled_key(key_type, _ROOT_KEY))
    first = root.child_ca(
        f"pinlab bench intermediate 1 {label}", key=pooled_key(key_type, _FIRST_KEY)
    )
    second = first.child_ca(
        f"pinlab bench intermediate 2 {label}", key=pooled_key(key_type, _SECOND_KEY)
    )
    return root, first, second


@functools.cache
def bench_chain(key_type: KeyType, length: int) -> BenchChain:
    """The verified chain of ``length`` certificates (2 to 4) for ``key_type``, made once."""
    if length not in CHAIN_LENGTHS:
        raise ValueError(f"chain length must be one of {CHAIN_LENGTHS}, not {length}")
    root, first, second = _hierarchy(key_type)
    issuer = (root, first, second)[length - 2]
    leaf = issuer.issue_leaf(HOSTNAME, "127.0.0.1", key=pooled_key(key_type, _LEAF_KEY))
    presented = (leaf.record, *(ca.record for ca in issuer.intermediates))
    store = TrustStore.from_certificates([root.record], name=f"bench {KEY_LABELS[key_type]}")
    verification = verify_chain(presented, hostname=HOSTNAME, at=AT, trust_store=store)
    if not verification.ok or len(verification.path) != length:
        raise RuntimeError(
            f"bench chain {KEY_LABELS[key_type]}/{length} did not verify: {verification.error}"
        )
    return BenchChain(key_type, leaf, root, presented, verification.path, store)
