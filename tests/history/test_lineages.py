"""Lineages are for leaves served at the same time; leaves that follow each other are one.

Histories built with real certificates (:mod:`pinlab.testbed.pki`) where the answer is
known: a key-type and CA migration years apart, an RSA/COMODO-like to P-256 move, a
rollback, a CDN roll-out and a dual RSA+ECDSA host renewing both. Each is derived by the
pandas functions and by DuckDB, and the two must agree table for table.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pinlab import history
from pinlab.history import History
from pinlab.history.rules import assign_lineages, continues, served_until
from pinlab.store import frames_from_chains
from pinlab.testbed.pki import CA, KeyType, Leaf

T0 = datetime(2014, 3, 1, tzinfo=UTC)


def _name(common: str, organisation: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def cas() -> dict[str, CA]:
    comodo = CA.root(_name("COMODO RSA Certification Authority", "COMODO CA Limited"))
    digicert = CA.root(_name("DigiCert Global Root G2", "DigiCert Inc"))
    return {
        "comodo": comodo.child_ca(_name("COMODO RSA Domain Validation CA", "COMODO CA Limited")),
        "digicert": digicert.child_ca(_name("DigiCert TLS RSA SHA256 2020 CA1", "DigiCert Inc")),
    }


def _leaf(ca: CA, key_type: KeyType) -> Leaf:
    return ca.issue_leaf("a.test", key_type=key_type)


def _derive(served: Iterable[tuple[int, Leaf, CA]]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(sightings, ledger, hosts through Python) of a.test serving ``(day, leaf, issuer)``,
    after checking that both derivations agree."""
    observations, certificates = frames_from_chains(
        ("a.test", 443, "a.test", T0 + timedelta(days=day), [leaf.record, ca.record])
        for day, leaf, ca in served
    )
    sightings = history.leaf_sightings(observations, certificates)
    ledger = history.renewal_ledger(observations, certificates, sightings=sightings)
    derived = History.from_frames(observations, certificates)
    pd.testing.assert_frame_equal(derived.sightings(), sightings)
    pd.testing.assert_frame_equal(derived.ledger(), ledger)
    pd.testing.assert_frame_equal(derived.key_lifetimes(), history.key_lifetimes(sightings))
    pd.testing.assert_frame_equal(derived.host_summary(), history.host_summary(ledger, sightings))
    return sightings, ledger, derived.parallel_groups


def _pairs(ledger: pd.DataFrame, *leaves: Leaf) -> list[tuple[int, int]]:
    index = {leaf.record.sha256: i for i, leaf in enumerate(leaves)}
    return [
        (index[o], index[n])
        for o, n in zip(ledger["old_sha256"], ledger["new_sha256"], strict=True)
    ]


def test_rsa_4096_of_one_ca_to_rsa_2048_of_another_years_later(cas: dict[str, CA]) -> None:
    """(a) 2014-2015 on RSA-4096 from one CA; nothing seen for years; 2018 on RSA-2048 from
    another: one renewal, key type, issuer and CA organisation changed."""
    comodo, digicert = cas["comodo"], cas["digicert"]
    old, new = _leaf(comodo, KeyType.RSA4096), _leaf(digicert, KeyType.RSA2048)
    served = [(day, old, comodo) for day in range(0, 420, 60)]
    served += [(day, new, digicert) for day in range(1460, 1800, 60)]
    sightings, ledger, _ = _derive(served)
    assert sightings["lineage"].tolist() == ["RSA-4096#0", "RSA-4096#0"]
    assert len(ledger) == 1
    row = ledger.iloc[0]
    assert _pairs(ledger, old, new) == [(0, 1)]
    assert (row["old_key_size"], row["new_key_size"]) == (4096, 2048)
    assert row["key_type_changed"]
    assert row["issuer_changed"]
    assert row["ca_org_changed"]
    assert (row["old_ca_org"], row["new_ca_org"]) == ("COMODO CA Limited", "DigiCert Inc")
    assert not row["key_reused"]
    assert row["gap_days"] == 1460 - 360


def test_rsa_comodo_to_p256_of_another_ca(cas: dict[str, CA]) -> None:
    """(b) renewed once on RSA at the same CA, then moved to P-256 at another."""
    comodo, digicert = cas["comodo"], cas["digicert"]
    first, second = _leaf(comodo, KeyType.RSA2048), _leaf(comodo, KeyType.RSA2048)
    ecdsa = _leaf(digicert, KeyType.P256)
    served = [(d, first, comodo) for d in (0, 30, 60)] + [(d, second, comodo) for d in (90, 120)]
    served += [(d, ecdsa, digicert) for d in (150, 180, 210)]
    sightings, ledger, parallel = _derive(served)
    assert parallel == 0  # a plain succession: settled in SQL alone
    assert set(sightings["lineage"]) == {"RSA-2048#0"}
    assert _pairs(ledger, first, second, ecdsa) == [(0, 1), (1, 2)]
    assert ledger["key_type_changed"].tolist() == [False, True]
    assert ledger["ca_org_changed"].tolist() == [False, True]
    assert ledger["issuer_changed"].tolist() == [False, True]
    assert ledger["new_key_type"].tolist() == ["RSA", "EC"]


def test_a_rollback_is_not_a_parallel_lineage(cas: dict[str, CA]) -> None:
    """(c) A, then B, then A again briefly (B's roll-out undone), then C: the return of A
    is no renewal and does not make B parallel to A; every renewal follows the flapping
    rule (distinct leaves in order of first sighting)."""
    ca = cas["digicert"]
    a, b, c = (_leaf(ca, KeyType.P256) for _ in range(3))
    served = [(d, a, ca) for d in range(0, 70, 10)] + [(d, b, ca) for d in range(70, 110, 10)]
    served += [(d, a, ca) for d in (110, 120)]  # rolled back, briefly
    _, ledger, parallel = _derive(served)
    assert parallel == 1  # A's span covers B's: the sighting times settle it
    assert _pairs(ledger, a, b) == [(0, 1)]
    served += [(d, c, ca) for d in range(130, 200, 10)]
    sightings, ledger, _ = _derive(served)
    assert set(sightings["lineage"]) == {"P-256#0"}
    assert _pairs(ledger, a, b, c) == [(0, 1), (1, 2)]
    assert not ledger["key_reused"].any()


def test_a_cdn_roll_out_is_one_lineage(cas: dict[str, CA]) -> None:
    """(d) The new leaf reaches the edges over a few days while the old one is still
    served by the others (alternate observations): one renewal, whatever the key type.
    Served together for more than half of the new leaf's span, they are parallel."""
    ca = cas["digicert"]
    old, new = _leaf(ca, KeyType.RSA2048), _leaf(ca, KeyType.P256)
    served = [(d, old, ca) for d in range(0, 100, 5)]
    served += [(d, old if d % 2 else new, ca) for d in range(100, 110)]  # both, 10 days
    served += [(d, new, ca) for d in range(110, 200, 5)]
    sightings, ledger, _ = _derive(served)
    assert set(sightings["lineage"]) == {"RSA-2048#0"}
    assert _pairs(ledger, old, new) == [(0, 1)]
    assert ledger["key_type_changed"].tolist() == [True]
    side_by_side = [(d, old, ca) for d in range(0, 100, 5)]
    side_by_side += [(d, old if d % 2 else new, ca) for d in range(100, 200)]
    sightings, ledger, _ = _derive(side_by_side)
    assert set(sightings["lineage"]) == {"RSA-2048#0", "P-256#0"}
    assert ledger.empty


def test_a_dual_stack_host_renewing_both_keeps_two_lineages(cas: dict[str, CA]) -> None:
    """(e) RSA and ECDSA served side by side; RSA renewed on day 100, ECDSA on day 121.
    The new RSA leaf could take either lineage (the old ECDSA leaf stops soon after it
    appears): it takes the RSA one, so each lineage renews within its key type."""
    ca = cas["digicert"]
    rsa, ecdsa = _leaf(ca, KeyType.RSA2048), _leaf(ca, KeyType.P256)
    rsa2, ecdsa2 = _leaf(ca, KeyType.RSA2048), _leaf(ca, KeyType.P256)
    served = [(d, rsa if d < 100 else rsa2, ca) for d in range(0, 200, 2)]
    served += [(d, ecdsa if d < 121 else ecdsa2, ca) for d in range(1, 200, 2)]
    sightings, ledger, parallel = _derive(served)
    assert parallel == 1
    lineages = sightings.set_index("leaf")["lineage"]
    assert lineages[rsa.record.sha256] == lineages[rsa2.record.sha256] == "RSA-2048#0"
    assert lineages[ecdsa.record.sha256] == lineages[ecdsa2.record.sha256] == "P-256#0"
    assert _pairs(ledger, rsa, ecdsa, rsa2, ecdsa2) == [(0, 2), (1, 3)]
    assert not ledger["key_type_changed"].any()
    assert ledger["lineage"].tolist() == ["RSA-2048#0", "P-256#0"]


# -- the rule itself ---------------------------------------------------------------------


def test_served_until_ignores_a_return_after_the_new_leaf() -> None:
    times = [0, 10, 110, 120]
    assert served_until(times, 100) == 10
    assert served_until(times, 120) == 120
    assert continues(0, served_until(times, 100), 70, 100)  # a rollback: a successor
    assert not continues(0, 120, 70, 100)  # on its whole span alone: parallel


def test_leaves_first_seen_together_take_their_own_key_type_first() -> None:
    """Three lineages (RSA, P-256, P-384) end; an RSA, a P-384 and a P-256 leaf are first
    seen at one instant. Taken one by one, the P-384 leaf first (its digest sorts first)
    would take a lineage another key type needs; matched by key type first, each keeps
    its own."""
    old = [("h", 0, 10, "RSA-2048", [0, 10]), ("h", 0, 10, "P-256", [0, 10])]
    old.append(("h", 0, 11, "P-384", [0, 11]))
    new = [("h", 20, 30, label, [20, 30]) for label in ("P-384", "RSA-2048", "P-256")]
    assert assign_lineages([*old, *new]) == [
        ("RSA-2048", 0), ("P-256", 0), ("P-384", 0), ("P-384", 0), ("RSA-2048", 0),
        ("P-256", 0),
    ]  # fmt: skip
    # Without a lineage of its own key type, a leaf takes the one last served.
    assert assign_lineages([*old, ("h", 20, 30, "Ed25519", [20, 30])])[-1] == ("P-384", 0)
    assert assign_lineages([*old[:2], ("h", 20, 30, "Ed25519", [20, 30])])[-1] == (
        "RSA-2048",
        0,
    )  # a tie: the lineage opened first
