"""Entries, tree heads, checkpoints, rows and the domain filter, one format at a time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pinlab.certs import Certificate, load_certificate_file
from pinlab.ct import CTError, DomainFilter, LogKey, LogMisbehaviourError, SignedTreeHead
from pinlab.ct.entries import (
    EntryType,
    encode_extra_data,
    encode_leaf,
    encode_tile_leaf,
    parse_entry,
    parse_tile_leaves,
)
from pinlab.ct.rows import (
    POISON_OID,
    SCT_LIST_OID,
    certificate_row,
    dns_names,
    issuance_key,
    strip_extension,
    tbs_of,
)
from pinlab.ct.sth import checkpoint_text, parse_checkpoint
from pinlab.errors import MalformedCertificateError
from pinlab.store import CertificateRow
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.pki import CA, KeyType, pooled_key


@pytest.fixture(scope="module")
def pki() -> tuple[CA, CA]:
    root = CA.root("Formats Root")
    return root, root.child_ca("Formats CA")


def test_entries_round_trip_both_kinds(pki: tuple[CA, CA]) -> None:
    root, ca = pki
    log = LocalLog()
    issued = log.issue(ca, "a.test", "b.test", timestamp=1_700_000_000_123)
    log.add_certificate(issued.final, issued.chain, timestamp=1_700_000_001_000)
    precert, final = (stored.entry for stored in log.stored)
    parsed = parse_entry(0, precert.leaf_input, log.stored[0].extra_data)
    assert parsed == precert
    assert parsed.entry_type is EntryType.PRECERT
    assert parsed.certificate == issued.precert
    assert parsed.chain == (ca.der, root.der)
    assert parsed.issuer_key_hash == bytes.fromhex(Certificate.from_der(ca.der).spki_sha256_hex)
    assert parsed.observed_at.isoformat() == "2023-11-14T22:13:20.123000+00:00"
    assert parse_entry(1, final.leaf_input, log.stored[1].extra_data) == final
    tile = b"".join(
        encode_tile_leaf(
            e.timestamp, e.certificate, e.chain, tbs=e.tbs, issuer_key_hash=e.issuer_key_hash
        )
        for e in (precert, final)
    )
    leaves = parse_tile_leaves(tile, 0, 2)
    assert [leaf.entry.leaf_input for leaf in leaves] == [precert.leaf_input, final.leaf_input]
    assert leaves[0].fingerprints == tuple(hashlib.sha256(c).digest() for c in precert.chain)


@pytest.mark.parametrize(
    ("leaf", "extra", "message"),
    [
        (b"\x01\x00" + b"\x00" * 12, b"", "not a v1"),
        (b"\x00\x00" + b"\x00" * 5, b"", "truncated"),
        (encode_leaf(1, b"cert")[:-3], b"\x00\x00\x00", "claims"),
        (encode_leaf(1, b"cert") + b"x", b"\x00\x00\x00", "after the leaf"),
        (b"\x00\x00" + (1).to_bytes(8, "big") + b"\x00\x07", b"", "unknown entry type"),
        (encode_leaf(1, b"cert"), b"\x00\x00\x05\x00\x00\x09", "claims"),
        (encode_leaf(1, b"cert"), encode_extra_data([b"x"]) + b"!", "after extra_data"),
    ],
)
def test_malformed_entries_are_log_misbehaviour(leaf: bytes, extra: bytes, message: str) -> None:
    with pytest.raises(LogMisbehaviourError, match=message):
        parse_entry(7, leaf, extra)


def test_precert_and_final_share_the_issuance_key(pki: tuple[CA, CA]) -> None:
    _, ca = pki
    issued = LocalLog().issue(ca, "k.test", timestamp=1)
    precert_tbs = strip_extension(tbs_of(issued.precert), POISON_OID)
    assert POISON_OID not in precert_tbs
    assert SCT_LIST_OID in tbs_of(issued.final)
    assert issuance_key(tbs=precert_tbs, precert_entry=True) == issuance_key(
        tbs=tbs_of(issued.final), precert_entry=False
    )
    assert strip_extension(b"\x30\x03\x02\x01\x01", POISON_OID) == b"\x30\x03\x02\x01\x01"


def _slow(der: bytes) -> CertificateRow:
    return CertificateRow.from_certificate(Certificate.from_der(der))


def test_fast_rows_equal_the_general_path(pki: tuple[CA, CA], shared_data: Path) -> None:
    root, ca = pki
    ders = [root.der, ca.der]
    for key_type in (KeyType.P256, KeyType.P384, KeyType.ED25519):
        ders.append(ca.issue_leaf("x.test", "10.0.0.1", key_type=key_type).der)
    ders.append(ca.issue_leaf("rsa.test", key=pooled_key(KeyType.RSA2048)).der)
    issued = LocalLog().issue(ca, "p.test", timestamp=1)
    ders += [issued.precert, issued.final]
    real = sorted((shared_data / "real-histories").rglob("*.pem"))[:40]
    for path in real:
        try:
            ders += [c.der for c in load_certificate_file(path)]
        except MalformedCertificateError:
            continue
    assert len(ders) > 40
    quick = 0
    for der in ders:
        row = certificate_row(der)
        assert row == _slow(der)
        names = dns_names(der)
        if names is not None:
            quick += 1
            assert sorted(names) == sorted(row.sans or ())
        else:
            assert not row.sans or not any(n.endswith(".test") for n in row.sans)
    assert quick > 20


def test_tree_heads_sign_and_verify_with_ecdsa_and_rsa() -> None:
    for private in (ec.generate_private_key(ec.SECP256R1()), pooled_key(KeyType.RSA2048)):
        assert isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        key = _key_of(private)
        sth = SignedTreeHead.sign(private, tree_size=5, timestamp=1_000, root_hash=bytes(32))
        sth.verify(key)
        assert SignedTreeHead.from_json(sth.to_json()) == sth
        forged = SignedTreeHead(6, sth.timestamp, sth.root_hash, sth.signature)
        with pytest.raises(LogMisbehaviourError, match="tree size 6"):
            forged.verify(key)


def _key_of(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> LogKey:
    from cryptography.hazmat.primitives import serialization

    return LogKey.from_der(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def test_malformed_get_sth_is_misbehaviour() -> None:
    with pytest.raises(LogMisbehaviourError, match="malformed"):
        SignedTreeHead.from_json({"tree_size": 1})


def test_checkpoint_round_trip_and_refusals() -> None:
    log = LocalLog()
    sth = log.sth(0, timestamp=1_700_000_000_000)
    text = checkpoint_text("example.test/log", sth, log.key.log_id)
    assert text.startswith("example.test/log\n0\n")
    origin, parsed = parse_checkpoint(text, key=log.key)
    assert (origin, parsed) == ("example.test/log", sth)
    with pytest.raises(LogMisbehaviourError, match="origin"):
        parse_checkpoint(text, key=log.key, origin="other/log")
    other = LocalLog()
    with pytest.raises(LogMisbehaviourError, match="no RFC 6962 note signature"):
        parse_checkpoint(text, key=other.key)
    with pytest.raises(LogMisbehaviourError, match="signed note"):
        parse_checkpoint("example.test/log\n0\n", key=None)


def test_domain_filter_semantics() -> None:
    watch = DomainFilter(["Example.COM.", "*.wild.test", ".tree.test", "www.covered.test"])
    assert watch.match(["example.com"]) == ["example.com"]
    assert watch.match(["www.example.com"]) == []
    assert watch.match(["*.covered.test"]) == ["www.covered.test"]
    assert watch.match(["a.wild.test", "*.wild.test", "b.a.wild.test"]) == [
        "a.wild.test",
        "*.wild.test",
    ]
    assert watch.match(["tree.test", "x.y.tree.test", "*.tree.test"]) == [
        "tree.test", "x.y.tree.test", "*.tree.test",
    ]  # fmt: skip
    subdomains = DomainFilter(["example.com"], subdomains=True)
    assert subdomains.match(["api.example.com"]) == ["api.example.com"]
    assert subdomains.key != DomainFilter(["example.com"]).key
    assert DomainFilter(["b\u00fccher.test"]).entries == ["xn--bcher-kva.test"]
    with pytest.raises(CTError, match="empty"):
        DomainFilter([" ", ""])


def test_domain_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "domains.txt"
    path.write_text("# watched\nexample.com  # main\n\n.example.org\n")
    assert DomainFilter.from_file(path).entries == [".example.org", "example.com"]
    with pytest.raises(CTError, match="cannot read"):
        DomainFilter.from_file(tmp_path / "missing.txt")
