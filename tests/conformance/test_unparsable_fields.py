"""A certificate cryptography parses only in part (a SAN dNSName with bytes 0xff and 0x00).

Real servers send such certificates. The pin needs only the SPKI, which pinlab slices from
the DER itself, so ``pins`` lists the chain with the field that failed; ``check`` refuses
the chain as one that does not validate (exit 4), never as a usage error (exit 2).
"""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from pinlab.certs import Certificate, load_certificates
from pinlab.errors import MalformedCertificateError
from pinlab.testbed.loopback import openssl_server
from pinlab.testbed.pki import CA, KeyType, Leaf, pooled_key, write_pem

from .conftest import AT, HOSTNAME, Run, run_pinlab


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128  # short-form length is all these tests need
    return bytes([tag, len(body)]) + body


def _bad_san_leaf(issuer: CA) -> Leaf:
    # cryptography refuses to build a DNSName with these bytes, so the extension is
    # written as raw DER: GeneralNames { dNSName "localhost", dNSName "bad\xff\x00.test" }.
    names = _tlv(0x82, HOSTNAME.encode()) + _tlv(0x82, b"bad\xff\x00.test")
    san = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, _tlv(0x30, names))
    key = pooled_key(KeyType.P256, 11)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issuer.certificate.not_valid_before_utc)
        .not_valid_after(issuer.certificate.not_valid_after_utc)
        .add_extension(san, critical=False)
        .sign(issuer.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return Leaf(certificate, key, issuer)


@dataclass(frozen=True)
class BadSan:
    root: CA
    intermediate: CA
    leaf: Leaf
    ca_file: Path
    chain_file: Path


@pytest.fixture(scope="module")
def bad_san(tmp_path_factory: pytest.TempPathFactory) -> BadSan:
    root = CA.root("Bad SAN Root")
    intermediate = root.child_ca("Bad SAN Intermediate")
    leaf = _bad_san_leaf(intermediate)
    folder = tmp_path_factory.mktemp("badsan")
    return BadSan(
        root, intermediate, leaf,
        write_pem(folder / "trust.pem", root),
        write_pem(folder / "chain.pem", leaf, intermediate),
    )  # fmt: skip


@pytest.fixture(scope="module")
def port(bad_san: BadSan) -> Iterator[int]:
    with openssl_server(
        bad_san.leaf.cert_pem, bad_san.leaf.key_pem, chain_pem=bad_san.intermediate.cert_pem
    ) as port:
        yield port


def _clean(run: Run, status: int) -> str:
    assert run.returncode == status, str(run)
    assert "Traceback" not in run.stdout + run.stderr, str(run)
    return run.text


def test_the_certificate_is_really_unparsable_by_cryptography(bad_san: BadSan) -> None:
    with pytest.raises(MalformedCertificateError):
        Certificate.from_der(bad_san.leaf.der)
    record = Certificate.from_der(bad_san.leaf.der, lazy=True)
    spki = bad_san.leaf.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert record.pin == "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert [f.split(":")[0] for f in record.unparsed_fields] == ["subjectAltName"]


def test_lazy_loading_keeps_the_chain_and_its_pins(bad_san: BadSan) -> None:
    chain = load_certificates(bad_san.chain_file.read_bytes(), lazy=True)
    assert [c.pin for c in chain][1] == bad_san.intermediate.pin
    assert chain[1].unparsed_fields == ()


def test_pins_of_the_file_list_every_pin_and_the_failed_field(bad_san: BadSan) -> None:
    run = run_pinlab("pins", str(bad_san.chain_file), "--at", AT, "--ca-file", str(bad_san.ca_file))
    text = _clean(run, 0)
    leaf_pin = load_certificates(bad_san.leaf.cert_pem, lazy=True)[0].pin
    assert leaf_pin in text
    assert bad_san.intermediate.pin in text
    assert "subjectAltName: could not be parsed" in text


def test_pins_json_says_what_did_not_parse(bad_san: BadSan) -> None:
    run = run_pinlab("pins", str(bad_san.chain_file), "--json", "--at", AT)
    _clean(run, 0)
    rows = json.loads(run.stdout)
    assert rows[0]["subject"] == f"CN={HOSTNAME}"
    assert rows[0]["unparsed"][0].startswith("subjectAltName: could not be parsed")
    assert rows[1]["unparsed"] == []


def test_pins_of_the_served_chain_still_pin_it(bad_san: BadSan, port: int) -> None:
    run = run_pinlab(
        "pins", f"127.0.0.1:{port}", "--sni", HOSTNAME, "--at", AT,
        "--ca-file", str(bad_san.ca_file),
    )  # fmt: skip
    text = _clean(run, 0)
    assert bad_san.intermediate.pin in text
    assert "subjectAltName: could not be parsed" in text
    assert "no verified path" in text


def test_check_of_the_served_chain_is_a_validation_failure(bad_san: BadSan, port: int) -> None:
    run = run_pinlab(
        "check", f"127.0.0.1:{port}", "--sni", HOSTNAME, "--at", AT,
        "--ca-file", str(bad_san.ca_file), "--pin", bad_san.intermediate.pin,
    )  # fmt: skip
    text = _clean(run, 4)
    assert "chain validation failed" in text
    assert "certificate 0: subjectAltName: could not be parsed" in text


def test_a_served_certificate_that_does_not_parse_at_all_exits_4(tmp_path: Path) -> None:
    root = CA.root("Broken Root")
    leaf = root.issue_leaf(HOSTNAME)
    # A certificate whose version is 7: OpenSSL serves the bytes, nobody can read them.
    der = bytearray(leaf.der)
    version = der.find(bytes([0xA0, 0x03, 0x02, 0x01, 0x02]))
    assert version > 0
    der[version + 4] = 7
    broken = Leaf(x509.load_der_x509_certificate(leaf.der), leaf.private_key, root)
    pem = b"-----BEGIN CERTIFICATE-----\n" + _b64(bytes(der)) + b"-----END CERTIFICATE-----\n"
    with openssl_server(pem, broken.key_pem) as port:
        run = run_pinlab("check", f"127.0.0.1:{port}", "--sni", HOSTNAME, "--at", AT,
                         "--pin", root.pin)  # fmt: skip
    text = _clean(run, 4)
    assert "does not parse" in text


def _b64(data: bytes) -> bytes:
    return "\n".join(textwrap.wrap(base64.b64encode(data).decode(), 64)).encode() + b"\n"
