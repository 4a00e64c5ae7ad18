"""Ledger analyses from the literature, on histories built to a known answer and on the
real histories of ../shared/data (figures checked by hand against the ledger)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pinlab import history
from pinlab.certs import Certificate
from pinlab.collect import import_pem
from pinlab.store import Store, frames_from_chains
from pinlab.testbed.pki import CA, KeyType, Leaf, pooled_key

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _day(day: float) -> datetime:
    return T0 + timedelta(days=day)


def _name(org: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@pytest.fixture(scope="module")
def alpha() -> CA:
    return CA.root(_name("Alpha CA", "Alpha Root")).child_ca(_name("Alpha CA", "Alpha Issuing"))


@pytest.fixture(scope="module")
def beta() -> CA:
    return CA.root(_name("Beta CA", "Beta Root")).child_ca(_name("Beta CA", "Beta Issuing"))


def _leaf(issuer: CA, host: str, issued: float, key: int, key_type: KeyType = KeyType.P256) -> Leaf:
    return issuer.issue_leaf(
        host,
        key=pooled_key(key_type, key),
        not_before=_day(issued),
        not_after=_day(issued + 90),
    )


Served = Sequence[tuple[str, float, Leaf]]  # (host, day seen, leaf)


def _tables(served: Served) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sightings, ledger) of hosts that served each leaf with its intermediate."""
    observations, certificates = frames_from_chains(
        (host, 443, host, _day(day), [leaf.record, leaf.issuer.record])
        for host, day, leaf in served
    )
    sightings = history.leaf_sightings(observations, certificates)
    return sightings, history.renewal_ledger(observations, certificates, sightings=sightings)


def _renewing(issuer: CA, host: str, issue_days: Sequence[float], *, first_key: int) -> Served:
    """A host serving a new leaf (new key) issued on each day, seen the day after."""
    return [
        (host, day + 1, _leaf(issuer, host, day, first_key + i)) for i, day in enumerate(issue_days)
    ]


# -- Wilson interval ---------------------------------------------------------------------


def test_wilson_interval_matches_textbook_values() -> None:
    # Newcombe (Stat. Med. 1998), table I: 0/10 and 5/10, and 2/3 by the formula by hand.
    assert history.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert history.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert history.wilson_interval(2, 3) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert history.wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(bound) for bound in history.wilson_interval(0, 0))
    with pytest.raises(history.AnalysisInputError):
        history.wilson_interval(4, 3)


# -- renewal-schedule regularity ---------------------------------------------------------


def test_regularity_tells_a_schedule_from_jitter(alpha: CA) -> None:
    served = [
        *_renewing(alpha, "every60.test", [0, 60, 120, 180, 240], first_key=0),
        *_renewing(alpha, "jitter.test", [0, 40, 115, 167, 247, 292], first_key=10),
        # every 60 days, but the sample missed the leaf of day 120: one 120-day interval
        *_renewing(alpha, "sparse.test", [0, 60, 180, 240, 300], first_key=20),
        *_renewing(alpha, "few.test", [0, 60, 120], first_key=30),
    ]
    _, ledger = _tables(served)
    per_host = history.renewal_regularity(ledger).set_index("host")
    every60 = per_host.loc["every60.test"]
    assert (every60["renewals"], every60["median_interval_days"]) == (4, 60)
    assert every60["cv"] == 0
    assert every60["regular"]
    jitter = per_host.loc["jitter.test"]  # intervals 40, 75, 52, 80, 45: median 52
    assert jitter["median_interval_days"] == 52
    assert jitter["on_schedule"] == pytest.approx(1 / 5)
    assert not jitter["regular"]
    sparse = per_host.loc["sparse.test"]
    assert sparse["cv"] > 0.3  # the CV would call it irregular
    assert sparse["regular"]
    assert pd.isna(per_host.loc["few.test", "regular"])  # 2 renewals: too few to judge

    summary = history.regularity_summary(per_host.reset_index()).iloc[0]
    assert (summary["hosts"], summary["hosts_judged"], summary["regular"]) == (4, 3, 2)
    assert summary["share_regular"] == pytest.approx(2 / 3)
    assert (summary["ci_lower"], summary["ci_upper"]) == pytest.approx((0.2077, 0.9385), abs=1e-4)


def test_regularity_of_nothing_is_empty() -> None:
    empty = history.renewal_regularity(pd.DataFrame(columns=history.LEDGER_COLUMNS))
    assert empty.empty
    summary = history.regularity_summary(empty).iloc[0]
    assert summary["hosts_judged"] == 0
    assert math.isnan(summary["share_regular"])


# -- key reuse per CA --------------------------------------------------------------------


def test_key_reuse_counts_per_ca(alpha: CA, beta: CA) -> None:
    served = [
        # x.test at Alpha: keys 0, 0, 0, 1 -> 3 renewals, 2 reuses
        *[
            ("x.test", d, _leaf(alpha, "x.test", d - 1, k))
            for d, k in [(1, 0), (61, 0), (121, 0), (181, 1)]
        ],
        # y.test at Beta: keys 2, 3, 4 -> 2 renewals, no reuse
        *[("y.test", d, _leaf(beta, "y.test", d - 1, k)) for d, k in [(1, 2), (61, 3), (121, 4)]],
        # z.test moves from Alpha to Beta keeping key 5: one reuse, counted under Beta
        ("z.test", 1, _leaf(alpha, "z.test", 0, 5)),
        ("z.test", 61, _leaf(beta, "z.test", 60, 5)),
    ]
    _, ledger = _tables(served)
    reuse = history.key_reuse_by_ca(ledger).set_index("ca")
    assert list(reuse.index) == ["Alpha CA", "Beta CA"]  # 3 renewals each, then by name
    assert reuse.loc["Alpha CA", ["hosts", "renewals", "key_reuses"]].tolist() == [1, 3, 2]
    assert reuse.loc["Beta CA", ["hosts", "renewals", "key_reuses"]].tolist() == [2, 3, 1]
    assert reuse.loc["Beta CA", "share"] == pytest.approx(1 / 3)
    lower, upper = history.wilson_interval(1, 3)
    assert reuse.loc["Beta CA", ["ci_lower", "ci_upper"]].tolist() == [lower, upper]
    assert history.key_reuse_by_ca(ledger.iloc[0:0]).empty


# -- key-type migrations -----------------------------------------------------------------


def test_rsa_to_p256_migration(alpha: CA) -> None:
    served = [
        ("m.test", 1, _leaf(alpha, "m.test", 0, 0, KeyType.RSA2048)),
        ("m.test", 61, _leaf(alpha, "m.test", 60, 40)),
        ("m.test", 121, _leaf(alpha, "m.test", 120, 41)),
        *_renewing(alpha, "p.test", [0, 60], first_key=42),
    ]
    sightings, ledger = _tables(served)
    assert ledger["key_type_changed"].sum() == 1
    moves = history.key_type_migrations(ledger, sightings)
    assert moves.to_dict("records") == [
        {"old_key": "RSA-2048", "new_key": "P-256", "renewals": 1, "hosts": 1,
         "host_names": "m.test"},
    ]  # fmt: skip
    every = history.key_type_migrations(ledger, sightings, changes_only=False)
    same = every[(every["old_key"] == "P-256") & (every["new_key"] == "P-256")].iloc[0]
    assert (same["renewals"], same["hosts"], same["host_names"]) == (2, 2, "m.test, p.test")
    assert history.key_type_migrations(ledger.iloc[0:0], sightings).empty


# -- time to rotate after a CA event -----------------------------------------------------


def test_host_rotates_12_days_after_an_intermediate_is_retired(alpha: CA) -> None:
    root = alpha.parent
    assert root is not None
    old, new = alpha, root.child_ca(_name("Alpha CA", "Alpha Issuing 2"))
    served = [
        # r.test: on the old intermediate until day 105, a leaf of the new one from day 112
        ("r.test", 1, _leaf(old, "r.test", 0, 0)),
        ("r.test", 61, b := _leaf(old, "r.test", 60, 1)),
        ("r.test", 90, b), ("r.test", 105, b),
        ("r.test", 112, _leaf(new, "r.test", 110, 2)),
        ("s.test", 1, c := _leaf(old, "s.test", 0, 3)), ("s.test", 150, c),  # never moves
        ("u.test", 1, d := _leaf(new, "u.test", 0, 4)), ("u.test", 150, d),  # not affected
        ("v.test", 1, _leaf(old, "v.test", 0, 5)),  # last seen before the event: unknown
        ("w.test", 120, _leaf(old, "w.test", 119, 6)),  # first seen after, still on old
        ("w.test", 130, _leaf(new, "w.test", 128, 7)),
    ]  # fmt: skip
    sightings, _ = _tables(served)
    events = pd.DataFrame(
        [{"event": "Alpha Issuing retired", "at": _day(100), "issuer": old.subject}]
    )
    rotations = history.rotation_after_events(sightings, events).set_index("host")
    assert sorted(rotations.index) == ["r.test", "s.test", "w.test"]
    r = rotations.loc["r.test"]
    assert r["rotated"]
    assert r["seen_at_event"]
    assert r["days"] == 12
    assert r["lower_days"] == 5  # still served the old intermediate on day 105
    assert r["issued_days"] == 10
    assert r["new_issuer"] == new.subject
    s = rotations.loc["s.test"]
    assert not s["rotated"]
    assert s["days"] == 50  # censored at its last sighting
    assert math.isnan(s["issued_days"])
    w = rotations.loc["w.test"]
    assert not w["seen_at_event"]
    assert (w["rotated"], w["days"]) == (True, 30)
    strict = history.rotation_after_events(sightings, events, include_later_entries=False)
    assert sorted(strict["host"]) == ["r.test", "s.test"]
    summary = history.rotation_summary(rotations.reset_index()).iloc[0]
    assert (summary["lineages"], summary["rotated"], summary["censored"]) == (3, 2, 1)
    assert (summary["median_days_rotated"], summary["max_days_censored"]) == (21, 50)
    with pytest.raises(history.AnalysisInputError):
        history.rotation_after_events(sightings, events[["event", "at"]])


def test_le_events_come_from_the_certificates(le_hierarchy: list[Certificate]) -> None:
    events = history.le_ca_events(le_hierarchy).set_index("event")
    dst = events.loc["root DST Root CA X3 expired"]
    assert dst["at"] == pd.Timestamp("2021-09-30T14:01:15Z")
    assert dst["root"] == "CN=DST Root CA X3,O=Digital Signature Trust Co."
    r3 = events.loc["R3 superseded by R10/R11"]
    assert r3["at"] == pd.Timestamp("2024-03-13T00:00:00Z")  # R10's and R11's notBefore
    assert r3["issuer"] == "CN=R3,O=Let's Encrypt,C=US"
    assert events.loc["R3 expired", "at"] == pd.Timestamp("2025-09-15T16:00:00Z")
    assert not any("STAGING" in name or "Fake" in name for name in events.index)
    until = history.le_ca_events(le_hierarchy, until=datetime(2026, 6, 1, tzinfo=UTC))
    assert until["at"].max() <= pd.Timestamp("2026-06-01T00:00:00Z")


# -- the real histories ------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, pd.DataFrame]:
    path = tmp_path_factory.mktemp("store") / "real.duckdb"
    with Store.open(path) as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
        observations, certificates = store.observations_df(), store.certificates_df()
    derived = history.History.from_frames(observations, certificates)
    return {"sightings": derived.sightings(), "ledger": derived.ledger()}


def test_real_histories_hand_checked(
    real: dict[str, pd.DataFrame], le_hierarchy: list[Certificate]
) -> None:
    ledger, sightings = real["ledger"], real["sightings"]
    # lencr.org renews every 60 days (11 of 13 intervals are 60 d or 120 d, a missed leaf);
    # agilebits.com (335, 128, 208, 336 d) and badssl.com (parallel leaves, 2015-2022) do
    # not; the 6 other renewing hosts have 1 or 2 renewals.
    regularity = history.renewal_regularity(ledger).set_index("host")
    assert regularity.loc["lencr.org", "renewals"] == 13
    assert regularity.loc["lencr.org", "median_interval_days"] == pytest.approx(59.97, abs=0.01)
    assert regularity.loc["lencr.org", "on_schedule"] == pytest.approx(11 / 13)
    assert regularity["regular"].dropna().to_dict() == {
        "agilebits.com": False, "badssl.com": False, "lencr.org": True,
    }  # fmt: skip
    summary = history.regularity_summary(regularity.reset_index()).iloc[0]
    assert (summary["hosts"], summary["hosts_judged"], summary["regular"]) == (9, 3, 1)
    assert (summary["ci_lower"], summary["ci_upper"]) == pytest.approx((0.0615, 0.7923), abs=1e-4)

    reuse = history.key_reuse_by_ca(ledger).set_index("ca")
    assert reuse[["renewals", "key_reuses"]].to_dict("index") == {
        "DigiCert Inc": {"renewals": 21, "key_reuses": 11},
        "Let's Encrypt": {"renewals": 13, "key_reuses": 0},
        "Amazon": {"renewals": 7, "key_reuses": 0},
        "COMODO CA Limited": {"renewals": 3, "key_reuses": 3},
    }
    assert reuse["renewals"].sum() == len(ledger) == 44

    moves = history.key_type_migrations(ledger, sightings)
    assert moves["renewals"].sum() == ledger["key_type_changed"].sum() == 8
    assert set(moves["host_names"]) == {"badssl.com"}
    assert {("RSA-2048", "RSA-4096"), ("RSA-8192", "P-384"), ("P-256", "RSA-2048")} <= set(
        zip(moves["old_key"], moves["new_key"], strict=True)
    )

    events = history.le_ca_events(le_hierarchy, until=datetime(2026, 6, 1, tzinfo=UTC))
    rotations = history.rotation_after_events(sightings, events).set_index("event")
    assert set(rotations["host"]) == {"lencr.org"}
    # R3 superseded on 2024-03-13: lencr.org still served R3 on 2024-04-27 (day 45.8) and
    # an E6 leaf issued 2024-06-10 (day 89.7) from 2024-07-13 19:35 (day 122.8).
    r3 = rotations.loc["R3 superseded by R10/R11"]
    assert r3["seen_at_event"]
    assert r3["rotated"]
    assert (r3["lower_days"], r3["issued_days"], r3["days"]) == pytest.approx(
        (45.77, 89.72, 122.82), abs=0.01
    )
    # DST Root CA X3 expired 2021-09-30; lencr.org, first seen 2023-09-13, still sent the
    # chain to it until 2024-04-27, and an E6 chain from 2024-07-13 (1,017 days after).
    dst = rotations.loc["root DST Root CA X3 expired"]
    assert not dst["seen_at_event"]
    assert dst["days"] == pytest.approx(1017.23, abs=0.01)


def test_both_engines_give_the_same_analyses(
    real: dict[str, pd.DataFrame], shared_data: Path, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "real.duckdb") as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
        observations, certificates = store.observations_df(), store.certificates_df()
    sightings = history.leaf_sightings(observations, certificates)
    ledger = history.renewal_ledger(observations, certificates, sightings=sightings)
    pd.testing.assert_frame_equal(
        history.renewal_regularity(ledger), history.renewal_regularity(real["ledger"])
    )
    pd.testing.assert_frame_equal(
        history.key_reuse_by_ca(ledger), history.key_reuse_by_ca(real["ledger"])
    )
    pd.testing.assert_frame_equal(
        history.key_type_migrations(ledger, sightings),
        history.key_type_migrations(real["ledger"], real["sightings"]),
    )
