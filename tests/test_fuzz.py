"""Fuzzing the parsers of untrusted input: a clean PinlabError or a result, nothing else.

Target lines, PEM/DER/PKCS#7 and public-key bytes, host names, dates, numbers and the text
shown on a terminal. Each test is kept small (a few hundred examples) to run in
``make test``.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinlab.certs import load_certificates
from pinlab.collect.endpoint import normalise_hostname
from pinlab.collect.targets import parse_target_line
from pinlab.commands._options import (
    EARLIEST,
    LATEST,
    parse_time,
    valid_rate,
    valid_seconds,
)
from pinlab.commands._output import shown
from pinlab.errors import PinlabError
from pinlab.keys import load_public_key
from pinlab.pem import iter_pem
from pinlab.testbed.pki import CA

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ROOT = CA.root("fuzz root")
_PEM = _ROOT.cert_pem
_DER = _ROOT.der

pem_pieces = st.sampled_from(
    [b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n", b"-----BEGIN PKCS7-----\n",
     b"-----END PKCS7-----\n", b"-----BEGIN PUBLIC KEY-----\n", b"-----END PUBLIC KEY-----\n",
     b"MIIB\n", b"\r\n", b"-----", _PEM, _PEM[:100], _PEM[50:]]
)  # fmt: skip


@FAST
@given(st.text(max_size=300))
def test_target_lines_parse_or_fail_cleanly(line: str) -> None:
    try:
        target = parse_target_line(line)
    except PinlabError:
        return
    if target is not None:
        assert 1 <= target.port <= 65535
        assert target.host == target.host.strip()


@FAST
@given(st.text(max_size=300))
def test_host_names_parse_or_fail_cleanly(name: str) -> None:
    try:
        host = normalise_hostname(name)
    except PinlabError:
        return
    assert host.isascii()
    assert len(host) <= 253 or ":" in host


@FAST
@given(st.lists(pem_pieces, max_size=12).map(b"".join) | st.binary(max_size=600))
def test_certificate_bytes_load_or_fail_cleanly(data: bytes) -> None:
    for lazy in (False, True):
        try:
            certificates = load_certificates(data, source="fuzz", lazy=lazy)
        except PinlabError:
            continue
        assert certificates
        assert all(c.pin.startswith("sha256/") for c in certificates)


@FAST
@given(st.integers(0, len(_DER) - 1), st.integers(0, 255), st.integers(1, len(_DER)))
def test_mutated_der_loads_or_fails_cleanly(offset: int, value: int, cut: int) -> None:
    mutated = bytearray(_DER)
    mutated[offset] = value
    for data in (bytes(mutated), _DER[:cut]):
        with contextlib.suppress(PinlabError):
            load_certificates(data, source="fuzz", lazy=True)


@FAST
@given(st.lists(pem_pieces, max_size=12).map(b"".join) | st.binary(max_size=300))
def test_public_key_bytes_load_or_fail_cleanly(data: bytes) -> None:
    try:
        key = load_public_key(data, source="fuzz")
    except PinlabError:
        return
    assert key.pin.startswith("sha256/")


@FAST
@given(st.lists(pem_pieces, max_size=20).map(b"".join))
def test_pem_blocks_are_in_order_and_end_at_the_first_cut(data: bytes) -> None:
    blocks = list(iter_pem(data))
    assert [b.number for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(b.complete for b in blocks[:-1])
    for block in blocks:
        assert block.text in data


@FAST
@given(st.text(max_size=40) | st.datetimes().map(lambda d: d.isoformat()))
def test_dates_parse_inside_the_certificate_range_or_fail_cleanly(text: str) -> None:
    try:
        when = parse_time(text)
    except PinlabError:
        return
    assert EARLIEST <= when <= LATEST


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_numbers_are_accepted_only_when_positive_and_finite(value: float) -> None:
    for check in (valid_seconds, valid_rate):
        try:
            accepted = check(value)
        except typer.BadParameter:
            continue
        assert accepted is not None
        assert math.isfinite(accepted)
        assert accepted > 0


@FAST
@given(st.text(max_size=200))
def test_shown_text_holds_no_control_or_bidi_character(text: str) -> None:
    safe = shown(text)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in safe)
    assert not any(0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 for ch in safe)


@pytest.mark.parametrize("text", ["\x1b[2J", "\u202eevil", "a\rb", "[/x]"])
def test_shown_examples(text: str) -> None:
    assert shown(text) in {"\\x1b[2J", "\\u202eevil", "a\\x0db", "[/x]"}
