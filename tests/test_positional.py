"""Records that cross process pipes pickle as their constructor call, and round-trip."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime

import pytest

from pinlab.ct.entries import EntryType, LogEntry
from pinlab.positional import PickledByPosition
from pinlab.store import CertificateRow, Observation

AT = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "record",
    [
        CertificateRow.unparsable("ab" * 32, b"\x30\x00", "truncated"),
        Observation(
            *("s1", "example.com", 443, "example.com", "192.0.2.1", None, AT, "ok", None),
            *("TLSv1.3", "TLS_AES_128_GCM_SHA256", ("ab" * 32,), "valid", None, 1.5, 2.5, 1),
            source_extra='{"addresses": ["192.0.2.1"]}',
        ),
        LogEntry(7, 1_600_000_000_000, EntryType.PRECERT, b"cert", (b"ca",), b"leaf", b"tbs", b"k"),
    ],
    ids=type,
)
def test_records_round_trip_as_their_constructor_call(record: PickledByPosition) -> None:
    cls, arguments = record.__reduce__()
    assert cls is type(record)
    assert arguments == dataclasses.astuple(record)  # type: ignore[call-overload]
    assert pickle.loads(pickle.dumps(record, pickle.HIGHEST_PROTOCOL)) == record


def test_a_field_outside_the_constructor_is_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived(PickledByPosition):
        a: int
        b: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="fields its constructor does not take"):
        pickle.dumps(Derived(1))


def test_a_one_field_record_round_trips() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class One(PickledByPosition):
        a: int

    assert One(5).__reduce__() == (One, (5,))
