"""Host names as browsers map them (IDNA 2008, UTS 46); numbers are never IPv4 shorthand."""

from __future__ import annotations

import pytest

from pinlab.collect.endpoint import normalise_hostname, parse_endpoint
from pinlab.collect.targets import parse_target_line
from pinlab.errors import TargetError
from tests.conformance.conftest import invoke_pinlab


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("faß.test", "xn--fa-hia.test"),  # IDNA 2003 made it fass.test
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("_acme-challenge.Example.COM", "_acme-challenge.example.com"),
        ("example.com.", "example.com"),
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),  # full-width digits
        ("127.0.0.1", "127.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("a.b.1a", "a.b.1a"),
        ("1a.example", "1a.example"),
    ],
)
def test_names_are_mapped_as_browsers_map_them(typed: str, sent: str) -> None:
    assert normalise_hostname(typed) == sent


@pytest.mark.parametrize(
    "name", ["2130706433", "0x7f.1", "0x7f000001", "127.1", "127.0.0.01", "a.0x", "example.123"]
)
def test_a_name_ending_in_a_number_is_refused_not_read_as_an_address(name: str) -> None:
    with pytest.raises(TargetError, match="ends in a number"):
        normalise_hostname(name)
    with pytest.raises(TargetError):
        parse_target_line(f"{name}:443")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 300, "at most 253"),
        ("a" * 64 + ".test", "1 to 63"),
        (".".join(["a" * 60] * 5), "at most 253"),
        ("exa mple.test", "whitespace"),
        ("a..b", "valid DNS name"),
        ("xn--zz.test", "IDNA"),
    ],
)
def test_bad_names_say_what_is_wrong(name: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_endpoint(name)


def test_a_host_argument_too_long_for_a_file_name_is_a_clear_error() -> None:
    # Tried as a file first, 300 characters once ended in "OSError: File name too long".
    for target in ("a" * 300, "a" * 300 + ":443", "b" * 5000):
        run = invoke_pinlab("pins", target, "--timeout", "1")
        assert run.returncode == 2, str(run)
        assert "Traceback" not in run.stderr, str(run)
        assert "at most 253" in run.stderr, str(run)
    run = invoke_pinlab("pins", "2130706433", "--timeout", "1")
    assert run.returncode == 2, str(run)
    assert "ends in a number" in run.stderr
