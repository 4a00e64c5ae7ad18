"""The fast result construction of :meth:`PinSet.check` builds the very same record."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from pinlab.bench.cases import pin_set
from pinlab.bench.chains import AT, bench_chain
from pinlab.pins import CheckStatus, Pin, PinCheckResult, PinSet, Semantics, _new_result
from pinlab.testbed.pki import KeyType


def test_fast_constructor_is_not_the_fallback() -> None:
    assert _new_result is not PinCheckResult


def test_fast_result_equals_the_dataclass_constructor() -> None:
    chain = bench_chain(KeyType.P256, 3).verified
    pins = pin_set(chain[1], 2)
    values = (CheckStatus.MATCHED, Semantics.VERIFIED, chain, pins, Pin.of(chain[1]), 1, chain[1])
    fast = _new_result(*values, False)
    slow = PinCheckResult(*values, False)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.status = CheckStatus.NO_MATCH  # type: ignore[misc]


@pytest.mark.parametrize("where", [0, 1, 2, None])
def test_check_reports_the_first_pinned_certificate(where: int | None) -> None:
    chain = bench_chain(KeyType.P256, 3).verified
    pins = pin_set(chain[where] if where is not None else None, 10)
    result = pins.check(chain, at=AT)
    assert result.chain == chain
    assert result.pin_set is pins
    if where is None:
        assert result.status is CheckStatus.NO_MATCH
        assert (result.matched_pin, result.matched_index, result.matched_certificate) == (
            None,
            None,
            None,
        )
        assert result.backup is False
    else:
        assert result.status is CheckStatus.MATCHED
        assert result.matched_index == where
        assert result.matched_certificate is chain[where]
        assert result.matched_pin == Pin.of(chain[where])


def test_backup_legacy_and_expiry_still_apply() -> None:
    chain = bench_chain(KeyType.P256, 3).verified
    backup = PinSet.of([Pin("sha256", bytes(32))], backup=[Pin.of(chain[2])])
    assert backup.check(chain).backup is True
    legacy = PinSet.of([Pin("sha1", chain[1].spki_digest("sha1"))])
    assert legacy.check(chain).matched_index == 1
    expiring = PinSet.of([Pin("sha256", bytes(32))], expires_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert expiring.check(chain, at=AT).status is CheckStatus.EXPIRED
    assert expiring.check(chain).status is CheckStatus.NO_MATCH
