"""Chain-attack scenarios of the OkHttp and TrustKit suites, through ``pinlab check``.

Each test runs a real TLS handshake against ``openssl s_server`` on 127.0.0.1 serving
certificates made in the test, then reads the exit status and output of the CLI:
0 valid and pinned (or pin set expired), 3 no pin matched, 4 validation failed,
5 no handshake, 2 usage error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from pinlab.testbed.pki import CA, KeyType

from .conftest import AT, HOSTNAME, Check, Pinlab, Pki, Run, Serve

OK, NO_MATCH, INVALID, NO_HANDSHAKE, USAGE = 0, 3, 4, 5, 2
UNRELATED_PIN = "sha256/" + base64.b64encode(hashlib.sha256(b"not a key").digest()).decode()


def assert_exit(run: Run, status: int) -> None:
    assert run.returncode == status, str(run)
    assert "Traceback" not in run.stdout + run.stderr, str(run)


# --- pins that must pass -----------------------------------------------------------------


def test_root_pinned_but_not_sent_is_found_through_the_trust_store(
    pki: Pki, genuine_port: int, check: Check
) -> None:
    run = check(genuine_port, pki.root.pin)
    assert_exit(run, OK)
    assert pki.root.pin in run.text
    assert "Genuine Root" in run.text


def test_root_not_sent_is_listed_as_added_from_the_trust_store(
    pki: Pki, genuine_port: int, pinlab: Pinlab
) -> None:
    run = pinlab(
        "pins", f"127.0.0.1:{genuine_port}", "--sni", HOSTNAME, "--at", AT,
        "--ca-file", str(pki.ca_file), "--json",
    )  # fmt: skip
    assert_exit(run, OK)
    rows = json.loads(run.stdout)
    assert [row["pin"] for row in rows] == [pki.leaf.pin, pki.intermediate.pin, pki.root.pin]
    assert [row["role"] for row in rows] == ["leaf", "intermediate", "root"]
    assert [row["source"] for row in rows] == ["presented", "presented", "trust-store"]
    assert [row["position"] for row in rows] == [0, 1, 2]
    assert rows[0]["sha256"] == pki.leaf.record.sha256


def test_intermediate_pinned_passes_on_two_fresh_connections(
    pki: Pki, genuine_port: int, check: Check
) -> None:
    for _ in range(2):
        run = check(genuine_port, pki.intermediate.pin)
        assert_exit(run, OK)
        assert pki.intermediate.pin in run.text
        assert "Genuine Intermediate" in run.text


def test_leaf_pinned_passes(pki: Pki, genuine_port: int, check: Check) -> None:
    run = check(genuine_port, UNRELATED_PIN, pki.leaf.pin)
    assert_exit(run, OK)
    assert pki.leaf.pin in run.text


def test_only_the_backup_pin_matches(pki: Pki, genuine_port: int, check: Check) -> None:
    run = check(genuine_port, UNRELATED_PIN, extra=("--backup-pin", pki.intermediate.pin))
    assert_exit(run, OK)
    assert "backup" in run.text
    assert pki.intermediate.pin in run.text


def test_no_pin_matches_lists_chain_pins_beside_configured_pins(
    pki: Pki, genuine_port: int, check: Check
) -> None:
    run = check(genuine_port, UNRELATED_PIN)
    assert_exit(run, NO_MATCH)
    for pin in (pki.leaf.pin, pki.intermediate.pin, pki.root.pin, UNRELATED_PIN):
        assert pin in run.text


# --- pin set expiry ----------------------------------------------------------------------

AT_TIME = datetime.fromisoformat(AT)


def test_expired_pin_set_is_not_enforced(genuine_port: int, check: Check) -> None:
    expiry = (AT_TIME - timedelta(seconds=1)).isoformat()
    run = check(genuine_port, UNRELATED_PIN, extra=("--pins-expire", expiry))
    assert_exit(run, OK)
    assert "not enforced" in run.text


def test_pin_set_one_second_before_expiry_is_enforced(genuine_port: int, check: Check) -> None:
    expiry = (AT_TIME + timedelta(seconds=1)).isoformat()
    run = check(genuine_port, UNRELATED_PIN, extra=("--pins-expire", expiry))
    assert_exit(run, NO_MATCH)
    assert "not enforced" not in run.text


def test_expired_pin_set_does_not_excuse_an_invalid_chain(
    pki: Pki, serve: Serve, check: Check
) -> None:
    stranger = pki.untrusted_root.issue_leaf(HOSTNAME)
    with serve(stranger) as port:
        run = check(port, stranger.pin, extra=("--pins-expire", "2021-01-01T00:00:00Z"))
    assert_exit(run, INVALID)


# --- chain attacks -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rogue_leaf_with_genuine_appended(pki: Pki, serve: Serve) -> Iterator[int]:
    """CVE-2016-2402: a leaf from another trusted CA, the pinned intermediate appended."""
    rogue = pki.other_root.issue_leaf(HOSTNAME)
    with serve(rogue, pki.intermediate, pki.root) as port:
        yield port


def test_rogue_leaf_with_pinned_certificate_appended_fails_in_verified_mode(
    pki: Pki, rogue_leaf_with_genuine_appended: int, check: Check
) -> None:
    run = check(rogue_leaf_with_genuine_appended, pki.intermediate.pin)
    assert_exit(run, NO_MATCH)
    run = check(
        rogue_leaf_with_genuine_appended, pki.intermediate.pin, extra=("--mode", "verified")
    )
    assert_exit(run, NO_MATCH)
    assert pki.other_root.pin in run.text  # the verified chain's pins are listed


def test_rogue_leaf_with_pinned_certificate_appended_passes_in_presented_mode(
    pki: Pki, rogue_leaf_with_genuine_appended: int, check: Check
) -> None:
    """The research mode reproduces the OkHttp bug, which is why it is never the default."""
    run = check(
        rogue_leaf_with_genuine_appended, pki.intermediate.pin, extra=("--mode", "presented")
    )
    assert_exit(run, OK)
    assert pki.intermediate.pin in run.text


def test_rogue_intermediate_with_pinned_subject_name_from_trusted_ca_fails(
    pki: Pki, serve: Serve, check: Check
) -> None:
    """Pins are keys, not names: a same-named intermediate of another CA does not match."""
    rogue = pki.other_root.child_ca(pki.intermediate.certificate.subject, path_length=0)
    assert rogue.certificate.subject == pki.intermediate.certificate.subject
    leaf = rogue.issue_leaf(HOSTNAME)
    with serve(leaf, rogue) as port:
        for mode in ("verified", "presented"):
            run = check(port, pki.intermediate.pin, extra=("--mode", mode))
            assert_exit(run, NO_MATCH)


def test_rogue_intermediate_forging_the_pinned_name_and_issuer_fails(
    pki: Pki, serve: Serve, check: Check
) -> None:
    """Same subject and issuer names as the genuine intermediate, signed by a key the
    genuine root does not hold, and sent with the genuine intermediate appended."""
    impostor_root = CA(pki.untrusted_root.certificate, pki.untrusted_root.private_key)
    forged_certificate = impostor_root.issue(
        pki.intermediate.certificate.subject,
        (key := KeyType.P256.generate()).public_key(),
        is_ca=True,
        path_length=0,
    )
    forged = CA(forged_certificate, key, impostor_root)
    leaf = forged.issue_leaf(HOSTNAME)
    with serve(leaf, forged, pki.intermediate) as port:
        run = check(port, pki.intermediate.pin, pki.root.pin)
    assert_exit(run, INVALID)


def test_non_ca_certificate_used_as_signer_fails(pki: Pki, serve: Serve, check: Check) -> None:
    forged = pki.leaf.as_signer().issue_leaf(HOSTNAME)
    with serve(forged, pki.leaf, pki.intermediate) as port:
        run = check(port, pki.intermediate.pin, pki.leaf.pin)
    assert_exit(run, INVALID)


def test_pinned_path_violating_path_length_fails(pki: Pki, serve: Serve, check: Check) -> None:
    assert pki.intermediate.path_length == 0
    key = KeyType.P256.generate()
    sub = CA(
        pki.intermediate.issue("Sub-CA beyond pathLen 0", key.public_key(), is_ca=True),
        key,
        pki.intermediate,
    )
    leaf = sub.issue_leaf(HOSTNAME)
    with serve(leaf, sub, pki.intermediate) as port:
        run = check(port, pki.intermediate.pin)
    assert_exit(run, INVALID)


def test_untrusted_chain_whose_pin_matches_fails(pki: Pki, serve: Serve, check: Check) -> None:
    intermediate = pki.untrusted_root.child_ca("Untrusted Intermediate")
    leaf = intermediate.issue_leaf(HOSTNAME)
    with serve(leaf, intermediate, pki.untrusted_root) as port:
        run = check(port, leaf.pin, intermediate.pin, pki.untrusted_root.pin)
    assert_exit(run, INVALID)


def test_hostname_mismatch_whose_pin_matches_fails(
    pki: Pki, genuine_port: int, pinlab: Pinlab
) -> None:
    run = pinlab(
        "check", f"127.0.0.1:{genuine_port}", "--sni", "www.example.org", "--at", AT,
        "--ca-file", str(pki.ca_file), "--pin", pki.intermediate.pin, "--pin", pki.leaf.pin,
    )  # fmt: skip
    assert_exit(run, INVALID)
    assert "www.example.org" in run.text


def test_expired_leaf_fails_one_second_after_not_after(
    pki: Pki, serve: Serve, check: Check
) -> None:
    not_after = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
    leaf = pki.intermediate.issue_leaf(HOSTNAME, not_after=not_after)
    with serve(leaf, pki.intermediate) as port:
        before = check(port, pki.intermediate.pin, at=(not_after - timedelta(seconds=1)))
        after = check(port, pki.intermediate.pin, at=(not_after + timedelta(seconds=1)))
    assert_exit(before, OK)
    assert_exit(after, INVALID)


# --- usage errors and unreachable servers ------------------------------------------------

_GOOD = base64.b64encode(hashlib.sha256(b"x").digest()).decode()


@pytest.mark.parametrize(
    "pin",
    [
        pytest.param("sha256/" + _GOOD[:-8] + "====", id="wrong-length"),
        pytest.param("sha256/" + "A" * 58 + "=", id="long-and-unpadded"),
        pytest.param("sha256/" + base64.b64encode(b"\0" * 20).decode(), id="sha1-length"),
        pytest.param("sha256/" + _GOOD[:-2] + "!=", id="bad-alphabet"),
        pytest.param("sha256/" + _GOOD.replace("=", "").ljust(44, "_"), id="urlsafe-alphabet"),
        pytest.param(_GOOD, id="missing-prefix"),
        pytest.param("md5/" + _GOOD, id="unknown-algorithm"),
        pytest.param("sha512/" + _GOOD, id="sha512-algorithm"),
        pytest.param("", id="empty"),
        pytest.param("ab" * 31, id="short-hex"),
    ],
)
def test_malformed_pin_is_a_usage_error(
    pin: str, pki: Pki, genuine_port: int, pinlab_in_process: Pinlab
) -> None:
    run = pinlab_in_process(
        "check", f"127.0.0.1:{genuine_port}", "--sni", HOSTNAME, "--at", AT,
        "--ca-file", str(pki.ca_file), "--pin", pin,
    )  # fmt: skip
    assert_exit(run, USAGE)
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, str(run)
    assert "pin" in run.stderr


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("127.0.0.1:70000", id="port-too-large"),
        pytest.param("127.0.0.1:0", id="port-zero"),
        pytest.param("127.0.0.1:-1", id="port-negative"),
        pytest.param("127.0.0.1:https", id="port-not-a-number"),
        pytest.param("bad host:443", id="hostname-with-space"),
        pytest.param("bad\thost", id="hostname-with-tab"),
    ],
)
def test_bad_target_is_a_usage_error(target: str, pki: Pki, pinlab_in_process: Pinlab) -> None:
    run = pinlab_in_process("check", target, "--pin", pki.root.pin, "--at", AT)
    assert_exit(run, USAGE)
    assert len(run.stderr.strip().splitlines()) == 1, str(run)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("127.0.0.1:443", "--pin", "sha256/short="), id="malformed-pin"),
        pytest.param(("127.0.0.1:99999", "--pin", UNRELATED_PIN), id="port-out-of-range"),
        pytest.param(("bad host:443", "--pin", UNRELATED_PIN), id="hostname-with-space"),
    ],
)
def test_usage_errors_through_the_real_script(args: tuple[str, ...], pinlab: Pinlab) -> None:
    """The same, through the console script: exit status 2, one line, no traceback."""
    run = pinlab("check", *args)
    assert_exit(run, USAGE)
    assert len(run.stderr.strip().splitlines()) == 1, str(run)


def test_sni_with_space_is_a_usage_error(pki: Pki, genuine_port: int, pinlab: Pinlab) -> None:
    run = pinlab(
        "check", f"127.0.0.1:{genuine_port}", "--sni", "local host", "--pin", pki.root.pin,
    )  # fmt: skip
    assert_exit(run, USAGE)


def test_nothing_listening_is_exit_5(pki: Pki, check: Check) -> None:
    with socket.socket() as held:
        # Bound but not listening: connections are refused, and no one else can take it.
        held.bind(("127.0.0.1", 0))
        run = check(held.getsockname()[1], pki.root.pin)
    assert_exit(run, NO_HANDSHAKE)
