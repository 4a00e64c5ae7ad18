"""What the Merkle tree does not cover: extra_data (precertificates, chains), certificates
that do not parse, and leaf hashes the log does not know. Logs made here, served on
loopback (RFC 6962 ``ct/v1`` and nginx for static-ct-api tiles)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.ct import (
    BackfillOptions,
    BackfillResult,
    DomainFilter,
    LogFetchError,
    LogMisbehaviourError,
    backfill_log,
    backfill_static,
)
from pinlab.ct.entries import encode_extra_data, encode_leaf
from pinlab.ct.registry import CT_TABLES
from pinlab.ct.rows import _header
from pinlab.store import Store
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.ctserver import LogServer, StaticServer
from pinlab.testbed.pki import CA
from tests.ct.conftest import clock, key_pem

T = 1_650_000_000_000
FAST = {"retries": 0, "backoff": 0.0, "timeout": 10.0, "workers": 1}


@pytest.fixture(scope="module")
def pki() -> tuple[CA, CA]:
    root = CA.root("Extra Data Root")
    return root, root.child_ca("Extra Data CA")


def _options(**overrides: Any) -> BackfillOptions:
    return BackfillOptions(**{"batch_size": 4, "commit_size": 4, **FAST, **overrides})


def _count(store: Store, sql: str, params: Sequence[Any] = ()) -> int:
    row = store.connection.execute(sql, list(params)).fetchone()
    assert row is not None
    return int(row[0])


def _flip_outer_tag(der: bytes) -> bytes:
    """The same bytes, but not a SEQUENCE any more: no longer a parsable certificate."""
    return b"\x31" + der[1:]


def _flip_signature(der: bytes) -> bytes:
    """A still well-formed certificate whose signature no longer verifies (the last byte
    of an ECDSA signature's ``s``)."""
    return der[:-1] + bytes([der[-1] ^ 0x01])


def _bad_bit_string(der: bytes) -> bytes:
    """A Certificate of the same TBS whose signatureValue BIT STRING claims 8 unused bits:
    RFC 5280 structure intact, the TBS untouched, cryptography refuses it."""
    _, content, _ = _header(der, 0)
    _, _, tbs_end = _header(der, content)
    _, _, algorithm_end = _header(der, tbs_end)
    _, bits, _ = _header(der, algorithm_end)
    return der[:bits] + b"\x08" + der[bits + 1 :]


def _pairs(ca: CA, count: int) -> LocalLog:
    """``count`` issuances for a.test: precertificate, then final certificate, logged."""
    log = LocalLog()
    for number in range(count):
        issued = log.issue(ca, "a.test", timestamp=T + 10_000 * number)
        log.add_certificate(issued.final, issued.chain, timestamp=T + 10_000 * number + 1)
    return log


@pytest.mark.parametrize("tamper", [_flip_outer_tag, _flip_signature, _bad_bit_string])
def test_a_tampered_precertificate_stops_a_verified_run(
    tmp_path: Path, pki: tuple[CA, CA], tamper: Any
) -> None:
    """RFC 6962 section 3.1: the precertificate in extra_data is outside the tree; only
    its TBS is logged. Changed so it no longer parses (outer tag), the run stops with
    nothing stored; changed outside the TBS only (signature, BIT STRING), the TBS still
    proves it is the logged precertificate, and it is stored (flagged or raw)."""
    log = _pairs(pki[1], 3)
    victim = log.stored[2]
    extra = encode_extra_data(victim.entry.chain, precertificate=tamper(victim.entry.certificate))
    with LogServer(log) as server, Store.open(tmp_path / "s.duckdb") as store:
        server.misbehaviour.entries[2] = (victim.entry.leaf_input, extra)

        def run() -> BackfillResult:
            return backfill_log(
                store, server.url, key=log.key, domains=DomainFilter(["a.test"]),
                options=_options(verify=True, batch_size=8, commit_size=8), clock=clock,
            )  # fmt: skip

        if tamper is _flip_outer_tag:
            with pytest.raises(LogMisbehaviourError, match="does not match the logged TBS"):
                run()
            assert store.counts()["observations"] == 0
            assert store.counts()["scans"] == 0
            return
        result = run()
        assert result.stats.entries == 6
        assert result.stats.observations == 3  # the three issuances, merged with finals
        if tamper is _flip_signature:
            assert result.stats.bad_chains == 1
            assert result.stats.unparsable == 0
        else:
            assert result.stats.unparsable == 1
            assert _count(store, "SELECT count(*) FROM ct_unparsable WHERE entry_index = 2") == 1


def test_a_tampered_precertificate_in_a_data_tile_stops_a_verified_run(
    tmp_path: Path, pki: tuple[CA, CA]
) -> None:
    """The same with static-ct-api: the data tile's pre_certificate is outside the tree."""
    log = _pairs(pki[1], 3)
    tiles = log.write_tiles(tmp_path / "tiles", origin="127.0.0.1/tampered")
    data = tiles / "tile/data/000.p/6"
    precert = log.stored[2].entry.certificate
    body = data.read_bytes()
    assert body.count(precert) == 1
    data.write_bytes(body.replace(precert, _flip_outer_tag(precert)))
    with StaticServer(tiles) as static, Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogMisbehaviourError, match="does not match the logged TBS"):
            backfill_static(
                store, static.url, key=log.key, domains=DomainFilter(["a.test"]),
                options=_options(verify=True, batch_size=256), clock=clock,
            )  # fmt: skip
        assert store.counts()["observations"] == 0


def test_certificates_in_the_tree_that_do_not_parse_are_stored_raw(
    tmp_path: Path, pki: tuple[CA, CA]
) -> None:
    """An x509 entry whose logged certificate cryptography refuses, and a precert entry
    whose precertificate has the logged TBS but a malformed signature: both hashes are in
    the verified tree, so both are kept with their bytes, where they came from, and why."""
    root, ca = pki
    log = LocalLog()
    good = ca.issue_leaf("a.test").der
    broken = ca.issue_leaf("a.test").der[:-1]
    issued = log.issue(ca, "a.test", timestamp=T)  # entry 0: a correct precertificate
    log.add_certificate(good, (ca.der, root.der), timestamp=T + 1)
    log.add_certificate(broken, (ca.der, root.der), timestamp=T + 2)
    odd = _bad_bit_string(LocalLog().issue(ca, "a.test", timestamp=T).precert)
    log.add_precertificate(odd, issued.chain, timestamp=T + 3)
    log.add_certificate(good, (ca.der, root.der), timestamp=T + 4)  # after the last batch
    with LogServer(log) as server, Store.open(tmp_path / "s.duckdb") as store:
        result = backfill_log(
            store, server.url, key=log.key, domains=DomainFilter(["a.test"]),
            options=_options(verify=True, batch_size=2), clock=clock,
        )  # fmt: skip
        assert result.verified
        assert result.stats.unparsable == 2
        again = backfill_log(
            store, server.url, key=log.key, domains=DomainFilter(["a.test"]),
            options=_options(verify=True, batch_size=2, start=0), clock=clock,
        )  # fmt: skip
        assert again.stats.unparsable == 2
        assert _count(store, "SELECT count(*) FROM ct_unparsable") == 2  # read twice, kept once
        rows = store.connection.execute(
            "SELECT u.entry_index, u.entry_type, c.der, c.parse_error, c.subject "
            "FROM ct_unparsable u JOIN certificates c ON c.sha256 = u.sha256 "
            "ORDER BY u.entry_index"
        ).fetchall()
    assert [(index, kind) for index, kind, *_ in rows] == [(2, "x509"), (3, "precert")]
    assert [bytes(der) for _, _, der, _, _ in rows] == [broken, odd]
    assert all(error and subject is None for _, _, _, error, subject in rows)


def test_a_leaf_hash_the_log_does_not_know_is_misbehaviour_not_a_fetch_error(
    tmp_path: Path, pki: tuple[CA, CA]
) -> None:
    """The last entry of a batch replaced by a well-formed entry that is not in the tree:
    get-proof-by-hash (RFC 6962 section 4.5) answers 404 for its hash. That is the log
    serving an entry outside its tree, not a failed fetch to retry."""
    root, ca = pki
    log = LocalLog()
    for number in range(12):
        log.add_certificate(ca.issue_leaf("a.test").der, (ca.der, root.der), timestamp=T + number)
    entry = log.stored[7].entry
    forged = encode_leaf(entry.timestamp + 1, entry.certificate)
    with LogServer(log) as server, Store.open(tmp_path / "s.duckdb") as store:
        server.misbehaviour.entries[7] = (forged, log.stored[7].extra_data)
        with pytest.raises(LogMisbehaviourError, match="does not know the leaf hash") as caught:
            backfill_log(
                store, server.url, key=log.key, domains=None, options=_options(verify=True),
                clock=clock,
            )  # fmt: skip
        assert not isinstance(caught.value, LogFetchError)
        assert "entry 7" in str(caught.value)
        assert "rerun" not in str(caught.value).replace("rerunning will not help", "")
        assert store.connection.execute("SELECT next_index FROM ct_state").fetchone() == (4,)


def test_chains_that_do_not_sign_in_order_are_stored_flagged(
    tmp_path: Path, pki: tuple[CA, CA]
) -> None:
    """Each certificate of extra_data's chain must sign the one before it (RFC 6962
    section 3.1: the chain the log accepted). A flipped byte in the intermediate's
    signature or tag, or a chain out of order, passes every Merkle check: the entry is
    stored with ``chain_error`` set, in the registry and in the observation."""
    root, ca = pki
    log = LocalLog()
    leaves = [ca.issue_leaf(f"h{n}.test").der for n in range(3)]
    log.add_certificate(leaves[0], (ca.der, root.der), timestamp=T)
    log.add_certificate(leaves[1], (_flip_signature(ca.der), root.der), timestamp=T + 1)
    log.add_certificate(leaves[2], (root.der, ca.der), timestamp=T + 2)
    issued = log.issue(ca, "h3.test", timestamp=T + 3)
    log.add_certificate(ca.issue_leaf("h4.test").der, (_flip_outer_tag(ca.der),), timestamp=T + 4)
    extra = encode_extra_data(
        (_flip_signature(ca.der), root.der), precertificate=issued.precert
    )  # the precertificate is fine, its issuer's signature is not
    with LogServer(log) as server, Store.open(tmp_path / "s.duckdb") as store:
        server.misbehaviour.entries[3] = (log.stored[3].entry.leaf_input, extra)
        result = backfill_log(
            store, server.url, key=log.key, domains=None, options=_options(verify=True),
            clock=clock,
        )  # fmt: skip
        assert result.stats.bad_chains == 4
        raw = store.connection.execute(
            "SELECT der, parse_error FROM certificates WHERE parse_error IS NOT NULL"
        ).fetchall()
        flags = dict(
            store.connection.execute("SELECT host, chain_error FROM ct_issuances").fetchall()
        )
        extras = dict(
            store.connection.execute("SELECT host, source_extra FROM observations").fetchall()
        )
    assert flags["h0.test"] is None
    assert "certificate 1 of the chain" in flags["h1.test"]
    assert "certificate 0 of the chain" in flags["h2.test"]
    assert "certificate 1 of the chain" in flags["h3.test"]
    assert "certificate 0 of the chain" in flags["h4.test"]
    assert [bytes(der) for der, _ in raw] == [_flip_outer_tag(ca.der)]  # kept as bytes
    assert "chain_error" not in json.loads(extras["h0.test"])
    assert json.loads(extras["h2.test"])["chain_error"] == flags["h2.test"]


def _nameless(ca: CA) -> bytes:
    """A certificate with neither SAN nor subject CN (only an organisation)."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "No Names Ltd")])
    certificate = ca.issue(name, ca.private_key.public_key(), is_ca=False)
    return certificate.public_bytes(serialization.Encoding.DER)


def test_certificates_without_names_are_counted_and_reported(
    tmp_path: Path, pki: tuple[CA, CA]
) -> None:
    root, ca = pki
    log = LocalLog()
    log.add_certificate(ca.issue_leaf("named.test").der, (ca.der, root.der), timestamp=T)
    log.add_certificate(_nameless(ca), (ca.der, root.der), timestamp=T + 1)
    log.add_certificate(_nameless(ca), (ca.der, root.der), timestamp=T + 2)
    key = tmp_path / "log.pem"
    key.write_bytes(key_pem(log))
    with LogServer(log) as server:
        with Store.open(tmp_path / "s.duckdb") as store:
            result = backfill_log(
                store, server.url, key=log.key, domains=None, options=_options(), clock=clock
            )
            assert (result.stats.nameless, result.stats.observations) == (2, 1)
        output = CliRunner().invoke(
            app, ["ct", "log", server.url, "--db", str(tmp_path / "cli.duckdb"),
                  "--public-key", str(key), "--verify"],
        ).output  # fmt: skip
    assert re.search(r"without SAN or CN \(not stored\)\W+2\b", output), output


def test_a_store_written_before_the_chain_flag_is_extended_and_read(
    tmp_path: Path, pki: tuple[CA, CA]
) -> None:
    """ct_issuances as pinlab wrote it before ``chain_error``: the column is added, the
    old rows read it as null, the new run writes it."""
    old = CT_TABLES["ct_issuances"].replace(", chain_error VARCHAR", "")
    assert "chain_error" not in old
    log = _pairs(pki[1], 2)
    with Store.open(tmp_path / "s.duckdb") as store:
        store.connection.execute(old)
        store.connection.execute(
            "INSERT INTO ct_issuances (key64, issuance, host, observed_at, scan_id) "
            "VALUES (1, 'old', 'old.test', now(), 'old-scan')"
        )
    with LogServer(log) as server, Store.open(tmp_path / "s.duckdb") as store:
        result = backfill_log(
            store, server.url, key=log.key, domains=None, options=_options(), clock=clock
        )
        assert result.stats.observations == 2
        rows = store.connection.execute(
            "SELECT host, chain_error FROM ct_issuances ORDER BY host"
        ).fetchall()
    assert rows == [("a.test", None), ("a.test", None), ("old.test", None)]
