"""The app update model: stranded users and bricked user-days, on known outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pinlab.advice.updates import (
    BREAKAGE_COLUMNS,
    DEFAULT_LAG,
    EmpiricalLag,
    LogNormalLag,
    bricked_user_days,
    expiry_tradeoff,
    user_breakage,
)
from pinlab.store import ChainSighting, frames_from_chains
from pinlab.survival import observed_chains, replay
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)
EVERYONE_AFTER_10_DAYS = EmpiricalLag(((10.0, 0.0), (10.0, 1.0)))
"""Every user installs each release exactly 10 days after it ships."""


def _day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def _releases(broken: list[float | None], *, every: float = 30, end: float = 120) -> pd.DataFrame:
    """A replay on a release calendar: release k at k*every, its pins broken at broken[k]."""
    rows = []
    for k, when in enumerate(broken):
        pinned = _day(k * every)
        stop = _day(when) if when is not None else _day(end)
        rows.append({
            "host": "a.test", "port": 443, "sni": "a.test", "lineage": "P-256#0",
            "strategy": "leaf-spki", "semantics": "verified", "pinned_at": pinned,
            "broken_at": _day(when) if when is not None else None,
            "days_survived": (stop - pinned).days, "broken": when is not None,
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    for column in ("pinned_at", "broken_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _series(breakage: pd.DataFrame, column: str) -> dict[int, float]:
    return dict(
        zip(breakage["days_since_first_release"].astype(int), breakage[column], strict=True)
    )


def test_users_stranded_until_they_install_the_release_with_fresh_pins() -> None:
    # Releases on days 0, 30 and 60; the server rotates on day 45, which breaks the pins of
    # releases 0 and 1; release 2 (day 60) pins the new key; users install it on day 70.
    breakage = user_breakage(_releases([45, 45, None]), lag=EVERYONE_AFTER_10_DAYS)
    assert list(breakage.columns) == BREAKAGE_COLUMNS
    stranded = _series(breakage, "stranded_share")
    assert stranded[44] == 0
    assert stranded[45] == pytest.approx(1)
    assert stranded[69] == pytest.approx(1)
    assert stranded[70] == 0
    assert breakage["days_since_first_release"].max() == 120
    summary = bricked_user_days(breakage, users=1)
    assert summary.loc[0, "bricked_user_days"] == pytest.approx(25)  # days 45..69
    assert summary.loc[0, "unprotected_user_days"] == 0
    assert summary.loc[0, "timelines_stranding"] == 1


def test_expiry_trades_bricked_days_for_unprotected_days() -> None:
    # Pins expire 20 days after each release: release 1 (day 30) stops pinning on day 50,
    # so its users are stranded on days 45..49 only, then unprotected until day 70.
    replayed = _releases([45, 45, None])
    breakage = user_breakage(replayed, lag=EVERYONE_AFTER_10_DAYS, expiry_days=20)
    stranded, unprotected = (_series(breakage, c) for c in ("stranded_share", "unprotected_share"))
    assert stranded[45] == pytest.approx(1)
    assert stranded[50] == 0
    assert unprotected[50] == pytest.approx(1)
    assert unprotected[69] == pytest.approx(1)
    assert unprotected[70] == 0
    assert unprotected[80] == pytest.approx(1)  # release 2 (day 60) expired on day 80
    table = expiry_tradeoff(replayed, expiries=[None, 20], lag=EVERYONE_AFTER_10_DAYS, users=1)
    by_expiry = table.set_index(table["expiry_days"].fillna(0))
    assert by_expiry.loc[0, "bricked_user_days"] == pytest.approx(25)
    assert by_expiry.loc[20, "bricked_user_days"] == pytest.approx(5)
    assert by_expiry.loc[20, "unprotected_user_days"] > by_expiry.loc[0, "unprotected_user_days"]


def test_shares_of_users_split_between_releases_by_the_adoption_curve() -> None:
    half_then_all = EmpiricalLag(((5.0, 0.5), (10.0, 1.0)))
    # Release 0's pins break on day 1, release 1 (day 30) never breaks.
    breakage = user_breakage(_releases([1, None]), lag=half_then_all, until=_day(50))
    stranded = _series(breakage, "stranded_share")
    assert stranded[29] == pytest.approx(1)
    assert stranded[35] == pytest.approx(0.5)  # half of the users installed release 1
    assert stranded[40] == 0
    assert breakage["days_since_first_release"].max() == 50
    assert _series(breakage, "releases_live")[35] == 2


def test_default_lag_is_named_and_shaped() -> None:
    assert LogNormalLag(median_days=7.0, sigma=1.5) == DEFAULT_LAG
    shares = DEFAULT_LAG.cdf(np.array([-1.0, 0.0, 7.0, 30.0, 90.0, 10_000.0]))
    assert shares[0] == shares[1] == 0
    assert shares[2] == pytest.approx(0.5)  # Möller et al.: half still on the old one at 7 d
    assert 0.8 < shares[3] < 0.86
    assert 0.94 < shares[4] < 0.97
    assert shares[5] == pytest.approx(1)
    assert LogNormalLag(never=0.1).cdf(np.array([10_000.0]))[0] == pytest.approx(0.9)
    for bad in ({"median_days": 0}, {"never": 1.0}):
        with pytest.raises(ValueError, match=r"median_days|never"):
            LogNormalLag(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-decreasing"):
        EmpiricalLag(((10.0, 0.5), (5.0, 0.8)))


def test_from_a_replayed_history_fresh_keys_strand_users_and_reuse_does_not() -> None:
    root = CA.root("updates root")
    intermediate = root.child_ca("updates intermediate")
    store = TrustStore.from_certificates([root.record], name="updates")

    def served(host: str, fresh: bool) -> list[ChainSighting]:
        sightings: list[ChainSighting] = []
        for i, day in enumerate(range(0, 200, 20)):
            leaf = intermediate.issue_leaf(host, key=pooled_key(KeyType.P256, i if fresh else 0))
            sightings.append((host, 443, host, _day(day), [leaf.record, intermediate.record]))
        return sightings

    frames = frames_from_chains(served("fresh.test", True) + served("reuse.test", False))
    replayed = replay(
        observed_chains(*frames, trust_stores=store), strategies=["leaf-spki", "root-spki"],
        release_every=30,
    )  # fmt: skip
    summary = bricked_user_days(user_breakage(replayed), users=1).set_index(
        ["strategy", "semantics"]
    )
    assert summary.loc[("leaf-spki", "verified"), "bricked_user_days"] > 0
    assert summary.loc[("root-spki", "verified"), "bricked_user_days"] == 0
    per_host = user_breakage(replayed[replayed["strategy"] == "leaf-spki"])
    assert per_host[per_host["host"] == "reuse.test"]["stranded_share"].max() == 0
    # A fresh key every 20 days, releases every 30: someone is always on a stale release.
    fresh = per_host[(per_host["host"] == "fresh.test") & (per_host["semantics"] == "verified")]
    assert fresh["stranded_share"].iloc[25:].min() > 0.2
