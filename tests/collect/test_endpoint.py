"""Endpoints as typed on a command line."""

from __future__ import annotations

import pytest

from pinlab.collect.endpoint import normalise_hostname, parse_endpoint
from pinlab.errors import TargetError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", ("example.com", 443)),
        ("Example.COM.:8443", ("example.com", 8443)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::1]", ("::1", 443)),
        ("2001:db8::1", ("2001:db8::1", 443)),
        ("bücher.example", ("xn--bcher-kva.example", 443)),
    ],
)
def test_parses(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("example.com:0", "out of range"),
        ("example.com:65536", "out of range"),
        ("example.com:https", "not a number"),
        ("exa mple.com", "whitespace"),
        ("[::1:443", "expected"),
        ("[not-v6]:443", "not an IPv6"),
        ("-bad-.example", "not a valid DNS name"),
        (":443", "empty host name"),
    ],
)
def test_rejects_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_endpoint(text)


def test_normalise_keeps_ip_addresses() -> None:
    assert normalise_hostname("::0001") == "::1"


@pytest.mark.parametrize("sni", ["a..b", "x" * 64 + ".test"])
def test_unencodable_sni_is_refused_before_connecting(sni: str) -> None:
    from pinlab.collect.tls import handshake

    # Port 9 (discard) on loopback is never contacted: the name is refused first.
    with pytest.raises(ValueError, match="cannot be sent as SNI"):
        handshake("127.0.0.1", 9, sni=sni, timeout=0.5)
