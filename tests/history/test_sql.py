"""The DuckDB derivation (History) equals the DataFrame one, table for table.

On the real histories (from the store and from its Parquet export), on a synthetic sample
of the benchmark's generator, and on histories built to exercise each rule.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pinlab import history
from pinlab.bench.history_data import generate
from pinlab.certs import Certificate
from pinlab.collect import import_pem
from pinlab.history import History, HistoryError
from pinlab.history.rules import CA_ORG_SQL, ca_organisation
from pinlab.store import Store, frames_from_chains
from pinlab.testbed.pki import CA, KeyType, Leaf, pooled_key

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def assert_same(derived: History, observations: pd.DataFrame, certificates: pd.DataFrame) -> None:
    """Every table of ``derived`` equals the DataFrame functions' on the same input."""
    sightings = history.leaf_sightings(observations, certificates)
    ledger = history.renewal_ledger(observations, certificates, sightings=sightings)
    pd.testing.assert_frame_equal(derived.sightings(), sightings)
    pd.testing.assert_frame_equal(derived.ledger(), ledger)
    pd.testing.assert_frame_equal(derived.key_lifetimes(), history.key_lifetimes(sightings))
    pd.testing.assert_frame_equal(derived.host_summary(), history.host_summary(ledger, sightings))
    pd.testing.assert_frame_equal(
        derived.population_summary(), history.population_summary(ledger, sightings)
    )


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    path = tmp_path_factory.mktemp("store") / "real.duckdb"
    with Store.open(path) as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
    return path


def test_real_histories_from_the_store(real_store: Path) -> None:
    with Store.open(real_store, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
        derived = History.from_store(store)
        assert derived.parallel_groups == 1  # badssl.com: several leaves at one instant
        assert_same(derived, observations, certificates)
        assert derived.counts() == {"hosts": 18, "sightings": 65, "renewals": 44}


def test_real_histories_from_parquet(real_store: Path, tmp_path: Path) -> None:
    with Store.open(real_store, read_only=True) as store:
        store.export_parquet(tmp_path / "dataset")
        expected = history.ledger_from_connection(store.connection)
    part = tmp_path / "dataset/certificates/part-0.parquet"
    shutil.copy(part, part.with_name("part-1.parquet"))  # another worker's part: same certificates
    derived = History.from_parquet(tmp_path / "dataset")
    pd.testing.assert_frame_equal(derived.ledger(), expected)


def test_duplicate_certificates_are_refused(real_store: Path) -> None:
    with Store.open(real_store, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
    with pytest.raises(HistoryError, match="appear twice in the certificates table"):
        History.from_frames(observations, pd.concat([certificates, certificates]))


def test_a_synthetic_sample_of_the_benchmark(tmp_path: Path) -> None:
    with Store.open(tmp_path / "synthetic.duckdb") as store:
        generate(store.connection, hosts=400)
        observations, certificates = store.observations_df(), store.certificates_df()
        derived = History.from_store(store)
        assert derived.parallel_groups > 0  # the CDN hosts went through the Python greedy
        assert_same(derived, observations, certificates)
        ledger = derived.ledger()
    assert ledger["key_reused"].any()
    assert not ledger["key_reused"].all()
    assert ledger["ca_org_changed"].any()
    assert "Example, Inc." in set(ledger["new_ca_org"])  # the escaped comma, undone


def test_written_ledger_reads_back(real_store: Path, tmp_path: Path) -> None:
    with Store.open(real_store, read_only=True) as store:
        derived = History.from_store(store)
        assert derived.write_ledger(tmp_path / "ledger.parquet") == 44
        written = pd.read_parquet(tmp_path / "ledger.parquet")
        assert list(written.columns) == history.LEDGER_COLUMNS
        assert written["new_sha256"].tolist() == derived.ledger()["new_sha256"].tolist()


# -- histories built to exercise each rule -------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> CA:
    return CA.root("sql root").child_ca("sql intermediate")


def _leaf(issuer: CA, index: int, *, key_type: KeyType = KeyType.P256) -> Leaf:
    return issuer.issue_leaf("a.test", key=pooled_key(key_type, index), key_type=key_type)


Served = Sequence[tuple[int, Sequence[Certificate]] | tuple[int, Sequence[Certificate], int, str]]


def _frames(served: Served) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(day, chain[, port, sni]) sightings of a.test."""
    return frames_from_chains(
        (
            "a.test",
            item[2] if len(item) > 2 else 443,
            item[3] if len(item) > 3 else "a.test",
            T0 + timedelta(days=item[0]),
            item[1],
        )
        for item in served
    )


def _check(observations: pd.DataFrame, certificates: pd.DataFrame) -> History:
    derived = History.from_frames(observations, certificates)
    assert_same(derived, observations, certificates)
    return derived


def test_rules_agree(issuer: CA) -> None:
    a, b, c = (_leaf(issuer, i) for i in range(3))
    rsa = _leaf(issuer, 0, key_type=KeyType.RSA2048)
    chain = issuer.record
    histories = {
        "flapping": [(d, [x.record, chain]) for d, x in enumerate([a, b, a, b, b, b, b])],
        "cdn": [(d, [(a if d % 2 else b).record, chain]) for d in range(12)],
        "roll-out": [(d, [x.record, chain]) for d, x in [(0, a), (2, a), (3, b), (3, a), (6, b)]],
        "key types": [(d, [(a if d % 2 else rsa).record, chain]) for d in range(8)],
        "same instant": [(0, [a.record, chain]), (0, [b.record, chain]), (5, [b.record, chain])],
        "seen once": [(0, [a.record, chain]), (1, [a.record, chain]), (2, [b.record, chain])],
        "three in parallel": [(d, [(a, b, c)[d % 3].record, chain]) for d in range(9)],
    }
    for name, served in histories.items():
        derived = _check(*_frames(served))
        assert derived.counts()["hosts"] == 1, name


def test_issuer_key_from_the_first_sighting_that_sent_it(issuer: CA) -> None:
    a, b = _leaf(issuer, 0), _leaf(issuer, 1)
    alone = [(0, [a.record]), (1, [a.record, issuer.record]), (2, [b.record, issuer.record])]
    derived = _check(*_frames(alone))
    sightings = derived.sightings().set_index("leaf")
    assert sightings.loc[a.record.sha256, "issuer_spki"] == issuer.record.spki_sha256_hex
    # The first sighting sent the leaf alone: its "root" is the top certificate's issuer.
    assert sightings.loc[a.record.sha256, "root"] == a.record.issuer


def test_one_host_name_on_several_ports_and_names(issuer: CA) -> None:
    a, b = _leaf(issuer, 0), _leaf(issuer, 1)
    served = [
        *((d, [a.record, issuer.record], 443, "a.test") for d in (0, 1)),
        *((d, [b.record, issuer.record], 443, "a.test") for d in (2, 3)),
        *((d, [a.record, issuer.record], 8443, "a.test") for d in (0, 1, 2, 3)),
        *((d, [b.record, issuer.record], 443, "www.a.test") for d in (0, 3)),
    ]
    derived = _check(*_frames(served))
    summary = derived.host_summary().set_index("host").loc["a.test"]
    assert (summary["leaves"], summary["distinct_keys"], summary["renewals"]) == (2, 2, 1)


def test_leaves_missing_from_certificates(issuer: CA) -> None:
    a, b, c = (_leaf(issuer, i) for i in range(3))
    served = [(d, [(a, b, c)[d // 2].record, issuer.record]) for d in range(6)]
    observations, certificates = _frames(served)
    missing = {b.record.sha256, c.record.sha256}
    derived = _check(observations, certificates[~certificates["sha256"].isin(missing)])
    sightings = derived.sightings()
    assert set(sightings["lineage"]) == {"P-256#0"}  # one succession, whatever the keys
    assert sightings.set_index("leaf").loc[b.record.sha256, "key_label"] == "unknown"
    ledger = derived.ledger()
    assert ledger[["old_sha256", "new_sha256"]].values.tolist() == [
        [a.record.sha256, b.record.sha256],
        [b.record.sha256, c.record.sha256],
    ]
    assert ledger["new_key_type"].isna().all()
    assert ledger["key_type_changed"].isna().all()  # unknown when a side is unknown
    assert not ledger["key_reused"].any()


def _precertificate(issuer: CA, leaf: Leaf) -> Certificate:
    final = leaf.certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(final.subject)
        .issuer_name(final.issuer)
        .public_key(final.public_key())
        .serial_number(final.serial_number)
        .not_valid_before(final.not_valid_before_utc)
        .not_valid_after(final.not_valid_after_utc)
        .add_extension(x509.PrecertPoison(), critical=True)
    )
    return Certificate.from_cryptography(builder.sign(issuer.private_key, hashes.SHA256()))


def test_precertificates(issuer: CA) -> None:
    a, b = _leaf(issuer, 0), _leaf(issuer, 1)
    pre_a, pre_b = _precertificate(issuer, a), _precertificate(issuer, b)
    served = [
        (0, [pre_a, issuer.record]),
        (1, [a.record, issuer.record]),
        (5, [pre_b, issuer.record]),
    ]
    derived = _check(*_frames(served))
    sightings = derived.sightings().set_index("leaf")
    assert pre_a.sha256 not in sightings.index  # its final certificate was served
    assert sightings.loc[pre_b.sha256, "precertificate"]  # alone: kept, flagged
    assert not sightings.loc[a.record.sha256, "precertificate"]


def test_nothing_to_derive(issuer: CA) -> None:
    observations, certificates = _frames([(0, [_leaf(issuer, 0).record, issuer.record])])
    failed = observations.assign(status="timeout", chain=pd.Series([[]], dtype=object))
    derived = _check(failed, certificates)
    assert derived.ledger().empty
    assert derived.sightings().empty


# -- the CA organisation from RFC 4514 strings -------------------------------------------

ISSUERS = {
    "CN=R3,O=Let's Encrypt,C=US": "Let's Encrypt",
    "CN=Example CA,O=Example\\, Inc.,C=US": "Example, Inc.",
    "CN=a\\,O=fake,O=Real Org,C=US": "Real Org",  # an escaped comma is not a separator
    "CN=x+O=Multi\\+Valued,C=DE": "Multi+Valued",
    "CN=y,OU=Unit,O=First,O=Second": "Second",  # the certificate's first O is written last
    "CN=z,O=Back\\\\slash": "Back\\slash",
    "CN=no organisation,C=US": None,
    "OU=only a unit": None,
    "CN=k=v,O=\\#hash\\ ": "#hash ",
}


def test_ca_organisation_python_and_sql_agree() -> None:
    con = duckdb.connect()
    for issuer, expected in ISSUERS.items():
        assert ca_organisation(issuer) == expected, issuer
        row = con.execute(f"SELECT {CA_ORG_SQL} FROM (SELECT ? AS issuer)", [issuer]).fetchone()
        assert row is not None
        assert row[0] == expected, issuer


def test_ca_organisation_matches_the_certificates(real_store: Path) -> None:
    with Store.open(real_store, read_only=True) as store:
        certificates = store.certificates_df()
    for der, issuer in zip(certificates["der"], certificates["issuer"], strict=True):
        parsed = x509.load_der_x509_certificate(bytes(der))
        values = parsed.issuer.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        assert ca_organisation(issuer) == (str(values[0].value) if values else None)
