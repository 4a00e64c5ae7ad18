"""Forward scenarios: synthetic futures with known outcomes, and the real hosts under them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pinlab.advice.forward import (
    CURRENT_RULES,
    SC_081,
    SIX_DAY,
    HostProfile,
    Scenario,
    forward_replay,
    host_profiles,
    profiles_frame,
    scenario_summary,
    select_intermediates,
    standard_scenarios,
    synthesise,
)
from pinlab.certs import Certificate
from pinlab.survival import ObservedChain
from pinlab.testbed.pki import CA, KeyType, pooled_key
from tests.conftest import real_leaves

START = datetime(2026, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def pki() -> dict[str, CA]:
    root = CA.root("forward root")
    other = CA.root("forward other root")
    return {
        "root": root,
        "own": root.child_ca("own intermediate"),
        "pool_a": root.child_ca("pool A"),
        "pool_b": root.child_ca("pool B"),
        "pool_c": root.child_ca("pool C"),
        "other": other,
        "rsa": root.child_ca("pool RSA", key=pooled_key(KeyType.RSA2048, 0)),
    }


def _profile(pki: dict[str, CA], *, reuse: float, validity: float = 90.0) -> HostProfile:
    leaf = pki["own"].issue_leaf("f.test", key=pooled_key(KeyType.P256, 0)).record
    return HostProfile(
        "f.test", 443, "f.test", "P-256#0", key_reuse_rate=reuse, renewals=3,
        validity_days=validity, leaf=leaf, intermediate=pki["own"].record,
        root=pki["root"].record,
    )  # fmt: skip


def _pool(pki: dict[str, CA], *names: str) -> tuple[Certificate, ...]:
    return tuple(pki[name].record for name in names)


def test_sc081_schedule_steps_at_the_second() -> None:
    for date, before, after in [
        ("2026-03-15", 398, 200), ("2027-03-15", 200, 100), ("2029-03-15", 100, 47),
    ]:  # fmt: skip
        step = datetime.fromisoformat(date).replace(tzinfo=UTC)
        assert SC_081.max_days(step - SECOND) == before
        assert SC_081.max_days(step) == after
    assert SC_081.max_days(datetime(2019, 1, 1, tzinfo=UTC)) == float("inf")
    assert CURRENT_RULES.max_days(datetime(2030, 1, 1, tzinfo=UTC)) == 398
    assert SIX_DAY.max_days(START) == 6


def test_renewal_at_two_thirds_of_the_validity_in_force(pki: dict[str, CA]) -> None:
    profile = _profile(pki, reuse=1.0)
    chains = synthesise(
        profile, Scenario("sc-081", SC_081), start=datetime(2029, 1, 1, tzinfo=UTC),
        end=datetime(2029, 8, 1, tzinfo=UTC), rng=np.random.default_rng(0),
    )  # fmt: skip
    gaps = [(b.observed_at - a.observed_at).days for a, b in itertools.pairwise(chains)]
    # 90-day certificates renewed every 60 days until the 47-day cap, then every 31.3 days.
    assert gaps == [60, 60, 31, 31]
    validities = {
        round((c.presented[0].not_after - c.presented[0].not_before).days) for c in chains
    }
    assert validities == {90, 47}
    assert len({c.presented[0].spki_sha256 for c in chains}) == 1  # the key is always reused
    assert all(
        c.verified == (c.presented[0], pki["own"].record, pki["root"].record) for c in chains
    )
    assert chains[0].presented[0].issuer == pki["own"].record.subject


def test_fresh_keys_and_seeded_rotation_are_reproducible(pki: dict[str, CA]) -> None:
    scenario = Scenario(
        "rotation", intermediates=_pool(pki, "pool_a", "pool_b", "pool_c"),
        roots=_pool(pki, "root"),
    )  # fmt: skip

    def run(seed: int) -> list[ObservedChain]:
        return synthesise(
            _profile(pki, reuse=0.0), scenario, start=START, end=START + timedelta(days=900),
            rng=np.random.default_rng(seed),
        )  # fmt: skip

    first, again, other = run(7), run(7), run(8)
    assert [c.presented for c in first] == [c.presented for c in again]
    assert [c.presented for c in first] != [c.presented for c in other]
    assert len({c.presented[0].spki_sha256 for c in first}) == len(first)
    drawn = {c.presented[1].subject for c in first}
    assert drawn == {pki[name].record.subject for name in ("pool_a", "pool_b", "pool_c")}
    # An ECDSA host is never issued by the RSA intermediate of a mixed pool.
    mixed = Scenario("mixed", intermediates=_pool(pki, "pool_a", "rsa"), roots=_pool(pki, "root"))
    chains = synthesise(
        _profile(pki, reuse=0.0), mixed, start=START, end=START + timedelta(days=600),
        rng=np.random.default_rng(1),
    )  # fmt: skip
    assert {c.presented[1].subject for c in chains} == {pki["pool_a"].record.subject}


def test_scenario_needs_the_root_of_each_intermediate(pki: dict[str, CA]) -> None:
    with pytest.raises(ValueError, match="no root among `roots` issued"):
        Scenario("x", intermediates=_pool(pki, "pool_a"), roots=_pool(pki, "other"))
    with pytest.raises(ValueError, match="renew_at"):
        Scenario("x", renew_at=0)


def _breaks(frame: pd.DataFrame, scenario: str, strategy: str) -> pd.Series:
    rows = frame[(frame["scenario"] == scenario) & (frame["strategy"] == strategy)]
    return rows["broken"]


def test_rotation_breaks_intermediate_pins_and_six_days_break_leaf_pins(
    pki: dict[str, CA],
) -> None:
    scenarios = [
        Scenario("own"),
        Scenario(
            "rotation", intermediates=_pool(pki, "pool_a", "pool_b"), roots=_pool(pki, "root")
        ),
        Scenario("six-day", SIX_DAY),
    ]  # fmt: skip
    replayed = forward_replay(
        [_profile(pki, reuse=0.0)], scenarios, start=START, end=START + timedelta(days=720),
        rng=np.random.default_rng(3), release_every=None,
    )  # fmt: skip
    assert set(replayed["semantics"]) == {"verified"}
    assert not _breaks(replayed, "own", "intermediate-spki").any()
    assert _breaks(replayed, "rotation", "intermediate-spki").any()
    for scenario in ("own", "rotation", "six-day"):
        assert not _breaks(replayed, scenario, "root-spki").any()
        # Fresh keys: every leaf pin but the last breaks at the next issuance.
        leaf = replayed[(replayed["scenario"] == scenario) & (replayed["strategy"] == "leaf-spki")]
        assert leaf["broken"].sum() == len(leaf) - 1
    six = replayed[(replayed["scenario"] == "six-day") & (replayed["strategy"] == "leaf-spki")]
    assert set(six.loc[six["broken"], "days_survived"].round(6)) == {4.0}
    summary = scenario_summary(replayed, baseline="own").set_index(["scenario", "strategy"])
    assert summary.loc[("six-day", "leaf-spki"), "median_days"] == pytest.approx(4)
    assert summary.loc[("own", "leaf-spki"), "median_days"] == pytest.approx(60)
    assert summary.loc[("six-day", "leaf-spki"), "median_vs_baseline"] == pytest.approx(4 / 60)
    assert summary.loc[("rotation", "root-spki"), "median_vs_baseline"] == 1.0


def test_real_hosts_profiled_from_their_certificates(
    real_chains: list[ObservedChain], shared_data: Path
) -> None:
    profiles = {p.host: p for p in host_profiles(real_chains)}
    lencr = profiles["lencr.org"]
    leaves = real_leaves(shared_data, "lencr.org")
    keys = [leaf.spki_sha256 for _, leaf in leaves]
    # Read from the PEM files: a fresh key at every one of the 14 samples, 90-day leaves.
    assert len(set(keys)) == len(keys) == 14
    assert lencr.key_reuse_rate == 0
    assert lencr.renewals == 13
    validity = {
        round((leaf.not_after - leaf.not_before).total_seconds() / 86400) for _, leaf in leaves
    }
    assert validity == {90}
    assert round(lencr.validity_days) == 90
    last_issuer = leaves[-1][1].issuer
    assert lencr.intermediate.subject == last_issuer
    frame = profiles_frame(list(profiles.values()))
    assert {"host", "key_reuse_rate", "renewals", "validity_days", "intermediate"} <= set(frame)


def test_real_lencr_under_le_rotation_and_sc081(
    real_chains: list[ObservedChain], le_hierarchy: list[Certificate]
) -> None:
    pool = select_intermediates(le_hierarchy, issued_by="ISRG Root X1")
    assert [c.subject.split(",")[0] for c in pool] == [
        "CN=E5", "CN=E6", "CN=E7", "CN=E8", "CN=E9", "CN=R10", "CN=R11", "CN=R12", "CN=R13",
        "CN=R14",
    ]  # fmt: skip
    roots = [c for c in le_hierarchy if c.self_issued and c.subject.startswith("CN=ISRG Root X1")]
    lencr = [p for p in host_profiles(real_chains) if p.host == "lencr.org"]
    scenarios = [s for s in standard_scenarios(pool, roots) if not s.name.startswith("six")]
    replayed = forward_replay(
        lencr, scenarios, start=START, end=datetime(2030, 1, 1, tzinfo=UTC),
        rng=np.random.default_rng(2024),
    )  # fmt: skip
    # lencr.org is an ECDSA host: under rotation it is issued from E5-E9 only.
    rotation = next(s for s in scenarios if s.name == "398-day+rotation")
    drawn = synthesise(
        lencr[0], rotation, start=START, end=datetime(2028, 1, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert {c.presented[1].subject.split(",")[0] for c in drawn} == {
        f"CN=E{n}" for n in range(5, 10)
    }
    summary = scenario_summary(replayed, baseline="398-day").set_index(["scenario", "strategy"])
    # Its own intermediate never changes without rotation; drawn among five, pins break.
    assert summary.loc[("398-day", "intermediate-spki"), "breaks"] == 0
    assert summary.loc[("398-day+rotation", "intermediate-spki"), "breaks"] > 0
    assert summary.loc[("398-day+rotation", "intermediate-spki"), "median_days"] < 365
    # SC-081 only bites this 90-day host from 2029-03-15 (47 days): leaf pins die sooner.
    assert (
        summary.loc[("sc-081", "leaf-spki"), "median_days"]
        <= summary.loc[("398-day", "leaf-spki"), "median_days"]
    )
    assert summary.loc[("sc-081+rotation", "root-spki"), "breaks"] == 0
