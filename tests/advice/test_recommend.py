"""Recommendation: backup-holding pin sets ranked within the follow-up a host's history has."""

from __future__ import annotations

import json
import plistlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import pandas as pd
import pytest
from typer.testing import CliRunner

from pinlab.advice.audit import parse_config, score
from pinlab.advice.pinset import CANDIDATES, okhttp_snippet
from pinlab.advice.recommend import (
    RECOMMENDATION_COLUMNS,
    Advice,
    NoHistoryError,
    advise,
    catalog_from_frames,
    host_chains,
    recommend,
)
from pinlab.cli import app
from pinlab.store import ChainSighting, Store, frames_from_chains
from pinlab.survival import ObservedChain, observed_chains
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore

T0 = datetime(2023, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history() -> list[ObservedChain]:
    """Three hosts over two years, a renewal every 90 days, and two hosts seen once.

    ``reuse.test`` keeps its key; ``fresh.test`` takes a fresh one under one intermediate;
    ``rotate.test`` takes a fresh key and alternates between two intermediates;
    ``once.test`` is seen once; ``direct.test`` (seen twice) is issued by the root itself.
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
    once = first.issue_leaf("once.test", key=pooled_key(KeyType.P256, 50))
    sightings.append(("once.test", 443, "once.test", T0, [once.record, first.record]))
    for day in (0, 90):
        direct = root.issue_leaf("direct.test", key=pooled_key(KeyType.P256, 51))
        at = T0 + timedelta(days=day)
        sightings.append(("direct.test", 443, "direct.test", at, [direct.record]))
    frames = frames_from_chains(sightings)
    store = TrustStore.from_certificates([root.record], name="recommend")
    return observed_chains(*frames, trust_stores=store)


def _by_name(advice: Advice) -> pd.DataFrame:
    return advice.table.set_index("strategy")


def test_every_set_holds_a_backup_and_each_pin_is_explained(
    history: list[ObservedChain],
) -> None:
    advice = advise(history, "reuse.test")
    assert list(advice.table.columns) == RECOMMENDATION_COLUMNS
    assert set(advice.table["strategy"]) == set(CANDIDATES)
    assert advice.table["backup"].all()
    assert advice.table["rank"].tolist() == [1, 2, 3, 4]
    # The key is kept: the leaf key with its issuing CA as backup, the strongest set.
    assert advice.top == "leaf+issuer"
    leaf, issuer = advice.pin_set
    assert (leaf.role, leaf.name) == ("leaf", "reuse.test")
    assert leaf.why == "primary: the key reuse.test serves now"
    assert (issuer.role, issuer.name) == ("intermediate", "issuer one")
    assert issuer.why.startswith("backup: the issuing CA's key")
    row = _by_name(advice).loc["leaf+issuer"]
    # A set accepts on any pin: it protects as its weakest pin, the issuing CA.
    assert row["protection"] == "intermediate"
    assert "leaf-spki is one key: paired with the leaf's issuing CA key" in row["explanation"]


def test_fresh_keys_still_hold_with_the_issuer_as_backup(history: list[ObservedChain]) -> None:
    advice = advise(history, "fresh.test")
    table = _by_name(advice)
    assert advice.top == "leaf+issuer"
    assert table.loc["leaf+issuer", "held"]
    assert table.loc["leaf+issuer", "breaks"] == 0
    assert "no break in 720 days observed (9 pins)" in table.loc["leaf+issuer", "explanation"]


def test_rotating_issuers_push_the_set_to_the_root(history: list[ObservedChain]) -> None:
    advice = advise(history, "rotate.test")
    table = _by_name(advice)
    assert not table.loc["leaf+issuer", "held"]
    assert "issuer issuer one -> issuer two" in table.loc["leaf+issuer", "explanation"]
    assert advice.top == "intermediate+root"
    assert [p.role for p in advice.pin_set] == ["intermediate", "root"]
    assert advice.pin_set[1].why.startswith("backup: the root above it")
    assert table.loc["leaf+issuer", "rank"] == 4


def test_a_single_key_set_is_never_the_top_pick(history: list[ObservedChain]) -> None:
    # Leaf issued by the root: intermediate+root is one key here (the root), leaf+issuer two.
    advice = advise(history, "direct.test")
    table = _by_name(advice)
    assert not table.loc["intermediate+root", "backup"]
    assert advice.top == "leaf+issuer"
    assert [p.role for p in advice.pin_set] == ["leaf", "root"]
    assert table["backup"].tolist() == sorted(table["backup"].tolist(), reverse=True)


def test_nothing_is_claimed_past_the_follow_up(history: list[ObservedChain]) -> None:
    advice = advise(history, "reuse.test", horizon_days=3650)
    assert advice.followup_days == 720
    text = " ".join(advice.table["explanation"])
    assert "3650 days (" not in text
    assert "held at 3650" not in text
    assert "held at 720 days" in text
    assert "short of the 3650-day horizon" in text
    assert set(advice.table["reach_days"]) == {720}


def test_no_ranking_without_follow_up(history: list[ObservedChain]) -> None:
    advice = advise(history, "once.test")
    assert not advice.ranked
    assert advice.history == (
        "not enough history to rank: 1 observations over 0 days, validated 1 of 1"
    )
    assert advice.table["rank"].isna().all()
    assert not advice.table["held"].any()
    assert advice.top == "leaf+issuer"
    assert len(advice.pin_set) == 2


def test_unknown_or_unvalidated_host(history: list[ObservedChain]) -> None:
    with pytest.raises(NoHistoryError, match=r"no observation of 'nope.test'; hosts: direct"):
        recommend(history, "nope.test")
    stranger = CA.root("not trusted").child_ca("stranger")
    frames = frames_from_chains(
        [("x.test", 443, "x.test", T0, [stranger.issue_leaf("x.test").record, stranger.record])]
    )
    untrusted = observed_chains(*frames, trust_stores=TrustStore.certifi())
    with pytest.raises(NoHistoryError, match="none of the 1 observations"):
        recommend(untrusted, "x.test")


def _trustkit(host: str, advice: Advice) -> bytes:
    """The set as a TrustKit plist, bare base64 hashes as TrustKit wants them."""
    hashes = [p.pin.removeprefix("sha256/") for p in advice.pin_set]
    domain = {"TSKPublicKeyHashes": hashes, "TSKIncludeSubdomains": False}
    return plistlib.dumps({"TSKPinnedDomains": {host: domain}})


@pytest.mark.parametrize("host", ["reuse.test", "fresh.test", "rotate.test", "direct.test"])
def test_recommend_and_audit_agree(history: list[ObservedChain], host: str) -> None:
    advice = advise(history, host)
    for name, text in [
        ("Pins.kt", okhttp_snippet(host, advice.pin_set).encode()),
        ("Info.plist", _trustkit(host, advice)),
    ]:
        config = parse_config(text, name=name)
        assert not config.findings
        row = score(config, history).iloc[0]
        assert row["pins"] == [p.pin for p in advice.pin_set]
        for column in ("accepted", "rejected", "broken_at", "verdict"):
            assert row[column] == advice.check[column] or (
                pd.isna(row[column]) and pd.isna(advice.check[column])
            ), column


def test_real_lencr_agrees_with_audit(real_db: Path) -> None:
    with Store.open(real_db, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
    chains = host_chains(
        observations, certificates, ["lencr.org"], trust_stores=TrustStore.certifi()
    )
    assert {c.host for c in chains} == {"lencr.org"}
    advice = advise(
        chains, "lencr.org", catalog=catalog_from_frames(observations, certificates, chains)
    )
    table = _by_name(advice)
    # A fresh key at every sample and R3 -> E series: the leaf set breaks at the issuer.
    assert "issuer R3 -> E" in table.loc["leaf+issuer", "explanation"]
    assert table.loc["intermediate+root", "rank"] < table.loc["leaf+issuer", "rank"]
    assert advice.top == "intermediate+root"
    assert [(p.role, p.name) for p in advice.pin_set] == [
        ("intermediate", "E8"), ("root", "ISRG Root X1"),
    ]  # fmt: skip
    config = parse_config(okhttp_snippet("lencr.org", advice.pin_set).encode(), name="Pins.kt")
    row = score(config, chains).iloc[0]
    assert row["broken_at"] == advice.check["broken_at"]
    assert advice.check["broken_at"] is not None


def _recommend(host: str, db: Path) -> list[str]:
    result = CliRunner().invoke(
        app, ["recommend", host, "--db", str(db), "--ca-file", certifi.where()]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_cli_recommend_prints_the_store_and_the_follow_up(real_db: Path) -> None:
    lines = _recommend("agilebits.com", real_db)
    # The trust store and what it validated are part of the answer, on stdout.
    assert lines[0].startswith(f"trust store: {certifi.where()} for every date; validated ")
    assert lines[0].endswith(" of 5 observations of agilebits.com")
    assert lines[1].startswith("agilebits.com: 5 observations over 304 days")
    assert "ranked over 304 days (horizon 365)" in lines[2]
    ranked = [line for line in lines if line[:2] in {"1.", "2.", "3.", "4."}]
    assert len(ranked) == 4
    assert all(" 365 days" not in line or "short of" in line for line in ranked)
    assert not any("100%" in line and " pins" not in line for line in ranked)
    assert "no break in 304 days observed" in "\n".join(ranked)
    # Days are floored, as audit counts them: never a day past the data.
    check = next(line for line in lines if line.startswith("this set over the history"))
    assert "no break in 304 days observed" in check


def test_cli_recommend_unranked(real_db: Path) -> None:
    lines = _recommend("rsa8192.badssl.com", real_db)
    text = "\n".join(lines)
    assert "not enough history to rank: 1 observations over 0 days" in text
    assert "pin set (unranked suggestion: leaf+issuer" in text
    assert not any(line[:2] == "1." for line in lines)
    pins = [line for line in lines if line.startswith("  sha256/")]
    assert len(pins) == 2


def test_cli_audit_agrees_with_cli_recommend(real_db: Path, tmp_path: Path) -> None:
    lines = _recommend("lencr.org", real_db)
    start = lines.index("OkHttp:")
    (tmp_path / "Pins.kt").write_text("\n".join(line[2:] for line in lines[start + 1 :]))
    verdict = next(line for line in lines if line.startswith("this set over the history"))
    ca = ["--ca-file", certifi.where()]
    result = CliRunner().invoke(
        app, ["audit", str(tmp_path / "Pins.kt"), "--db", str(real_db), "--json", *ca]
    )
    (host,) = json.loads(result.stdout)["hosts"]
    assert host["pins"] == [line.split()[0] for line in lines if line.startswith("  sha256/")]
    assert host["broken_at"] is not None
    assert f"would have broken on {host['broken_at'][:10]}" in verdict
    assert f"{host['accepted']} accepted, {host['rejected']} rejected" in verdict


def test_cli_recommend_errors(real_db: Path) -> None:
    runner = CliRunner()
    ca = ["--ca-file", certifi.where()]
    result = runner.invoke(app, ["recommend", "nope.org", "--db", str(real_db), *ca])
    assert result.exit_code == 2
    assert "pinlab: error: no observation of 'nope.org'" in result.output
    missing = runner.invoke(app, ["recommend", "a", "--db", str(real_db.parent / "no.duckdb"), *ca])
    assert missing.exit_code == 2
    assert "no such store" in missing.output
