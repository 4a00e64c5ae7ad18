"""The renewal ledger on real histories and on histories built to a known answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pinlab import history
from pinlab.collect import import_pem
from pinlab.store import Store, frames_from_chains
from pinlab.testbed.pki import CA, KeyType, Leaf

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, pd.DataFrame]:
    path = tmp_path_factory.mktemp("store") / "real.duckdb"
    with Store.open(path) as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
        observations, certificates = store.observations_df(), store.certificates_df()
    sightings = history.leaf_sightings(observations, certificates)
    ledger = history.renewal_ledger(observations, certificates, sightings=sightings)
    return {"sightings": sightings, "ledger": ledger}


def test_lencr_leaves_in_order_with_fresh_keys(real: dict[str, pd.DataFrame]) -> None:
    ledger = real["ledger"]
    lencr = ledger[ledger["host"] == "lencr.org"]
    assert len(lencr) == 13  # 14 leaves, one lineage
    assert lencr["new_first_seen"].is_monotonic_increasing
    assert not lencr["key_reused"].any()
    assert not lencr["key_seen_before"].any()
    issuers = {name.split(",")[0] for name in lencr["new_issuer"]}
    assert {"CN=E5", "CN=E6", "CN=E7", "CN=E8"} <= issuers
    assert lencr["issuer_changed"].sum() >= 4
    assert not lencr["ca_org_changed"].fillna(False).any()  # always Let's Encrypt


def test_badssl_keeps_its_key_across_ca_changes(real: dict[str, pd.DataFrame]) -> None:
    ledger = real["ledger"]
    badssl = ledger[ledger["host"] == "badssl.com"]
    kept_across_ca = badssl[badssl["key_reused"] & badssl["ca_org_changed"].fillna(False)]
    assert len(kept_across_ca) >= 1
    orgs = set(kept_across_ca["old_ca_org"]) | set(kept_across_ca["new_ca_org"])
    assert any("COMODO" in org for org in orgs)
    assert any("DigiCert" in org for org in orgs)


def test_badssl_changes_key_type_and_ca_between_renewals(real: dict[str, pd.DataFrame]) -> None:
    """badssl.com (the chromium/badssl.com repository's certificates, 2015-2022) moved from
    RSA-2048 leaves of COMODO to RSA-4096, RSA-8192, P-384 and P-256 leaves of DigiCert.
    Leaves that follow each other are one lineage whatever their key type; only the leaves
    first served together (up to four at once, 2017-04-13 and 2020-03-23) are parallel."""
    ledger, sightings = real["ledger"], real["sightings"]
    badssl = ledger[ledger["host"] == "badssl.com"]
    leaves = sightings[sightings["host"] == "badssl.com"]
    assert len(leaves) == 23
    assert leaves["lineage"].nunique() == 4
    assert len(badssl) == 23 - 4
    assert badssl["key_type_changed"].sum() == 8
    assert set(badssl["new_key_size"][badssl["key_type_changed"]]) == {384, 2048, 4096, 8192}
    # The COMODO RSA-2048 leaf of June 2017, renewed ten months later as DigiCert RSA-4096.
    move = badssl[badssl["old_sha256"].str.startswith("ba105ce0")].iloc[0]
    assert move["new_sha256"].startswith("19370895")
    assert (move["old_key_size"], move["new_key_size"]) == (2048, 4096)
    assert move["key_type_changed"]
    assert move["issuer_changed"]
    assert move["ca_org_changed"]
    assert not move["key_reused"]
    assert (move["new_first_seen"] - move["old_last_seen"]).days == 296
    assert "COMODO" in move["old_ca_org"]
    assert "DigiCert" in move["new_ca_org"]
    # Every other host kept one key type: no change flagged there.
    others = ledger[ledger["host"] != "badssl.com"]
    assert not others["key_type_changed"].any()
    assert (others["old_key_type"] == others["new_key_type"]).all()


def test_summaries_are_tidy(real: dict[str, pd.DataFrame]) -> None:
    per_host = history.host_summary(real["ledger"], real["sightings"])
    assert per_host["host"].is_unique
    assert len(per_host) == 18
    lencr = per_host.set_index("host").loc["lencr.org"]
    assert lencr["renewals"] == 13
    assert lencr["key_reuse_rate"] == 0
    assert lencr["distinct_keys"] == 14
    population = history.population_summary(real["ledger"], real["sightings"])
    assert population.loc[0, "hosts"] == 18
    lifetimes = history.key_lifetimes(real["sightings"])
    assert {"duration", "observed"} <= set(lifetimes.columns)
    assert lifetimes["observed"].any()
    assert not lifetimes["observed"].all()


# -- histories built to a known answer --------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> CA:
    return CA.root("ledger root").child_ca("ledger intermediate")


def _leaf(issuer: CA, index: int, *, key_type: KeyType = KeyType.P256) -> Leaf:
    from pinlab.testbed.pki import pooled_key

    return issuer.issue_leaf("a.test", key=pooled_key(key_type, index), key_type=key_type)


def _frames(issuer: CA, served: Sequence[tuple[int, Leaf]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Observations of a.test: (day, leaf) pairs; the chain is leaf + intermediate."""
    return frames_from_chains(
        ("a.test", 443, "a.test", T0 + timedelta(days=day), [leaf.record, issuer.record])
        for day, leaf in served
    )


def test_flapping_back_is_not_a_renewal(issuer: CA) -> None:
    a, b = _leaf(issuer, 0), _leaf(issuer, 1)
    served = [(0, a), (10, b), (20, a), (30, b), (40, b), (50, b), (60, b)]
    ledger = history.renewal_ledger(*_frames(issuer, served))
    assert len(ledger) == 1
    assert ledger.loc[0, "old_sha256"] == a.record.sha256


def test_parallel_leaves_of_a_cdn_are_not_renewals(issuer: CA) -> None:
    a, b = _leaf(issuer, 0), _leaf(issuer, 1)
    served = [(day, a if day % 2 else b) for day in range(12)]
    assert history.renewal_ledger(*_frames(issuer, served)).empty


def test_roll_out_overlap_is_one_renewal(issuer: CA) -> None:
    a, b = _leaf(issuer, 0), _leaf(issuer, 1)
    served = [(0, a), (1, a), (2, a), (3, b), (3, a), (4, b), (5, b), (6, b)]
    ledger = history.renewal_ledger(*_frames(issuer, served))
    assert len(ledger) == 1
    assert not ledger.loc[0, "key_reused"]


def test_key_reuse_and_seen_before(issuer: CA) -> None:
    a = _leaf(issuer, 0)
    a_again = _leaf(issuer, 0)  # same key, new certificate
    b = _leaf(issuer, 1)
    a_later = _leaf(issuer, 0)
    ledger = history.renewal_ledger(
        *_frames(issuer, [(0, a), (90, a_again), (180, b), (270, a_later)])
    )
    assert ledger["key_reused"].tolist() == [True, False, False]
    assert ledger["key_seen_before"].tolist() == [True, False, True]
    assert not ledger["issuer_changed"].any()
    assert ledger["gap_days"].tolist() == [90, 90, 90]


def test_seen_once_is_flagged(issuer: CA) -> None:
    a, b = _leaf(issuer, 0), _leaf(issuer, 1)
    observations, certificates = _frames(issuer, [(0, a), (1, a), (2, b)])
    sightings = history.leaf_sightings(observations, certificates)
    assert sightings.set_index("leaf").loc[b.record.sha256, "seen_once"]
    assert not sightings.set_index("leaf").loc[a.record.sha256, "seen_once"]


def test_failed_observations_are_ignored(issuer: CA) -> None:
    a = _leaf(issuer, 0)
    observations, certificates = _frames(issuer, [(0, a)])
    failed = observations.assign(status="timeout", chain=[[]])
    ledger = history.renewal_ledger(pd.concat([observations, failed]), certificates)
    assert ledger.empty


def test_validity_over_time_shows_the_shortening(real: dict[str, pd.DataFrame]) -> None:
    by_year = history.validity_over_time(real["sightings"], period="Y")
    assert list(by_year.columns) == [
        "period_start",
        "leaves",
        "min_days",
        "median_days",
        "max_days",
    ]
    assert by_year["leaves"].sum() == real["sightings"]["leaf"].nunique()
    assert by_year["period_start"].is_monotonic_increasing
    # badssl.com's two-year certificates of 2015-2017 against lencr.org's 90 days since 2023.
    early = by_year[by_year["period_start"].dt.year <= 2017]
    late = by_year[by_year["period_start"].dt.year >= 2024]
    assert early["max_days"].max() > 700
    assert late["min_days"].min() < 100
    assert history.validity_over_time(real["sightings"].iloc[0:0]).empty
