"""Deaths, censoring and uncertainty with a known truth (issue 15's analysis rules).

- a pin is censored at the last observation that checked it, never later (an
  unverifiable tail is counted, not survived through);
- a death lies between the last passing and the first failing observation, narrowed by
  the new leaf's notBefore and the old leaf's notAfter;
- the fit keeps one pin per host per release (the Python engine's release calendar),
  gives host-bootstrap intervals and at-risk counts, and never states survival past the
  follow-up.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import certifi
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.pins import Semantics
from pinlab.store import Store
from pinlab.survival import PinSurvival, observed_chains, replay
from pinlab.survival.fit import one_pin_per_release
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore
from tests.survival.test_python_engine import T0, _day, _replay, pki  # noqa: F401

DAY = timedelta(days=1)


def test_censored_at_the_last_checked_observation(pki: dict[str, CA]) -> None:  # noqa: F811
    """Days 0 and 30 validate; days 60-300 are an unverifiable tail (a stranger's chain)."""
    intermediate = pki["intermediate"]
    stranger = CA.root("untrusted root").child_ca("stranger")
    key = pooled_key(KeyType.P256, 0)
    served = [(day, [intermediate.issue_leaf("a.test", key=key), intermediate]) for day in (0, 30)]
    served += [(day, [stranger.issue_leaf("a.test"), stranger]) for day in range(60, 330, 30)]
    rows = _replay(pki, served, strategies=["leaf-spki"], semantics=[Semantics.VERIFIED])
    first = rows[rows["pinned_at"] == T0].iloc[0]
    assert not first["broken"]
    assert first["last_checked_at"] == _day(30)
    assert first["days_survived"] == pytest.approx(30)  # not 300
    assert first["unchecked"] == 9
    assert pd.isna(first["death_lower_days"])
    assert pd.isna(first["death_upper_days"])


def test_a_death_lies_between_the_checks_narrowed_by_certificate_dates(
    pki: dict[str, CA],  # noqa: F811
) -> None:
    """Observed on days 0 and 200; the old leaf expired on day 120, the new one was issued
    on day 90: the switch happened between days 90 and 120, not at day 200."""
    intermediate = pki["intermediate"]
    old = intermediate.issue_leaf("a.test", not_before=_day(-10), not_after=_day(120))
    new = intermediate.issue_leaf("a.test", not_before=_day(90), not_after=_day(400))
    served = [(0, [old, intermediate]), (200, [new, intermediate])]
    rows = _replay(pki, served, strategies=["leaf-spki"], semantics=[Semantics.PRESENTED])
    first = rows[rows["pinned_at"] == T0].iloc[0]
    assert first["broken"]
    assert first["broken_at"] == _day(200)
    assert first["days_survived"] == pytest.approx(200)  # the right-censored convention
    assert first["death_lower_days"] == pytest.approx(90)
    assert first["death_upper_days"] == pytest.approx(120)
    assert first["last_checked_at"] == _day(200)


def test_releases_from_every_pin_equal_the_release_calendar(pki: dict[str, CA]) -> None:  # noqa: F811
    intermediate = pki["intermediate"]
    served = [
        (day, [intermediate.issue_leaf("a.test", key=pooled_key(KeyType.P256, i)), intermediate])
        for i, day in enumerate((0, 50, 100, 170, 260))
    ]
    calendar = _replay(pki, served, release_every=30)
    thinned = one_pin_per_release(_replay(pki, served), 30)
    columns = ["strategy", "semantics", "pinned_at", "days_survived", "broken",
               "death_lower_days", "death_upper_days"]  # fmt: skip
    order = ["strategy", "semantics", "pinned_at"]
    left = calendar[columns].sort_values(order).reset_index(drop=True)
    right = thinned[columns].sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


def _synthetic(hosts: int, rng: np.random.Generator, *, followup: float) -> pd.DataFrame:
    """Replay-shaped rows: each host's pins die after an exponential time (mean 200 days)
    or are censored at the follow-up; host 0 has 50x the observations of the others."""
    rows = []
    for host in range(hosts):
        pins = 50 if host == 0 else 1
        for pin in range(pins):
            life = rng.exponential(200)
            broken = life < followup
            days = min(life, followup)
            rows.append({
                "host": f"h{host}.test", "port": 443, "sni": f"h{host}.test",
                "strategy": "leaf-spki", "semantics": "verified",
                "pinned_at": pd.Timestamp(T0) + pd.Timedelta(days=pin),
                "days_survived": days, "broken": broken,
                "death_lower_days": max(days - 20, 0) if broken else np.nan,
                "death_upper_days": days if broken else np.nan,
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_bootstrap_intervals_at_risk_and_follow_up() -> None:
    rows = _synthetic(80, np.random.default_rng(1), followup=500)
    model = PinSurvival(release_every=None, bootstrap=100, trust_store="test anchors").fit(rows)
    summary = model.summary.iloc[0]
    assert summary["hosts"] == 80
    assert summary["pins"] == 129
    truth = np.exp(-365 / 200)
    assert summary["survival_1y_lower"] <= summary["survival_1y"] <= summary["survival_1y_upper"]
    assert summary["survival_1y_lower"] < truth < summary["survival_1y_upper"]
    assert summary["median_ci_lower"] <= summary["median_days"] <= summary["median_ci_upper"]
    assert summary["turnbull_1y_lower"] <= summary["turnbull_1y_upper"]
    assert summary["trust_store"] == "test anchors"
    at_risk = model.at_risk_.set_index("days")["at_risk"]
    assert at_risk[0] == 129
    assert list(at_risk.index) == [0, 30, 90, 180, 365]
    assert at_risk.is_monotonic_decreasing
    curve = model.survival_function_
    assert {"boot_lower", "boot_upper", "at_risk"} <= set(curve)
    # Resampling hosts, not pins: host 0's 50 pins move together, so the host bootstrap is
    # wider than Greenwood's band, which takes the 129 pins as independent.
    greenwood = curve["ci_upper"] - curve["ci_lower"]
    boot = curve["boot_upper"] - curve["boot_lower"]
    assert boot.mean() > greenwood.mean()


def test_survival_is_never_stated_past_the_follow_up() -> None:
    rows = _synthetic(40, np.random.default_rng(2), followup=200)
    summary = PinSurvival(release_every=None, bootstrap=20).fit(rows).summary.iloc[0]
    assert summary["followup_days"] <= 200
    assert np.isnan(summary["survival_1y"])
    assert np.isnan(summary["survival_1y_lower"])
    assert np.isnan(summary["turnbull_1y_lower"])


def test_simulate_states_the_trust_store_and_what_was_checked(
    real_db: Path, tmp_path: Path
) -> None:
    """Every survival output says which roots validated the chains and how many did; with
    --sensitivity, the other choice of roots is replayed beside it."""
    result = CliRunner().invoke(
        app,
        ["simulate", "--db", str(real_db), "--out", str(tmp_path / "r.csv"), "--ca-file",
         certifi.where(), "--strategy", "root-spki", "--truststores", str(tmp_path / "none"),
         "--sensitivity"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("trust stores:")]
    assert len(lines) == 2
    assert f"{certifi.where()} for every date; validated 27 of 65 observations" in lines[0]
    assert "did not validate" in result.output
    assert "one pin per host per release every 30 days" in result.output


def test_real_histories_censor_at_the_last_check_and_bound_each_death(
    real_db: Path,
) -> None:
    """On ../shared/data's real histories: no censored pin survives past its last checked
    observation, and each death lies between the last passing and the first failing
    check, inside the dates of the certificates served around it."""
    with Store.open(real_db, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
    chains = observed_chains(observations, certificates, trust_stores=TrustStore.certifi())
    rows = replay(chains)
    days = pd.to_timedelta(rows["days_survived"], unit="D")
    censored, broken = rows[~rows["broken"]], rows[rows["broken"]]
    assert len(censored) > 0
    assert len(broken) > 0
    gap = (censored["pinned_at"] + days[censored.index] - censored["last_checked_at"]).abs()
    assert (gap < pd.Timedelta(seconds=1)).all()
    observed = {(c.host, c.observed_at): c for c in chains}
    assert (broken["last_checked_at"] == broken["broken_at"]).all()
    assert (broken["death_lower_days"] <= broken["death_upper_days"]).all()
    assert (broken["death_upper_days"] <= broken["days_survived"] + 1e-9).all()
    for row in broken.itertuples():
        new_leaf = observed[(row.host, row.broken_at.to_pydatetime())].presented[0]
        lower_at = row.pinned_at + pd.Timedelta(days=row.death_lower_days)
        upper_at = row.pinned_at + pd.Timedelta(days=row.death_upper_days)
        # a new leaf issued within the interval cannot have been served before it existed
        if new_leaf.not_before <= upper_at:
            assert lower_at >= new_leaf.not_before - pd.Timedelta(seconds=1)
    # an unverifiable tail is counted, not survived through
    verified = rows[rows["semantics"] == "verified"]
    assert verified["unchecked"].sum() > 0
