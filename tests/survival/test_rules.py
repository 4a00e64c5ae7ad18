"""The one rule book (pinlab.survival.rules): both engines read it, and give equal answers.

Held here: the CA-organisation rule is the ledger's, on multi-valued and repeated O names;
the host-name table of tests/test_names.py gives the same verified chains in both engines;
a strategy is one recipe (added at run time, both engines replay it); a SHA-1-era history
gets one answer from a DuckDB file and from its Parquet export, and the engine that cannot
rebuild SHA-1 paths says so.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from pinlab.certs import Certificate
from pinlab.cli import app
from pinlab.history import renewal_ledger
from pinlab.history.rules import ca_organisation
from pinlab.store import Scan, Store, export_dataset
from pinlab.survival import STRATEGIES, KeyRecipe, ScanAnchors, Strategy
from pinlab.survival.duckdb_engine import replay_store
from pinlab.survival.rules import organisation
from pinlab.testbed.pki import CA, KeyType, write_pem
from pinlab.verify import TrustStore
from tests.survival.test_duckdb_engine import T0, _assert_same, _reference, _Writer
from tests.test_names import CASES

runner = CliRunner()


@pytest.mark.parametrize(
    "name",
    [
        "CN=R3,O=Let's Encrypt,C=US",
        "CN=x,O=Second,O=First",  # RFC 4514 writes the certificate's first O last
        "CN=x+O=Multi Valued,C=US",  # a multi-valued RDN
        "O=Escaped\\, Inc.,CN=y",
        "O=Plus\\+Sign+CN=z",
        "CN=no organisation",
        "",
    ],
)
def test_the_organisation_rule_is_the_ledgers(name: str) -> None:
    assert organisation(name) == (ca_organisation(name) or "")


def _store(path: Path, writer: _Writer) -> Path:
    with Store.open(path) as store:
        store.add_scan(
            Scan(scan_id="crafted", source="scan", label=None, targets=None, parameters="{}",
                 started_at=T0, finished_at=None, pinlab_version="test")
        )  # fmt: skip
        store.write(writer.observations, writer.certificates.values())
    return path


def _both_engines(path: Path, trust: TrustStore, out: Path) -> pd.DataFrame:
    with Store.open(path, read_only=True) as store:
        expected = _reference(store, trust)
        got = replay_store(store, trust_store=trust, out=out).frame()
    _assert_same(expected, got)
    return expected


def test_one_organisation_for_ledger_and_ca_set_on_multi_valued_names(tmp_path: Path) -> None:
    """Two intermediates whose names hold two O values: the certificate's first O is the
    same, the other differs. The ledger sees no CA change; ca-set survives the move in
    both engines; intermediate-spki breaks."""
    root = CA.root("multi root")

    def name(common: str, second: str) -> x509.Name:
        return x509.Name([
            x509.RelativeDistinguishedName([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Same CA Inc"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, second)]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, common)]),
        ])  # fmt: skip

    one, two = root.child_ca(name("CA 1", "Unit A")), root.child_ca(name("CA 2", "Unit B"))
    writer = _Writer()
    for day, issuer in [(0, one), (40, one), (80, two), (120, two)]:
        writer.serve("m.test", day, [issuer.issue_leaf("m.test").record, issuer.record])
    path = _store(tmp_path / "multi.duckdb", writer)
    trust = TrustStore.from_certificates([root.record], name="multi")
    replayed = _both_engines(path, trust, tmp_path / "out")
    first_pins = replayed[(replayed["pinned_at"] == T0) & (replayed["semantics"] == "verified")]
    outcome = first_pins.set_index("strategy")["broken"]
    assert not outcome["ca-set"]
    assert outcome["intermediate-spki"]
    with Store.open(path, read_only=True) as store:
        ledger = renewal_ledger(store.observations_df(), store.certificates_df())
    assert ledger["issuer_changed"].any()
    assert not ledger["ca_org_changed"].any()
    assert set(ledger["new_ca_org"]) == {"Same CA Inc"}


def test_host_name_table_gives_equal_answers_in_both_engines(tmp_path: Path) -> None:
    root = CA.root("names root")
    writer = _Writer()
    hosts = []
    for index, (name, sans, _expected) in enumerate(CASES):
        if name in ("", "."):
            continue  # not a host a store can hold
        leaf = root.issue_leaf(*sans).record
        host = f"case{index}.host.test"
        hosts.append((host, name))
        for day in (0, 30):
            writer.serve(host, day, [leaf], sni=name)
    path = _store(tmp_path / "names.duckdb", writer)
    trust = TrustStore.from_certificates([root.record], name="names")
    replayed = _both_engines(path, trust, tmp_path / "out")
    verified = set(replayed.loc[replayed["semantics"] == "verified", "sni"])
    expected = {name for name, _sans, matches in CASES if matches}
    assert verified == expected


def test_a_strategy_is_one_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A new entry in STRATEGIES, and nothing else, is replayed alike by both engines."""
    root = CA.root("recipe root")
    issuing = root.child_ca("recipe issuing CA")
    writer = _Writer()
    for day in range(0, 200, 30):
        writer.serve("r.test", day, [issuing.issue_leaf("r.test").record, issuing.record])
    path = _store(tmp_path / "recipe.duckdb", writer)
    new = Strategy("leaf+root", KeyRecipe(positions=(0, -1)), "the leaf key and the anchor")
    monkeypatch.setitem(STRATEGIES, new.name, new)
    replayed = _both_engines(path, TrustStore.from_certificates([root.record], name="r"),
                             tmp_path / "out")  # fmt: skip
    mine = replayed[replayed["strategy"] == "leaf+root"]
    assert len(mine) > 0
    assert not mine["broken"].any()  # the anchor never changes


def test_scan_anchors_round_trip() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    recorded = ScanAnchors(("b" * 64, "a" * 64), at)
    parsed = ScanAnchors.from_parameters(json.dumps({"round": 3, **recorded.parameters()}))
    assert parsed == ScanAnchors(("a" * 64, "b" * 64), at)
    for text in (None, "", "{", "[]", '{"trust_anchors": []}', '{"validated_at": "x"}'):
        assert ScanAnchors.from_parameters(text) is None


def _sha1_signed(issuer: CA, subject: str, key: rsa.RSAPrivateKey, *, ca: bool,
                 not_before: datetime, not_after: datetime) -> Certificate:  # fmt: skip
    """A certificate signed with SHA-1, as CAs issued them before 2017."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    # cryptography refuses to sign with SHA-1: sign with SHA-256, swap the algorithm
    # identifiers (same length), and sign the new TBS with SHA-1 by hand.
    signing_key = issuer.private_key
    assert isinstance(signing_key, rsa.RSAPrivateKey)
    der = builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    der = der.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA)
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    signature = signing_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    assert len(signature) == signing_key.key_size // 8
    return Certificate.from_der(der[: -len(signature)] + signature)


_SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")  # OID 1.2.840.113549.1.1.11
_SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")  # OID 1.2.840.113549.1.1.5


def test_a_sha1_era_history_gets_one_answer_from_a_file_and_its_export(tmp_path: Path) -> None:
    start = datetime(2015, 3, 1, tzinfo=UTC)
    root = CA.root("sha1 era root", key_type=KeyType.RSA2048,
                   not_before=start - timedelta(days=3000))  # fmt: skip
    inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    intermediate_cert = _sha1_signed(root, "sha1 era CA", inter_key, ca=True,
                                     not_before=start - timedelta(days=1000),
                                     not_after=start + timedelta(days=3000))  # fmt: skip
    intermediate = CA(intermediate_cert.x509, inter_key, root)
    writer = _Writer()
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for month in range(0, 24, 4):
        at = start + timedelta(days=30 * month)
        leaf = _sha1_signed(intermediate, "old.test", leaf_key, ca=False,
                            not_before=at - timedelta(days=1),
                            not_after=at + timedelta(days=200))  # fmt: skip
        writer.serve("old.test", (at - T0).total_seconds() / 86400, [leaf, intermediate_cert])
    path = _store(tmp_path / "sha1.duckdb", writer)
    with Store.open(path, read_only=True) as store:
        export_dataset(store, tmp_path / "dataset")
    ca_file = write_pem(tmp_path / "roots.pem", root)
    outputs = []
    for source, out in ((path, "from-file.csv"), (tmp_path / "dataset", "from-dataset.csv")):
        result = runner.invoke(
            app, ["simulate", "--db", str(source), "--out", str(tmp_path / out),
                  "--ca-file", str(ca_file)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(pd.read_csv(tmp_path / out).sort_values(["strategy", "semantics",
                                                                 "pinned_at"]))  # fmt: skip
    pd.testing.assert_frame_equal(outputs[0].reset_index(drop=True),
                                  outputs[1].reset_index(drop=True))  # fmt: skip
    assert outputs[0]["legacy"].any()  # the Python engine rebuilt the SHA-1 paths
    duck = runner.invoke(
        app, ["simulate", "--db", str(tmp_path / "dataset"), "--out", str(tmp_path / "parts"),
              "--ca-file", str(ca_file), "--engine", "duckdb"],
    )  # fmt: skip
    assert duck.exit_code == 0, duck.output
    assert "predate 2017-01-01" in duck.output
    assert "--engine python rebuilds them" in duck.output
