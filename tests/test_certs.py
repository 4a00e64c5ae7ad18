"""Loading certificates in every format researchers hand us, and the record we keep."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from pinlab.certs import Certificate, load_certificate_file, load_certificates
from pinlab.der import spki_algorithm_oid
from pinlab.errors import MalformedCertificateError
from pinlab.testbed.pki import CA

ONE_PASSWORD = "real-histories/chains/52a7ebe911392c59.pem"


@pytest.fixture
def chain(shared_data: Path) -> list[Certificate]:
    return load_certificate_file(shared_data / ONE_PASSWORD)


def test_pem_chain_keeps_the_presented_order(chain: list[Certificate]) -> None:
    assert [c.subject.split(",")[0] for c in chain[:3]] == [
        "CN=*.1password.com",
        "CN=Amazon",
        "CN=Amazon Root CA 1",
    ]
    assert chain[0].issuer == chain[1].subject


def test_record_fields_of_a_real_leaf(chain: list[Certificate]) -> None:
    leaf = chain[0]
    assert leaf.sha256 == hashlib.sha256(leaf.der).hexdigest()
    assert leaf.spki_sha256 == hashlib.sha256(leaf.spki).digest()
    assert leaf.key_label == "RSA-2048"
    assert not leaf.is_ca
    assert "*.1password.com" in leaf.sans
    assert leaf.not_before < leaf.not_after
    assert leaf.not_after.tzinfo is not None
    assert int(leaf.serial, 16) == leaf.x509.serial_number
    assert leaf.pin == "sha256/1cvQt44GgZoROzHukIQO4ei1OxjbRZAL2QL9Gfe8RZU="
    assert chain[1].is_ca
    assert spki_algorithm_oid(leaf.spki) == "1.2.840.113549.1.1.1"


def test_der_and_pkcs7_give_the_same_records(chain: list[Certificate]) -> None:
    (from_der,) = load_certificates(chain[0].der)
    assert from_der == chain[0]
    bundle = [c.x509 for c in chain]
    for encoding in (serialization.Encoding.PEM, serialization.Encoding.DER):
        data = pkcs7.serialize_certificates(bundle, encoding)
        # PKCS#7 holds its certificates in a SET OF, which DER sorts: order is not kept.
        assert sorted(c.sha256 for c in load_certificates(data)) == sorted(c.sha256 for c in chain)


def test_equality_follows_the_der_bytes(chain: list[Certificate]) -> None:
    again = Certificate.from_der(chain[0].der)
    assert again == chain[0]
    assert hash(again) == hash(chain[0])
    assert again != chain[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, world", "neither PEM"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "without a complete block"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM block 1"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "without any"),
    ],
)
def test_malformed_input_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(MalformedCertificateError, match=message):
        load_certificates(data, source="input.pem")


def test_truncated_and_padded_der_are_rejected(chain: list[Certificate]) -> None:
    der = chain[0].der
    with pytest.raises(MalformedCertificateError):
        Certificate.from_der(der[:-1])
    with pytest.raises(MalformedCertificateError, match="trailing"):
        Certificate.from_der(der + b"\x00")


def test_second_block_malformed_is_named(chain: list[Certificate], tmp_path: Path) -> None:
    path = tmp_path / "chain.pem"
    path.write_text(
        chain[0].to_pem() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(MalformedCertificateError, match=r"chain\.pem: PEM block 2"):
        load_certificate_file(path)


def test_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(MalformedCertificateError, match="cannot read"):
        load_certificate_file(tmp_path / "absent.pem")


def test_every_shared_certificate_loads(shared_data: Path) -> None:
    files = sorted(shared_data.glob("*/c*/*.pem"))
    certificates = [c for f in files for c in load_certificate_file(f)]
    assert len(files) == 148
    assert len(certificates) == 237
    assert {c.key_type for c in certificates} == {"RSA", "EC"}


def test_lazy_records_defer_the_descriptive_fields(chain: list[Certificate]) -> None:
    lazy = Certificate.from_der(chain[0].der, lazy=True)
    assert "subject" not in vars(lazy)  # not computed yet
    assert lazy.spki_sha256 == chain[0].spki_sha256
    assert lazy.subject == chain[0].subject
    assert "subject" in vars(lazy)  # computed once, then kept
    assert lazy == chain[0]


def test_records_are_immutable_and_pickle(chain: list[Certificate]) -> None:
    import copy
    import pickle

    with pytest.raises(AttributeError, match="immutable"):
        chain[0].der = b""  # type: ignore[misc]
    assert copy.deepcopy(chain[0]) is chain[0]
    again = pickle.loads(pickle.dumps(chain[0]))
    assert again == chain[0]
    assert again.subject == chain[0].subject


def test_a_field_that_does_not_parse_is_a_clean_error_even_when_lazy() -> None:
    import cryptography_vectors
    from cryptography import x509 as cx509

    vectors = Path(cryptography_vectors.__file__).parent / "x509" / "custom"
    pem = (vectors / "two_basic_constraints.pem").read_bytes()
    with pytest.raises(MalformedCertificateError, match="do not parse"):
        load_certificates(pem, source="two_basic_constraints.pem")
    der = cx509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    lazy = Certificate.from_der(der, lazy=True)  # the pin is still well defined
    assert len(lazy.spki_sha256) == 32
    with pytest.raises(MalformedCertificateError, match="do not parse"):
        _ = lazy.is_ca


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ("custom/bad_country.pem", "Attribute's length must be >= 2 and <= 2, but it was 8"),
        ("belgian-eid-invalid-visiblestring.pem", "UTF-8 characters in a VisibleString"),
    ],
)
def test_what_cryptography_tolerates_with_a_warning_is_recorded_not_warned(
    vector: str, expected: str
) -> None:
    path = Path(cryptography_vectors.__file__).parent / "x509" / vector
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the record fails the test
        certificate = load_certificate_file(path)[0]
    assert any(expected in note for note in certificate.parse_warnings)


def test_a_well_formed_certificate_has_no_parse_warnings() -> None:
    leaf = CA.root("quiet root").issue_leaf("quiet.test")
    assert leaf.record.parse_warnings == ()
