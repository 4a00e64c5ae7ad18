"""The validation cache gives exactly what verify_chain gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pinlab.collect.validation import Validator
from pinlab.testbed.pki import CA
from pinlab.verify import TrustStore, verify_chain

AT = datetime(2030, 1, 1, tzinfo=UTC)


def test_cached_results_equal_verify_chain() -> None:
    root = CA.root("Validation Root")
    intermediate = root.child_ca("Validation Intermediate", not_after=AT + timedelta(days=1))
    leaf = intermediate.issue_leaf("a.test", "*.b.test", "127.0.0.1")
    chain = [leaf.record, intermediate.record]
    trust = TrustStore.from_certificates([root.record], name="test")
    validator = Validator(trust)
    times = [AT, AT + timedelta(days=1), AT + timedelta(days=1, seconds=1)]
    names = ["a.test", "x.b.test", "b.test", "127.0.0.1", "other.test", "a.test"]
    for at in times:
        for name in names:
            direct = verify_chain(chain, hostname=name, at=at, trust_store=trust)
            expected = "valid" if direct.ok else direct.failure.value  # type: ignore[union-attr]
            assert validator.validate(chain, name, at)[0] == expected, (name, at)
    assert len(validator.valid) == 1
