"""Recommendation: strategies ranked by protection among those that survive a host's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import pytest
from typer.testing import CliRunner

from pinlab.advice.recommend import (
    PROTECTION,
    RECOMMENDATION_COLUMNS,
    NoHistoryError,
    catalog_from_frames,
    host_chains,
    recommend,
)
from pinlab.cli import app
from pinlab.store import ChainSighting, Store, frames_from_chains
from pinlab.survival import STRATEGIES, ObservedChain, observed_chains
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore

T0 = datetime(2023, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history() -> list[ObservedChain]:
    """Three hosts over two years, a renewal every 90 days.

    ``reuse.test`` keeps its key; ``fresh.test`` takes a fresh one under one intermediate;
    ``rotate.test`` takes a fresh key and alternates between two intermediates.
    """
    root = CA.root("recommend root")
    first, second = root.child_ca("issuer one"), root.child_ca("issuer two")
    sightings: list[ChainSighting] = []
    for i, day in enumerate(range(0, 730, 90)):
        at = T0 + timedelta(days=day)
        for host, key, issuer in [
            ("reuse.test", 0, first),
            ("fresh.test", 10 + i, first),
            ("rotate.test", 30 + i, (first, second)[i % 2]),
        ]:  # fmt: skip
            leaf = issuer.issue_leaf(host, key=pooled_key(KeyType.P256, key))
            sightings.append((host, 443, host, at, [leaf.record, issuer.record]))
    frames = frames_from_chains(sightings)
    store = TrustStore.from_certificates([root.record], name="recommend")
    return observed_chains(*frames, trust_stores=store)


def _ranking(table: object) -> list[str]:
    return list(table["strategy"])  # type: ignore[index]


def test_a_host_that_reuses_its_key_gets_the_leaf_pin(history: list[ObservedChain]) -> None:
    table = recommend(history, "reuse.test")
    assert list(table.columns) == RECOMMENDATION_COLUMNS
    assert set(table["strategy"]) == set(STRATEGIES) == set(PROTECTION)
    assert _ranking(table)[0] == "leaf-spki"
    assert table["rank"].tolist() == list(range(1, 8))
    cert = table.set_index("strategy").loc["cert"]
    assert not cert["survives"]
    assert "a renewal with the same key" in cert["explanation"]


def test_fresh_keys_push_the_recommendation_to_the_intermediate(
    history: list[ObservedChain],
) -> None:
    table = recommend(history, "fresh.test").set_index("strategy")
    assert table.loc["intermediate-spki", "rank"] == 1
    assert not table.loc["leaf-spki", "survives"]
    assert table.loc["leaf-spki", "breaks"] == table.loc["leaf-spki", "pins"] - 1
    assert "a new leaf key (8x)" in table.loc["leaf-spki", "explanation"]
    # leaf+backup survives one renewal more than leaf-spki, but still breaks.
    assert table.loc["leaf+backup", "median_days"] == pytest.approx(180)


def test_rotating_issuers_push_it_to_the_root(history: list[ObservedChain]) -> None:
    table = recommend(history, "rotate.test").set_index("strategy")
    assert table.loc["root-spki", "rank"] == 1
    assert not table.loc["intermediate-spki", "survives"]
    assert "issuer issuer one -> issuer two" in table.loc["intermediate-spki", "explanation"]
    survivors = table[table["survives"]]
    assert set(survivors.index) == {"root-spki", "any-in-chain", "ca-set"}
    # Among survivors protection decides: root (2) before the CA organisation (1).
    assert table.loc["ca-set", "rank"] == 3


def test_horizon_decides_what_survives(history: list[ObservedChain]) -> None:
    table = recommend(history, "fresh.test", horizon_days=30).set_index("strategy")
    assert table[table["survives"]]["level"].min() == 1
    # Every leaf pin lasts 30 days: the longest-lived leaf pin first, then by protection.
    assert table.loc["leaf+backup", "rank"] == 1
    assert table.loc["leaf-spki", "rank"] == 2
    assert table.loc["cert", "rank"] == 3


def test_unknown_or_unvalidated_host(history: list[ObservedChain]) -> None:
    with pytest.raises(NoHistoryError, match=r"no observation of 'nope.test'; hosts: fresh"):
        recommend(history, "nope.test")
    stranger = CA.root("not trusted").child_ca("stranger")
    frames = frames_from_chains(
        [("x.test", 443, "x.test", T0, [stranger.issue_leaf("x.test").record, stranger.record])]
    )
    untrusted = observed_chains(*frames, trust_stores=TrustStore.certifi())
    with pytest.raises(NoHistoryError, match="none of the 1 observations"):
        recommend(untrusted, "x.test")


def test_real_lencr_no_pin_outlives_its_renewals(real_db: Path, shared_data: Path) -> None:
    with Store.open(real_db, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
    chains = host_chains(
        observations, certificates, ["lencr.org"], trust_stores=TrustStore.certifi()
    )
    assert {c.host for c in chains} == {"lencr.org"}
    table = recommend(
        chains, "lencr.org", catalog=catalog_from_frames(observations, certificates, chains)
    )
    by_name = table.set_index("strategy")
    # A fresh key at every sample (14 distinct leaf keys in the PEM files): every leaf pin
    # but the last breaks at the next validated sample.
    assert by_name.loc["leaf-spki", "breaks"] == by_name.loc["leaf-spki", "pins"] - 1
    assert not by_name["survives"].any()
    # R3 to the E series: the intermediate pin is outlived by the root pin.
    assert "issuer R3 -> E" in by_name.loc["intermediate-spki", "explanation"]
    assert by_name.loc["root-spki", "rank"] < by_name.loc["intermediate-spki", "rank"]
    assert by_name.loc["intermediate-spki", "rank"] < by_name.loc["leaf-spki", "rank"]


def test_cli_recommend(real_db: Path) -> None:
    runner = CliRunner()
    ca = ["--ca-file", certifi.where()]
    result = runner.invoke(app, ["recommend", "lencr.org", "--db", str(real_db), *ca])
    assert result.exit_code == 0, result.output
    lines = [
        line for line in result.output.splitlines() if line[:2] in {f"{n}." for n in range(1, 8)}
    ]
    assert len(lines) == 7
    assert lines[0].startswith("1. -- root-spki")
    result = runner.invoke(app, ["recommend", "nope.org", "--db", str(real_db), *ca])
    assert result.exit_code == 2
    assert "pinlab: error: no observation of 'nope.org'" in result.output
    missing = runner.invoke(app, ["recommend", "a", "--db", str(real_db.parent / "no.duckdb"), *ca])
    assert missing.exit_code == 2
    assert "no such store" in missing.output
