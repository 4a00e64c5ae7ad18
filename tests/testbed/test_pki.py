"""testbed.pki makes the PKIs the tests need; testbed.loopback serves them for real."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pinlab.testbed.loopback
from pinlab.certs import load_certificate_file
from pinlab.collect.tls import handshake
from pinlab.testbed.loopback import LoopbackError, openssl_server
from pinlab.testbed.pki import CA, KeyType, pooled_key, write_pem
from pinlab.verify import TrustStore, VerificationFailure, verify_chain

AT = datetime(2030, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def hierarchy() -> tuple[CA, CA]:
    root = CA.root("PKI Test Root")
    return root, root.child_ca("PKI Test Intermediate", path_length=0)


def test_leaf_validates_to_its_root_for_its_names(hierarchy: tuple[CA, CA]) -> None:
    root, intermediate = hierarchy
    leaf = intermediate.issue_leaf("localhost", "127.0.0.1")
    store = TrustStore.from_certificates([root.record], name="test")
    chain = [leaf.record, intermediate.record]
    for name in ("localhost", "127.0.0.1"):
        verification = verify_chain(chain, hostname=name, at=AT, trust_store=store)
        assert verification.ok, verification
        assert [c.subject for c in verification.path] == [
            leaf.record.subject,
            intermediate.subject,
            root.subject,
        ]
    wrong = verify_chain(chain, hostname="other.test", at=AT, trust_store=store)
    assert wrong.failure is VerificationFailure.HOSTNAME


@pytest.mark.parametrize("key_type", list(KeyType))
def test_every_key_type_makes_a_record(key_type: KeyType) -> None:
    key = pooled_key(key_type)
    leaf = CA.root("Key Type Root").issue_leaf("k.test", key=key)
    assert leaf.record.spki == leaf.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert leaf.record.is_ca is False
    assert leaf.record.sans == ("k.test",)


def test_pooled_keys_are_cached_by_index_and_distinct_across_indexes() -> None:
    assert pooled_key(KeyType.P256, 0) is pooled_key(KeyType.P256, 0)
    assert pooled_key(KeyType.P256, 0) is not pooled_key(KeyType.P256, 1)


def test_path_length_is_inherited_and_enforced(hierarchy: tuple[CA, CA]) -> None:
    root, intermediate = hierarchy
    assert intermediate.path_length == 0
    assert root.child_ca("Bounded", path_length=2).child_ca("Inherits").path_length == 1
    with pytest.raises(ValueError, match="path length is 0"):
        intermediate.child_ca("Too deep")


def test_issue_signs_anything_on_purpose(hierarchy: tuple[CA, CA]) -> None:
    """The low-level door: a rogue name, a violating CA, a non-CA signer."""
    _, intermediate = hierarchy
    key = KeyType.P256.generate()
    rogue = intermediate.issue(intermediate.certificate.subject, key.public_key(), is_ca=True)
    assert rogue.subject == intermediate.certificate.subject
    constraints = rogue.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    leaf = intermediate.issue_leaf("signer.test")
    forged = leaf.as_signer().issue_leaf("forged.test")
    forged.certificate.verify_directly_issued_by(leaf.certificate)


def test_write_pem_round_trips_in_order(hierarchy: tuple[CA, CA], tmp_path: Path) -> None:
    root, intermediate = hierarchy
    leaf = intermediate.issue_leaf("order.test")
    path = write_pem(tmp_path / "chain.pem", leaf, intermediate.certificate, root.record)
    loaded = load_certificate_file(path)
    assert [c.sha256 for c in loaded] == [
        leaf.record.sha256,
        intermediate.record.sha256,
        root.record.sha256,
    ]
    assert leaf.chain_pem == intermediate.cert_pem  # the root is never sent


def test_loopback_serves_the_given_chain_to_fresh_connections(hierarchy: tuple[CA, CA]) -> None:
    _, intermediate = hierarchy
    leaf = intermediate.issue_leaf("localhost")
    with openssl_server(leaf.cert_pem, leaf.key_pem, chain_pem=leaf.chain_pem) as port:
        for _ in range(3):
            served = handshake("127.0.0.1", port, sni="localhost", timeout=5)
            assert served.chain == (leaf.der, intermediate.der)
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass  # terminated when the block ended


def test_loopback_retries_when_the_chosen_port_is_taken(
    hierarchy: tuple[CA, CA], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, intermediate = hierarchy
    leaf = intermediate.issue_leaf("localhost")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real = pinlab.testbed.loopback._free_port
        monkeypatch.setattr(
            pinlab.testbed.loopback, "_free_port", lambda: next(ports, None) or real()
        )
        with openssl_server(leaf.cert_pem, leaf.key_pem) as port:
            assert port != taken
            assert handshake("127.0.0.1", port, sni="localhost", timeout=5).chain == (leaf.der,)


def test_loopback_reports_a_server_that_cannot_start(hierarchy: tuple[CA, CA]) -> None:
    _, intermediate = hierarchy
    leaf = intermediate.issue_leaf("localhost")
    other_key = KeyType.P256.generate()
    mismatched = CA(leaf.certificate, other_key).key_pem
    with (
        pytest.raises(LoopbackError, match="did not start"),
        openssl_server(leaf.cert_pem, mismatched),
    ):
        pass
