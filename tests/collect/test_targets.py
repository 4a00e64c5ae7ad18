"""Target lists: every accepted form, bad lines with their numbers, streaming."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinlab.collect import Target, count_target_lines, iter_targets, parse_target_line
from pinlab.errors import TargetError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("example.com", Target("example.com", 443, "example.com")),
        ("Example.COM.", Target("example.com", 443, "example.com")),
        ("example.com:8443", Target("example.com", 8443, "example.com")),
        ("[2001:db8::1]:8443", Target("2001:db8::1", 8443, None)),
        ("2001:db8::1", Target("2001:db8::1", 443, None)),
        ("192.0.2.7:444", Target("192.0.2.7", 444, None)),
        ("192.0.2.7,example.com", Target("example.com", 443, "example.com", "192.0.2.7")),
        ("192.0.2.7, example.com, 8443", Target("example.com", 8443, "example.com", "192.0.2.7")),
        ("2001:db8::1,example.com,8443", Target("example.com", 8443, "example.com", "2001:db8::1")),
        ("17,google.com", Target("google.com", 443, "google.com")),
        ("bücher.example", Target("xn--bcher-kva.example", 443, "xn--bcher-kva.example")),
        ("  example.com   # trailing comment", Target("example.com", 443, "example.com")),
    ],
)
def test_accepted_forms(line: str, expected: Target) -> None:
    assert parse_target_line(line) == expected


@pytest.mark.parametrize("line", ["", "   ", "# only a comment"])
def test_blank_and_comment_lines_are_skipped(line: str) -> None:
    assert parse_target_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "example.com:http",
        "example.com:70000",
        "exa mple.com",
        "-bad-.example",
        "[2001:db8::1",
        "[not-v6]:443",
        "a,b,c,d",
        "example.com,other.com",
        "192.0.2.7,example.com,port",
    ],
)
def test_bad_lines_raise(line: str) -> None:
    with pytest.raises(TargetError):
        parse_target_line(line)


def test_no_sni_and_default_port() -> None:
    assert parse_target_line("example.com", default_port=8443, sni=False) == Target(
        "example.com", 8443, None
    )
    assert parse_target_line("192.0.2.7,example.com", sni=False) == Target(
        "example.com", 443, None, "192.0.2.7"
    )


def test_stream_reports_bad_lines_with_numbers_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text(
        "# campaign\n"
        "example.com\n"
        "\n"
        "bad host\n"
        "EXAMPLE.com:443\n"  # duplicate of line 2
        "example.org:99999\n"
        "xn--bcher-kva.example\n"
        "bücher.example\n",  # duplicate of line 7 once IDNA-encoded
        encoding="utf-8",
    )
    errors: list[TargetError] = []
    targets = list(iter_targets(path, on_error=errors.append))
    assert [t.host for t in targets] == ["example.com", "xn--bcher-kva.example"]
    assert [str(e).split(":")[0] for e in errors] == [f"{path} line 4", f"{path} line 6"]
    assert count_target_lines(path) == 6


def test_strict_fails_on_first_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("example.com\nbad host\nexample.org\n", encoding="utf-8")
    with pytest.raises(TargetError, match="line 2"):
        list(iter_targets(path, strict=True))


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot read"):
        list(iter_targets(tmp_path / "missing.txt"))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"example.com\n\xff\xfe\x00garbage\n")
    errors: list[TargetError] = []
    assert len(list(iter_targets(binary, on_error=errors.append))) == 1
    assert "line 2: not UTF-8" in str(errors[0])
    with pytest.raises(TargetError, match="line 2: not UTF-8"):
        list(iter_targets(binary, strict=True))


def test_streams_without_reading_ahead(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(50_000):
            handle.write(f"h{i}.example\n")
    stream = iter_targets(path)
    assert next(stream).host == "h0.example"
    assert sum(1 for _ in stream) == 49_999
