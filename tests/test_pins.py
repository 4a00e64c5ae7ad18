"""Pin semantics, read as a specification (after OkHttp's CertificatePinnerTest)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pinlab.certs import Certificate
from pinlab.cli import app
from pinlab.errors import MalformedKeyError, MalformedPinError
from pinlab.keys import load_public_key_file
from pinlab.pins import CheckStatus, Pin, PinSet, Semantics
from pinlab.testbed.pki import CA, KeyType, pooled_key

NOW = datetime(2030, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def chain() -> tuple[Certificate, Certificate, Certificate]:
    """leaf, intermediate, root (keys made once for the module)."""
    root = CA.root("Spec Root")
    intermediate = root.child_ca("Spec Intermediate")
    leaf = intermediate.issue_leaf("example.com")
    return leaf.record, intermediate.record, root.record


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- what a pin is ------------------------------------------------------------------------


def test_same_keypair_same_pin() -> None:
    key = KeyType.P256.generate()
    first = CA.root("First", key=key)
    second = CA.root("Second, another certificate", key=key)
    assert first.record.sha256 != second.record.sha256
    assert Pin.of(first.record) == Pin.of(second.record)
    assert first.pin == second.pin


def test_different_keypair_different_pin() -> None:
    assert CA.root("A").pin != CA.root("B").pin


def test_pin_is_sha256_of_the_encoded_spki(chain: tuple[Certificate, ...]) -> None:
    leaf = chain[0]
    assert str(Pin.of(leaf)) == "sha256/" + b64(hashlib.sha256(leaf.spki).digest())
    assert Pin.of_spki(leaf.spki) == Pin.of(leaf)


@given(st.binary(min_size=32, max_size=32))
def test_str_round_trips(digest: bytes) -> None:
    pin = Pin("sha256", digest)
    assert Pin.parse(str(pin)) == pin
    assert str(Pin.parse(str(pin))) == str(pin)


@given(st.binary(min_size=32, max_size=32), st.booleans(), st.booleans())
def test_hex_digest_is_normalised_with_or_without_colons(
    digest: bytes, colons: bool, upper: bool
) -> None:
    text = digest.hex(":") if colons else digest.hex()
    pin = Pin.parse(text.upper() if upper else text)
    assert pin == Pin("sha256", digest)
    assert str(pin) == "sha256/" + b64(digest)


def test_sha1_pin_is_read_and_flagged_legacy(chain: tuple[Certificate, ...]) -> None:
    leaf = chain[0]
    pin = Pin.parse("sha1/" + b64(hashlib.sha1(leaf.spki).digest()))
    assert pin.legacy
    assert not Pin.of(leaf).legacy
    assert pin.matches(leaf)
    pin_set = PinSet.of([pin])
    assert pin_set.has_legacy_pins
    assert pin_set.check(chain).status is CheckStatus.MATCHED


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("sha256/" + b64(b"\0" * 31), id="wrong-length"),
        pytest.param("sha256/" + b64(b"\0" * 33), id="too-long"),
        pytest.param("sha256/" + b64(b"\0" * 32)[:-1], id="unpadded"),
        pytest.param("sha256/" + b64(b"\0" * 32).replace("A", "-", 1), id="bad-alphabet"),
        pytest.param(b64(b"\0" * 32), id="missing-prefix"),
        pytest.param("md5/" + b64(b"\0" * 16), id="unknown-algorithm"),
        pytest.param("sha256/", id="empty-digest"),
        pytest.param("", id="empty"),
        pytest.param("ab" * 31, id="short-hex"),
        pytest.param("zz" * 32, id="non-hex-64"),
    ],
)
def test_malformed_pin(text: str) -> None:
    with pytest.raises(MalformedPinError):
        Pin.parse(text)


def test_malformed_pin_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="sha256"):
        Pin.parse("sha256/abc")


# --- what a pin set accepts ---------------------------------------------------------------


def test_any_pin_matching_any_certificate_passes(chain: tuple[Certificate, ...]) -> None:
    for position, certificate in enumerate(chain):
        result = PinSet.of([Pin.of(certificate)]).check(chain)
        assert result.status is CheckStatus.MATCHED
        assert result.matched_index == position
        assert result.matched_certificate == certificate


def test_first_match_wins_leaf_first(chain: tuple[Certificate, ...]) -> None:
    _, intermediate, root = chain
    result = PinSet.of([Pin.of(root), Pin.of(intermediate)]).check(chain)
    assert result.matched_index == 1
    assert result.matched_pin == Pin.of(intermediate)


def test_backup_pin_match_is_reported_as_backup(chain: tuple[Certificate, ...]) -> None:
    unrelated = Pin("sha256", hashlib.sha256(b"other").digest())
    result = PinSet.of([unrelated], backup=[Pin.of(chain[2])]).check(chain)
    assert result.passed
    assert result.backup
    assert "backup" in result.describe()


def test_failure_lists_chain_pins_beside_configured_pins(
    chain: tuple[Certificate, ...],
) -> None:
    unrelated = Pin("sha256", hashlib.sha256(b"other").digest())
    result = PinSet.of([unrelated]).check(chain, semantics=Semantics.VERIFIED)
    assert result.status is CheckStatus.NO_MATCH
    assert not result.passed
    assert result.chain_pins == tuple(c.pin for c in chain)
    message = result.describe()
    assert message.index(chain[0].pin) < message.index(str(unrelated))
    for certificate in chain:
        assert certificate.pin in message


def test_semantics_are_named_in_the_result(chain: tuple[Certificate, ...]) -> None:
    result = PinSet.of([Pin.of(chain[0])]).check(chain, semantics=Semantics.PRESENTED)
    assert result.semantics is Semantics.PRESENTED
    assert "presented" in result.describe()


def test_empty_pin_set_is_refused() -> None:
    with pytest.raises(MalformedPinError):
        PinSet.of([])


# --- expiry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "status"),
    [(-1, CheckStatus.NO_MATCH), (0, CheckStatus.EXPIRED), (1, CheckStatus.EXPIRED)],
)
def test_expiry_one_second_before_and_after(
    offset: int, status: CheckStatus, chain: tuple[Certificate, ...]
) -> None:
    unrelated = Pin("sha256", hashlib.sha256(b"other").digest())
    pin_set = PinSet.of([unrelated], expires_at=NOW)
    result = pin_set.check(chain, at=NOW + timedelta(seconds=offset))
    assert result.status is status
    assert result.passed is (status is CheckStatus.EXPIRED)


def test_naive_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        PinSet.of([Pin("sha256", b"\0" * 32)], expires_at=datetime(2030, 1, 1))  # noqa: DTZ001


# --- host patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "applies"),
    [
        ("example.com", "example.com", True),
        ("example.com", "EXAMPLE.com.", True),
        ("example.com", "www.example.com", False),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "wwwexample.com", False),
        ("**.example.com", "example.com", True),
        ("**.example.com", "www.example.com", True),
        ("**.example.com", "a.b.example.com", True),
        ("**.example.com", "badexample.com", False),
    ],
)
def test_host_patterns(pattern: str, host: str, applies: bool) -> None:
    pin_set = PinSet.of([Pin("sha256", b"\0" * 32)], hosts=[pattern])
    assert pin_set.applies_to(host) is applies


def test_no_host_pattern_applies_everywhere() -> None:
    assert PinSet.of([Pin("sha256", b"\0" * 32)]).applies_to("anything.example")


# -- pins of bare public keys (a backup key before it has a certificate) -------------------


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.P256])
@pytest.mark.parametrize("encoding", ["pem", "der"])
def test_a_bare_public_key_pins_like_a_certificate_for_it(
    key_type: KeyType, encoding: str, tmp_path: Path
) -> None:
    leaf = CA.root("Key Root").issue_leaf("key.example", key=pooled_key(key_type, 7))
    public = leaf.private_key.public_key()
    if encoding == "pem":
        data = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    else:
        data = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / f"backup.{encoding}"
    path.write_bytes(data)
    assert load_public_key_file(path).pin == leaf.record.pin
    runner = CliRunner()
    result = runner.invoke(app, ["pins", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["pin"] == leaf.record.pin
    assert row["key"] == ("P-256" if key_type is KeyType.P256 else "RSA-2048")
    text = runner.invoke(app, ["pins", str(path)])
    assert text.exit_code == 0
    assert leaf.record.pin in text.stdout


def test_a_der_key_is_hashed_exactly_as_the_file_encodes_it(tmp_path: Path) -> None:
    der = (
        pooled_key(KeyType.P256, 8)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    expected = "sha256/" + b64(hashlib.sha256(der).digest())
    path = tmp_path / "key.der"
    path.write_bytes(der)
    assert load_public_key_file(path).pin == expected


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cut.pem", b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
         b"-----END PUBLIC KEY-----\n"),
        ("junk.der", b"\x30\x03\x02\x01\x00"),
    ],
)  # fmt: skip
def test_a_malformed_key_file_is_one_line_and_exit_2(
    name: str, data: bytes, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MalformedKeyError):
        load_public_key_file(path)
    result = CliRunner().invoke(app, ["pins", str(path)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"pinlab: error: {path}: ")
