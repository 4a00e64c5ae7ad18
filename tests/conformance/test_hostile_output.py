"""A hostile server cannot take over the screen: markup and escapes in every printed field.

Certificates made here carry rich markup (``[/x]``, a forged ``[bold red]pin matched[/]``),
ANSI escapes (clear screen, set window title) and carriage returns in the subject CN and O,
the issuer and a SAN. ``pinlab pins`` and ``pinlab check`` (the real script) read them from a
file and from ``openssl s_server`` on 127.0.0.1: no crash, no raw control byte on the
terminal, the markup printed as the text it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pinlab.testbed.loopback import openssl_server
from pinlab.testbed.pki import CA, KeyType, Leaf, pooled_key, write_pem

from .conftest import AT, HOSTNAME, Run, run_pinlab

MARKUP = "[/x]"
FORGED = "[bold red]pin matched[/]"
CLEAR = "\x1b[2J"
TITLE = "\x1b]0;title\x07"
HOSTILE = f"{MARKUP} {FORGED} {CLEAR} {TITLE} a\rb"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Org {MARKUP}{CLEAR}\r"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False),
        ]
    )


@dataclass(frozen=True)
class Hostile:
    root: CA
    intermediate: CA
    leaf: Leaf
    ca_file: Path
    chain_file: Path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    root = CA.root(_name(f"root {HOSTILE}"))
    intermediate = root.child_ca(_name(f"issuer {HOSTILE}"))
    key = pooled_key(KeyType.P256, 7)
    certificate = intermediate.issue(
        _name(f"leaf {HOSTILE}"),
        key.public_key(),  # type: ignore[arg-type]
        is_ca=False,
        hostnames=(HOSTNAME, f"x{MARKUP}{CLEAR}.test"),
    )
    leaf = Leaf(certificate, key, intermediate)
    folder = tmp_path_factory.mktemp("hostile")
    return Hostile(
        root,
        intermediate,
        leaf,
        write_pem(folder / "trust.pem", root),
        write_pem(folder / "chain.pem", leaf, intermediate),
    )


@pytest.fixture(scope="module")
def port(hostile: Hostile) -> Iterator[int]:
    with openssl_server(
        hostile.leaf.cert_pem, hostile.leaf.key_pem, chain_pem=hostile.intermediate.cert_pem
    ) as port:
        yield port


def assert_safe(run: Run, status: int) -> str:
    """The run ended as expected, with no traceback and no control byte on the terminal."""
    output = run.stdout + run.stderr
    assert run.returncode == status, str(run)
    assert "Traceback" not in output, str(run)
    for byte in ("\x1b", "\r", "\x07", "\x08"):
        assert byte not in output, (byte, str(run))
    assert not any(line.startswith("pin matched") for line in output.splitlines()), str(run)
    return output


def test_pins_of_a_file_show_markup_as_text(hostile: Hostile) -> None:
    run = run_pinlab("pins", str(hostile.chain_file), "--at", AT, "--ca-file", str(hostile.ca_file))
    output = assert_safe(run, 0)
    # RFC 4514 escapes the ';' of the title sequence; the escapes around it are pinlab's.
    for text in (MARKUP, FORGED, "\\x1b[2J", "\\x1b]0\\;title\\x07", "a\\x0db"):
        assert text in output
    assert hostile.leaf.pin in output
    assert hostile.intermediate.pin in output


def test_pins_of_a_served_chain_show_markup_as_text(hostile: Hostile, port: int) -> None:
    run = run_pinlab(
        "pins", f"127.0.0.1:{port}", "--sni", HOSTNAME, "--at", AT,
        "--ca-file", str(hostile.ca_file),
    )  # fmt: skip
    output = assert_safe(run, 0)
    assert FORGED in output
    assert "\\x1b[2J" in output
    assert hostile.root.pin in output


def test_pins_without_a_verified_path_print_the_error_safely(hostile: Hostile, port: int) -> None:
    # No --ca-file: certifi does not know the hostile root, the error names the chain.
    run = run_pinlab("pins", f"127.0.0.1:{port}", "--sni", HOSTNAME, "--at", AT)
    output = assert_safe(run, 0)
    assert "no verified path" in output
    assert FORGED in output


def test_check_that_matches_prints_the_hostile_subject_as_text(hostile: Hostile, port: int) -> None:
    run = run_pinlab(
        "check", f"127.0.0.1:{port}", "--sni", HOSTNAME, "--at", AT,
        "--ca-file", str(hostile.ca_file), "--pin", hostile.intermediate.pin,
    )  # fmt: skip
    output = assert_safe(run, 0)
    assert f"matched certificate 1 (CN=issuer {MARKUP} {FORGED}" in output


def test_check_that_fails_cannot_be_dressed_as_a_match(hostile: Hostile, port: int) -> None:
    run = run_pinlab(
        "check", f"127.0.0.1:{port}", "--sni", "other.test", "--at", AT,
        "--ca-file", str(hostile.ca_file), "--pin", hostile.intermediate.pin,
    )  # fmt: skip
    output = assert_safe(run, 4)
    assert "chain validation failed" in output


def test_check_of_a_file_target_name_is_shown_not_obeyed(hostile: Hostile) -> None:
    run = run_pinlab("pins", f"{MARKUP}{CLEAR}.pem", "--at", AT)
    output = assert_safe(run, 2)
    assert output.startswith("pinlab: error: ")
    assert "\\x1b[2J" in output


def _timed(*args: str) -> tuple[Run, float]:
    started = time.perf_counter()
    run = run_pinlab(*args)
    return run, time.perf_counter() - started


@pytest.mark.filterwarnings("ignore:Attribute's length must be")
def test_a_65000_character_common_name_costs_what_a_short_one_does(
    tmp_path: Path, hostile: Hostile
) -> None:
    # rich's highlighter is quadratic: such a name once took `pins` 28 s to print.
    key = pooled_key(KeyType.P256, 8)
    long_name = "[" + "x" * 65_000 + "("
    files = {}
    for label, common_name in (("short", "short.test"), ("long", long_name)):
        public_key = key.public_key()
        certificate = hostile.intermediate.issue(
            _name(common_name), public_key, is_ca=False, hostnames=("other.test",)
        )
        files[label] = write_pem(tmp_path / f"{label}.pem", certificate, hostile.intermediate)
    short_run, short_time = _timed("pins", str(files["short"]), "--at", AT)
    long_run, long_time = _timed("pins", str(files["long"]), "--at", AT)
    assert_safe(short_run, 0)
    assert long_name in assert_safe(long_run, 0)
    assert long_time < 10 * short_time, (long_time, short_time)


def test_say_is_linear_in_the_length_of_the_text() -> None:
    from pinlab.commands._output import console, say

    def cost(text: str) -> float:
        with console.capture():
            started = time.perf_counter()
            for _ in range(5):
                say(text)
            return time.perf_counter() - started

    short, long = cost("CN=" + "x(" * 500), cost("CN=" + "x(" * 32_500)
    assert long < 10 * 65 * short, (long, short)
