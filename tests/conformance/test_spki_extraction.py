"""SPKI extraction: pinlab hashes the SubjectPublicKeyInfo exactly as the certificate encodes it.

- Over every certificate of ../shared/data and of cryptography-vectors' ``x509/`` corpus,
  the slice equals cryptography's ``public_bytes(DER, SubjectPublicKeyInfo)`` wherever the
  two encodings agree, and every difference is one of the known odd encodings.
- In those odd cases, built here (RSA key without the NULL parameter, EC key with explicit
  curve parameters, RSA-PSS key), the slice and the pin equal what ``openssl asn1parse``
  finds at the SPKI's offset, while re-serialising differs or fails.
- Malformed input, random or mutated real DER, gives :class:`MalformedCertificateError` or a
  valid result, never another exception; through the CLI it gives one line and exit 2.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import subprocess
from collections import Counter
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinlab.certs import Certificate, load_certificates
from pinlab.der import spki_from_certificate
from pinlab.errors import MalformedCertificateError
from pinlab.testbed.pki import CA, KeyType, pooled_key

from .conftest import Pinlab

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
VECTORS = Path(cryptography_vectors.__file__).parent / "x509"
_PEM_CERT = re.compile(
    rb"-----BEGIN (?:X509 )?CERTIFICATE-----(.*?)-----END (?:X509 )?CERTIFICATE-----", re.S
)
_RSA_OID = bytes.fromhex("06092a864886f70d010101")
_RSA_PSS_OID = bytes.fromhex("06092a864886f70d01010a")
_EC_OID = bytes.fromhex("06072a8648ce3d0201")
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def corpus_ders() -> list[tuple[str, bytes]]:
    """Every certificate DER of the two corpora, decoded without pinlab's loader."""
    paths = sorted(SHARED.rglob("*.pem"))
    paths += sorted(
        p for p in VECTORS.rglob("*") if p.is_file() and p.suffix in {".pem", ".der", ".crt"}
    )
    found: list[tuple[str, bytes]] = []
    for path in paths:
        data = path.read_bytes()
        name = str(path.relative_to(path.parents[2]))
        if b"-----BEGIN" not in data:
            found.append((name, data))
            continue
        for number, block in enumerate(_PEM_CERT.finditer(data)):
            try:
                found.append((f"{name}#{number}", base64.b64decode(b"".join(block[1].split()))))
            except ValueError:
                continue  # deliberately broken base64 in the vectors: not a certificate
    return found


CORPUS = corpus_ders()


def odd_encoding(spki: bytes) -> str | None:
    """Which known odd SPKI encoding this is (the only reasons public_bytes may differ)."""
    if _RSA_PSS_OID in spki[:20]:
        return "rsa-pss"
    at = spki.find(_RSA_OID)
    if 0 <= at < 10 and spki[at + len(_RSA_OID)] != 0x05:
        return "rsa-without-null"
    at = spki.find(_EC_OID)
    if 0 <= at < 10 and spki[at + len(_EC_OID)] != 0x06:
        return "ec-explicit-curve"
    return None


def test_slice_equals_public_bytes_wherever_cryptography_can_encode() -> None:
    counts: Counter[str] = Counter()
    differing: list[tuple[str, str | None]] = []
    for name, der in CORPUS:
        try:
            parsed = x509.load_der_x509_certificate(der)
        except Exception:  # ValueError, InvalidVersion...
            parsed = None
        try:
            spki = spki_from_certificate(der)
        except MalformedCertificateError:
            assert parsed is None, f"{name}: cryptography parses it, pinlab cannot slice it"
            counts["not a certificate"] += 1
            continue
        if parsed is None:
            counts["cryptography cannot load"] += 1
            continue
        assert spki in der
        try:
            reserialised = parsed.public_key().public_bytes(*_SPKI)
        except Exception:  # cryptography refuses some keys in many ways
            counts["cryptography cannot encode"] += 1
            continue
        counts["compared"] += 1
        if reserialised != spki:
            counts["differ"] += 1
            differing.append((name, odd_encoding(spki)))
    print(f"SPKI slice vs public_bytes over {len(CORPUS)} certificates: {dict(counts)}")
    assert counts["compared"] >= 700, counts
    assert all(kind is not None for _, kind in differing), differing
    assert 1 <= counts["differ"] <= 20, differing
    assert counts["cryptography cannot encode"] + counts["cryptography cannot load"] <= 40
    assert counts["not a certificate"] <= 60  # CRLs, CSRs and OCSP responses in the vectors


# --- odd encodings, built here -----------------------------------------------------------


def tlv(tag: int, content: bytes) -> bytes:
    """A DER element (definite length, minimal encoding)."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def rsa_without_null(tmp_path: Path) -> bytes:
    """An RSA leaf whose AlgorithmIdentifier omits the NULL, properly signed by an EC CA."""
    ca = CA.root("SPKI Surgery CA")
    key = pooled_key(KeyType.RSA2048)
    original = ca.issue("rsa without null", key.public_key(), is_ca=False)
    pkcs1 = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    without_null = tlv(0x30, tlv(0x30, _RSA_OID) + tlv(0x03, b"\0" + pkcs1))
    with_null = key.public_key().public_bytes(*_SPKI)
    tbs = original.tbs_certificate_bytes
    header = 4 if tbs[1] == 0x82 else 3
    assert tbs[header:].count(with_null) == 1
    new_tbs = tlv(0x30, tbs[header:].replace(with_null, without_null))
    signature = ca.private_key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    der = tlv(0x30, new_tbs + _ECDSA_SHA256 + tlv(0x03, b"\0" + signature))
    x509.load_der_x509_certificate(der).verify_directly_issued_by(ca.certificate)
    return der


def openssl_self_signed(tmp_path: Path, *genkey: str) -> bytes:
    """``openssl req -x509`` over a key made by the given openssl command."""
    key = tmp_path / "key.pem"
    subprocess.run([*genkey, "-out", str(key)], check=True, capture_output=True)
    done = subprocess.run(
        [
            *("openssl", "req", "-x509", "-new", "-key", str(key), "-subj", "/CN=odd spki"),
            *("-days", "1", "-outform", "DER"),
        ],
        check=True,
        capture_output=True,
    )
    return done.stdout


def ec_explicit(tmp_path: Path) -> bytes:
    return openssl_self_signed(
        tmp_path, "openssl", "ecparam", "-name", "prime256v1", "-param_enc", "explicit",
        "-genkey", "-noout",
    )  # fmt: skip


def rsa_pss(tmp_path: Path) -> bytes:
    return openssl_self_signed(
        tmp_path, "openssl", "genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"
    )


def asn1parse_spki(der: bytes) -> bytes:
    """The SPKI found by ``openssl asn1parse``: the 6th field of the TBSCertificate, or the
    7th when a [0] version comes first."""
    out = subprocess.run(
        ["openssl", "asn1parse", "-inform", "DER"], input=der, capture_output=True, check=True
    ).stdout.decode()
    line = re.compile(r"\s*(\d+):d=(\d+)\s+hl=\s*(\d+)\s+l=\s*(\d+)\s+\w+:\s*(.*)")
    fields: list[tuple[int, int, int, str]] = []
    outer = 0
    for match in map(line.match, out.splitlines()):
        assert match is not None
        offset, depth, header, length = map(int, match.groups()[:4])
        outer += depth == 1
        if depth == 2 and outer == 1:
            fields.append((offset, header, length, match[5].strip()))
    offset, header, length, kind = fields[6 if fields[0][3].startswith("cont [ 0 ]") else 5]
    assert kind == "SEQUENCE"
    return der[offset : offset + header + length]


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        pytest.param(rsa_without_null, "rsa-without-null", id="rsa-without-null"),
        pytest.param(ec_explicit, "ec-explicit-curve", id="ec-explicit-curve"),
        pytest.param(rsa_pss, "rsa-pss", id="rsa-pss"),
    ],
)
def test_odd_spki_is_hashed_as_encoded(build: object, kind: str, tmp_path: Path) -> None:
    der: bytes = build(tmp_path)  # type: ignore[operator]
    expected = asn1parse_spki(der)
    assert odd_encoding(expected) == kind
    assert spki_from_certificate(der) == expected
    certificate = Certificate.from_der(der)
    digest = hashlib.sha256(expected).digest()
    assert certificate.pin == "sha256/" + base64.b64encode(digest).decode()
    try:
        reserialised = x509.load_der_x509_certificate(der).public_key().public_bytes(*_SPKI)
    except Exception:  # cannot encode: pinlab still gives the pin
        return
    assert reserialised != expected


# --- malformed input ---------------------------------------------------------------------

_SEEDS = [der for name, der in CORPUS if name.startswith(("le-hierarchy", "real-histories"))][:6]
_SEEDS += [CA.root("Fuzz Seed").issue_leaf("fuzz.example").der]
_SEEDS += [der for name, der in CORPUS if "rsa_pss" in name or "ec_no_named_curve" in name][:2]
_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_malformed_errors(data: bytes) -> None:
    """Each entry point returns a valid result or raises MalformedCertificateError."""
    for function in (spki_from_certificate, Certificate.from_der, load_certificates):
        with contextlib.suppress(MalformedCertificateError):
            function(data)  # type: ignore[operator]


@st.composite
def mutated_der(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.sampled_from([0x00, 0x30, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF]))
        elif action == "truncate":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        else:
            del data[at]
        if not data:
            break
    return bytes(data)


@_FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_malformed_certificate_error(data: bytes) -> None:
    only_malformed_errors(data)


@_FUZZ
@given(mutated_der())
def test_mutated_real_der_raises_only_malformed_certificate_error(data: bytes) -> None:
    only_malformed_errors(data)


@_FUZZ
@given(mutated_der(), st.integers(0, 2000))
def test_truncated_or_damaged_pem_raises_only_malformed_certificate_error(
    der: bytes, cut: int
) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der)
    only_malformed_errors((pem + b"-----END CERTIFICATE-----\n")[:cut])


def test_custom_explicit_curve_gives_a_record_or_a_clean_error() -> None:
    """Found by the fuzz test: explicit EC parameters that name no supported curve."""
    der = bytearray(
        x509.load_pem_x509_certificate(
            (VECTORS / "custom" / "ec_no_named_curve.pem").read_bytes()
        ).public_bytes(serialization.Encoding.DER)
    )
    at = der.find(bytes.fromhex("0420ffffffff00000001"))  # the curve's coefficient a
    der[at + 33] ^= 0x01
    only_malformed_errors(bytes(der))


def test_every_corpus_certificate_gives_a_record_or_a_clean_error() -> None:
    escaped = []
    for name, der in CORPUS:
        try:
            only_malformed_errors(der)
        except Exception as error:
            escaped.append(f"{name}: {type(error).__name__}")
    assert escaped == []


# --- malformed files through the CLI ----------------------------------------------------

_LEAF = CA.root("CLI Seed").issue_leaf("cli.example")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\x01 not a certificate", id="garbage"),
        pytest.param(_LEAF.der[:-10], id="truncated-der"),
        pytest.param(_LEAF.der + b"\x00", id="der-with-trailing-byte"),
        pytest.param(_LEAF.cert_pem[:-40], id="truncated-pem"),
        pytest.param(_LEAF.cert_pem.replace(b"M", b"!", 1), id="pem-bad-base64"),
        pytest.param(_LEAF.cert_pem[:200] + _LEAF.cert_pem[-26:], id="pem-missing-lines"),
        pytest.param(_LEAF.key_pem, id="private-key-not-certificate"),
        pytest.param(_LEAF.cert_pem + _LEAF.cert_pem[:-40], id="second-block-truncated"),
    ],
)
def test_cli_malformed_file_is_one_line_exit_2(
    content: bytes, tmp_path: Path, pinlab_in_process: Pinlab
) -> None:
    path = tmp_path / "input.pem"
    path.write_bytes(content)
    run = pinlab_in_process("pins", str(path), "--at", "2030-01-01T00:00:00Z")
    assert run.returncode == 2, str(run)
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, str(run)
    assert str(path) in run.stderr


def test_truncated_der_through_the_real_script(tmp_path: Path, pinlab: Pinlab) -> None:
    path = tmp_path / "truncated.der"
    path.write_bytes(_LEAF.der[:-10])
    run = pinlab("pins", str(path))
    assert run.returncode == 2, str(run)
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, str(run)


@pytest.mark.parametrize(
    "name",
    ["san_x400address.der", "custom/two_basic_constraints.pem", "custom/invalid_version.pem"],
)
def test_cli_certificate_cryptography_refuses_is_one_line_exit_2(name: str, pinlab: Pinlab) -> None:
    run = pinlab("pins", str(VECTORS / name), "--at", "2030-01-01T00:00:00Z")
    assert run.returncode in {0, 2}, str(run)
    assert "Traceback" not in run.stderr
