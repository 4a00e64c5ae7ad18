"""Precertificates issued through a Precertificate Signing Certificate (RFC 6962 section
3.1), read from a log and from crt.sh: the issuer and authority key identifier rewrite of
section 3.2 must make the precertificate and its final certificate one issuance."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from pinlab.ct import BackfillOptions, DomainFilter, LogMisbehaviourError, backfill_log
from pinlab.ct.crtsh import CrtShRecord, import_crtsh
from pinlab.ct.entries import encode_extra_data
from pinlab.ct.rows import (
    AKI_OID,
    POISON_OID,
    SCT_LIST_OID,
    _header,
    issuer_and_aki,
    rewrite_issuer,
    strip_extension,
    tbs_of,
)
from pinlab.store import Store
from pinlab.testbed.ctlog import Issued, LocalLog
from pinlab.testbed.ctserver import LogServer
from pinlab.testbed.pki import CA
from tests.ct.conftest import clock

T = 1_660_000_000_000


@pytest.fixture(scope="module")
def signed() -> tuple[CA, CA, LocalLog, Issued]:
    """A log holding a precertificate by a signing certificate and its final certificate."""
    root = CA.root("Signing Root")
    ca = root.child_ca("Signing CA")
    log = LocalLog()
    signer = log.precert_signer(ca)
    issued = log.issue(ca, "s.test", timestamp=T, signer=signer)
    log.add_certificate(issued.final, issued.chain, timestamp=T + 1000)
    return ca, signer, log, issued


def _fast() -> dict[str, Any]:
    return {"retries": 0, "backoff": 0.0, "timeout": 10.0, "workers": 1, "batch_size": 4}


def _with_tbs(der: bytes, tbs: bytes) -> x509.Certificate:
    """``der`` with its TBS replaced, so cryptography can read the TBS's fields."""
    _, content, _ = _header(der, 0)
    _, _, tbs_end = _header(der, content)
    body = tbs + der[tbs_end:]
    assert 256 <= len(body) < 65536  # DER: the two-byte long form, no other
    return x509.load_der_x509_certificate(b"\x30\x82" + len(body).to_bytes(2, "big") + body)


def test_the_rewrite_is_rfc_6962_section_3_2(signed: tuple[CA, CA, LocalLog, Issued]) -> None:
    """Issuer becomes the signing certificate's issuer, the authority key identifier its
    authority key identifier; everything else stays; then it is the final certificate's
    TBS without the SCT list (section 3.1)."""
    ca, signer, log, issued = signed
    precert = x509.load_der_x509_certificate(issued.precert)
    assert precert.issuer == signer.certificate.subject != ca.certificate.subject
    stripped = strip_extension(tbs_of(issued.precert), POISON_OID)
    rewritten = rewrite_issuer(stripped, *issuer_and_aki(signer.der))
    final_tbs = strip_extension(tbs_of(issued.final), SCT_LIST_OID)
    assert rewritten == final_tbs == log.stored[0].entry.tbs
    view = _with_tbs(issued.precert, rewritten)
    assert view.issuer == ca.certificate.subject
    aki = view.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier
        == x509.SubjectKeyIdentifier.from_public_key(ca.certificate.public_key()).digest
    )
    # A signing certificate without an AKI removes it; a precertificate without one gets it.
    issuer = issuer_and_aki(signer.der)[0]
    without = rewrite_issuer(stripped, issuer, None)
    assert AKI_OID not in without
    added = rewrite_issuer(without, issuer, issuer_and_aki(signer.der)[1])
    assert (
        _with_tbs(issued.precert, added)
        .extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        .value
        == aki
    )


def test_a_log_merges_the_precertificate_with_its_final_certificate(
    tmp_path: Path, signed: tuple[CA, CA, LocalLog, Issued]
) -> None:
    _, _, log, _ = signed
    with LogServer(log) as server, Store.open(tmp_path / "s.duckdb") as store:
        result = backfill_log(
            store, server.url, key=log.key, domains=DomainFilter(["s.test"]),
            options=BackfillOptions(**{**_fast(), "verify": True}), clock=clock,
        )  # fmt: skip
        stats = result.stats
        assert (stats.observations, stats.merged, stats.bad_chains) == (1, 1, 0)


def test_a_precertificate_of_another_signing_certificate_is_tampering(
    tmp_path: Path, signed: tuple[CA, CA, LocalLog, Issued]
) -> None:
    """extra_data's precertificate re-signed by another signing certificate of another
    CA: the rewrite gives another issuer, so not the logged TBS."""
    _, _, log, _ = signed
    other_ca = CA.root("Other Root").child_ca("Other CA")
    other_signer = LocalLog.precert_signer(other_ca)
    other = LocalLog().issue(other_ca, "s.test", timestamp=T, signer=other_signer)
    entry = log.stored[0].entry
    extra = encode_extra_data((other_signer.der, *entry.chain[1:]), precertificate=other.precert)
    with LogServer(log) as server, Store.open(tmp_path / "s.duckdb") as store:
        server.misbehaviour.entries[0] = (entry.leaf_input, extra)
        with pytest.raises(LogMisbehaviourError, match="does not match the logged TBS"):
            backfill_log(
                store, server.url, key=None, domains=None, options=BackfillOptions(**_fast()),
                clock=clock,
            )  # fmt: skip


def _record(record_id: int, der: bytes, at: int) -> CrtShRecord:
    parsed = x509.load_der_x509_certificate(der)
    return CrtShRecord(
        id=record_id,
        entry_timestamp=datetime.fromtimestamp(at / 1000, tz=UTC),
        not_before=parsed.not_valid_before_utc,
        issuer_name=parsed.issuer.rfc4514_string(),
        name_value="s.test",
        serial_number=format(parsed.serial_number, "x"),
    )


def test_crtsh_pairs_a_signing_certificate_precertificate_with_its_final_certificate(
    tmp_path: Path, signed: tuple[CA, CA, LocalLog, Issued]
) -> None:
    """crt.sh gives the precertificate without its chain; the final certificate of the
    same import stands in for the signing certificate's issuer and AKI (section 3.2), so
    the two are one issuance, the same one a log backfill records."""
    _, _, log, issued = signed
    certificates = {1: issued.precert, 2: issued.final}
    records = [_record(1, issued.precert, T), _record(2, issued.final, T + 1000)]
    with Store.open(tmp_path / "crtsh.duckdb") as store:
        result = import_crtsh(
            store, records, certificate=certificates.__getitem__,
            domains=DomainFilter(["s.test"]), source="s.test", clock=clock,
        )  # fmt: skip
        assert (result.stats.observations, result.stats.merged) == (1, 1)
        leaf = store.connection.execute("SELECT chain[1] FROM observations").fetchone()
    assert leaf == (hashlib.sha256(issued.final).hexdigest(),)
    with LogServer(log) as server, Store.open(tmp_path / "both.duckdb") as store:
        backfill_log(
            store, server.url, key=log.key, domains=DomainFilter(["s.test"]),
            options=BackfillOptions(**_fast()), clock=clock,
        )  # fmt: skip
        again = import_crtsh(
            store, records, certificate=certificates.__getitem__,
            domains=DomainFilter(["s.test"]), source="s.test", clock=clock,
        )  # fmt: skip
        assert (again.stats.observations, again.stats.duplicates) == (0, 1)
