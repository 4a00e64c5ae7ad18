"""Validation failures say, in one line, what a person needs to hear; the verifier's own
words stay behind ``--verbose``. Every certificate is made here, every clock is fixed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from pinlab.certs import Certificate
from pinlab.cli import app
from pinlab.collect.validation import Validator
from pinlab.explain import clean_detail
from pinlab.testbed.loopback import openssl_server
from pinlab.testbed.pki import CA, Leaf, write_pem
from pinlab.verify import TrustStore, Verification, VerificationFailure, verify_chain

NOW = datetime(2030, 6, 1, tzinfo=UTC)
HOST = "www.test"
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def root() -> CA:
    return CA.root("Explain Root")


@pytest.fixture(scope="module")
def intermediate(root: CA) -> CA:
    return root.child_ca("Explain Intermediate")


@pytest.fixture(scope="module")
def store(root: CA) -> TrustStore:
    return TrustStore.from_certificates([root.record], name="test roots")


def _verify(
    store: TrustStore, *chain: Leaf | CA | Certificate, host: str = HOST, at: datetime = NOW
) -> Verification:
    records = [c if isinstance(c, Certificate) else c.record for c in chain]
    return verify_chain(records, hostname=host, at=at, trust_store=store)


def _no_internals(verification: Verification) -> None:
    assert verification.error is not None
    assert "candidates exhausted" not in verification.error
    assert "<Certificate" not in verification.error
    assert "\n" not in verification.error
    assert verification.detail  # the verifier's own text is kept


def test_an_expired_leaf_says_when_it_expired(intermediate: CA, store: TrustStore) -> None:
    leaf = intermediate.issue_leaf(
        HOST,
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2025, 1, 2, tzinfo=UTC),
    )
    verification = _verify(store, leaf, intermediate)
    assert verification.failure is VerificationFailure.UNTRUSTED
    assert verification.error == "certificate for www.test expired on 2025-01-02"
    _no_internals(verification)
    assert "not valid at validation time" in (verification.detail or "")


def test_one_second_after_expiry_gives_the_time_too(intermediate: CA, store: TrustStore) -> None:
    end = datetime(2030, 5, 31, 12, 30, tzinfo=UTC)
    leaf = intermediate.issue_leaf(HOST, not_before=end - 90 * DAY, not_after=end)
    assert _verify(store, leaf, intermediate, at=end).ok
    late = _verify(store, leaf, intermediate, at=end + timedelta(seconds=1))
    assert late.error == "certificate for www.test expired on 2030-05-31 12:30:00 UTC"


def test_a_leaf_not_yet_valid_says_from_when(intermediate: CA, store: TrustStore) -> None:
    leaf = intermediate.issue_leaf(HOST, not_before=NOW + 5 * DAY, not_after=NOW + 90 * DAY)
    verification = _verify(store, leaf, intermediate)
    assert verification.error == "certificate for www.test is not valid before 2030-06-06"
    _no_internals(verification)


def test_a_wrong_host_names_both(intermediate: CA, store: TrustStore) -> None:
    leaf = intermediate.issue_leaf("other.test")
    verification = _verify(store, leaf, intermediate)
    assert verification.failure is VerificationFailure.HOSTNAME
    assert verification.error == "certificate is for other.test, not www.test"


def test_a_missing_intermediate_is_named(intermediate: CA, store: TrustStore) -> None:
    verification = _verify(store, intermediate.issue_leaf(HOST))
    assert verification.error == (
        "no path to a trusted root: the issuer CN=Explain Intermediate was not sent "
        "and is not in the trust store"
    )
    _no_internals(verification)


def test_a_self_signed_leaf_says_so(store: TrustStore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 90 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    verification = _verify(store, Certificate.from_cryptography(certificate))
    assert (
        verification.error == "certificate for www.test is self-signed and not in the trust store"
    )
    _no_internals(verification)


def test_an_unknown_root_not_sent_is_named_as_the_missing_issuer(store: TrustStore) -> None:
    other = CA.root("Unknown Root").child_ca("Unknown Intermediate")
    verification = _verify(store, other.issue_leaf(HOST), other)
    assert verification.error == (
        "no path to a trusted root: the issuer CN=Unknown Root was not sent "
        "and is not in the trust store"
    )
    _no_internals(verification)


def test_an_unknown_root_sent_is_named_as_untrusted(store: TrustStore) -> None:
    unknown = CA.root("Unknown Root")
    intermediate = unknown.child_ca("Unknown Intermediate")
    verification = _verify(store, intermediate.issue_leaf(HOST), intermediate, unknown)
    assert verification.error == (
        "no path to a trusted root: the chain ends at CN=Unknown Root, "
        "which is not in the trust store"
    )
    _no_internals(verification)


def test_an_expired_intermediate_is_named(root: CA, store: TrustStore) -> None:
    old = root.child_ca("Old Intermediate", not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    leaf = old.issue_leaf(HOST, not_before=NOW - 100 * DAY, not_after=NOW + 90 * DAY)
    verification = _verify(store, leaf, old)
    assert verification.error == (
        f"the intermediate CN=Old Intermediate expired on {(NOW - DAY).date().isoformat()}"
    )
    _no_internals(verification)


def test_what_names_and_dates_do_not_explain_keeps_the_verifier_text_without_reprs() -> None:
    raw = (
        "validation failed: missing required extension: leaf server certificate has no "
        "subjectAltName (encountered processing <Certificate(subject=<Name(CN=www.test)>, ...)>)"
    )
    assert clean_detail(raw) == (
        "missing required extension: leaf server certificate has no subjectAltName "
        "(certificate CN=www.test)"
    )


def test_collected_rows_carry_the_same_line(intermediate: CA, store: TrustStore) -> None:
    leaf = intermediate.issue_leaf(HOST)
    validator = Validator(store)
    status, error = validator.validate([leaf.record], HOST, NOW)
    assert (status, error) == ("untrusted", _verify(store, leaf).error)
    validator.validate([leaf.record, intermediate.record], HOST, NOW)  # cached as valid
    assert validator.validate([leaf.record, intermediate.record], "other.test", NOW) == (
        "hostname",
        "certificate is for www.test, not other.test",
    )


def test_pins_shows_the_line_and_the_detail_only_with_verbose(
    intermediate: CA, store: TrustStore, tmp_path: Path
) -> None:
    path = write_pem(tmp_path / "leaf.pem", intermediate.issue_leaf(HOST))
    trust = write_pem(tmp_path / "trust.pem", store.roots[0])
    args = ["pins", str(path), "--ca-file", str(trust), "--at", NOW.isoformat()]
    plain = CliRunner().invoke(app, args)
    verbose = CliRunner().invoke(app, [*args, "--verbose"])
    assert plain.exit_code == verbose.exit_code == 0, plain.output
    expected = "the issuer CN=Explain Intermediate was not sent and is not in the trust store"
    assert expected in " ".join(plain.output.split())
    assert "candidates exhausted" not in plain.output
    assert "detail: validation failed: candidates exhausted" in verbose.output


def test_check_against_a_server_missing_its_intermediate(
    intermediate: CA, store: TrustStore, tmp_path: Path
) -> None:
    leaf = intermediate.issue_leaf("localhost")
    trust = write_pem(tmp_path / "trust.pem", store.roots[0])
    with openssl_server(leaf.cert_pem, leaf.key_pem, chain_pem=b"") as port:
        args = ["check", f"127.0.0.1:{port}", "--sni", "localhost", "--ca-file", str(trust)]
        args += ["--at", NOW.isoformat(), "--pin", leaf.pin, "--verbose"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 4, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "chain validation failed (untrusted): no path to a trusted root: the issuer "
        "CN=Explain Intermediate was not sent and is not in the trust store"
    )
    assert lines[1].startswith("  detail: validation failed:")
