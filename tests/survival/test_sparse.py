"""The sparse-sampling check on a history whose truth is exact.

40 hosts renew their leaf key every 90 days, each with its own phase; every leaf is issued
(notBefore) some days before the host deploys it and expires 100 days after issue, so the
certificate dates bound each switch without pinning it. Observed daily, a pin's death is
known to the day: the dense replay is the truth. Thinned to 30, 90 and 180 days, the
right-censored Kaplan-Meier places each death at the first failing observation and drifts
later; Turnbull's NPMLE on the certificate-narrowed intervals does not at 90 days, where the
failing leaf is the old one's successor. At 180 days a whole generation goes unseen, the
intervals widen to what the checks and the old leaf's expiry allow, and neither estimator
recovers the truth: the intervals still hold it.

A lab-based variant is not built on the ``lab_run`` fixture: its scenario spans 4 rounds of
10 virtual days (nothing to thin to 90 or 180 days), and Pebble dates certificates by the
real clock while observations carry the virtual one, so a new leaf's notBefore lies after
every observation and the certificate narrowing collapses each death interval onto the
failing observation (there the check needs ``certificate_dates=False``, tested below on
this history: without certificate dates the intervals are as wide as the gaps).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pinlab.pins import Semantics
from pinlab.store import frames_from_chains
from pinlab.survival import observed_chains, replay
from pinlab.survival.sparse import SPARSE_COLUMNS, SparseCheckError, thin, thinning_check
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOSTS, DAYS, RENEW_EVERY, VALIDITY = 40, 720, 90, 100


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame, TrustStore]:
    """(observations, certificates, trust store): daily observations of fresh-key renewals."""
    root = CA.root("sparse root")
    intermediate = root.child_ca("sparse intermediate")
    sightings = []
    for h in range(HOSTS):
        name = f"h{h:02d}.test"
        phase, delay = h * RENEW_EVERY // HOSTS, h % 8  # deployed 0-7 days after issue
        deployed = []
        for k in range((DAYS + 180) // RENEW_EVERY + 2):
            issued = T0 + timedelta(days=phase - 180 + RENEW_EVERY * k)
            leaf = intermediate.issue_leaf(
                name,
                key=pooled_key(KeyType.P256, 1000 + 100 * h + k),
                not_before=issued,
                not_after=issued + timedelta(days=VALIDITY),
            )
            deployed.append((issued + timedelta(days=delay), leaf))
        for day in range(DAYS):
            at = T0 + timedelta(days=day)
            leaf = [leaf for since, leaf in deployed if since <= at][-1]
            sightings.append((name, 443, name, at, [leaf.record, intermediate.record]))
    observations, certificates = frames_from_chains(sightings)
    return observations, certificates, TrustStore.from_certificates([root.record], name="root")


@pytest.fixture(scope="module")
def check(history: tuple[pd.DataFrame, pd.DataFrame, TrustStore]) -> pd.DataFrame:
    observations, certificates, store = history
    return thinning_check(
        observations, certificates, trust_stores=store, semantics=[Semantics.PRESENTED],
        days=(30, 60),
    )  # fmt: skip


def _at(frame: pd.DataFrame, every: float, measure: str) -> pd.Series:
    rows = frame[(frame["every"] == every) & (frame["measure"] == measure)]
    assert len(rows) == 1, (every, measure)
    return rows.iloc[0]


def test_thin_keeps_the_first_observation_at_or_after_each_grid_point() -> None:
    days = [0, 1, 2, 5, 11, 12, 40]
    frame = pd.DataFrame({
        "host": "a.test", "port": 443, "sni": "a.test", "status": "ok", "chain": None,
        "observed_at": [T0 + timedelta(days=d) for d in days],
    })  # fmt: skip
    kept = thin(frame, 10)
    # grid 0, 10, 20, 30, 40: day 0, day 11, then day 40 for 20, 30 and 40 (kept once)
    assert [(t - T0).days for t in kept["observed_at"]] == [0, 11, 40]
    with pytest.raises(SparseCheckError):
        thin(frame, 0)


def test_truth_is_the_dense_replay_and_known(check: pd.DataFrame) -> None:
    assert list(check.columns) == SPARSE_COLUMNS
    assert sorted(check["every"].unique()) == [30, 90, 180]
    # residual life until the next deployment is uniform over 1..90 days: median ~45,
    # a third of pins past 60 days
    assert _at(check, 30, "median_days")["truth"] == pytest.approx(45, abs=2)
    assert _at(check, 30, "survival_60d")["truth"] == pytest.approx(1 / 3, abs=0.02)
    assert (check.groupby("measure")["truth"].nunique() == 1).all()
    kept = check.groupby("every")["observations"].first()
    assert kept.to_dict() == {30.0: HOSTS * 24, 90.0: HOSTS * 8, 180.0: HOSTS * 4}


def test_kaplan_meier_median_drifts_with_sparsity(check: pd.DataFrame) -> None:
    errors = [_at(check, every, "median_days")["km_error"] for every in (30, 90, 180)]
    assert errors[0] < errors[1] < errors[2]
    # every observation after a switch sees a new key: deaths land on the grid
    assert _at(check, 90, "median_days")["km"] == 90
    assert _at(check, 180, "median_days")["km"] == 180
    assert _at(check, 90, "survival_60d")["km"] == 1.0


def test_turnbull_stays_near_the_truth_where_kaplan_meier_does_not(check: pd.DataFrame) -> None:
    """At 90 days the failing leaf is mostly the pinned leaf's successor: its notBefore and
    the old leaf's notAfter pin each death down, and Turnbull recovers the truth."""
    median = _at(check, 90, "median_days")
    assert abs(median["turnbull_error"]) <= 10 < abs(median["km_error"])
    for measure in ("survival_30d", "survival_60d"):
        row = _at(check, 90, measure)
        assert abs(row["turnbull_error"]) < 0.1 < abs(row["km_error"])
    # the envelope only spans what is unidentified inside intervals; it is no
    # confidence interval and need not hold the truth
    assert median["turnbull_lower"] <= median["turnbull"] <= median["turnbull_upper"]


def test_at_180_days_no_estimator_recovers_the_truth(check: pd.DataFrame) -> None:
    """Observations 180 days apart skip a whole 90-day generation of leaves: the failing
    leaf is not the old one's successor, so its notBefore bounds nothing and each death is
    only known to lie between the last pass and the old leaf's expiry. The data cannot
    place the deaths; Kaplan-Meier and Turnbull both miss, and the check says so."""
    median = _at(check, 180, "median_days")
    assert abs(median["km_error"]) > 100
    assert not median["truth_in_turnbull"]


@pytest.mark.parametrize("every", [90, 180])
def test_every_death_interval_holds_the_true_switch(
    history: tuple[pd.DataFrame, pd.DataFrame, TrustStore], every: int
) -> None:
    """The bounds are right even where the estimate is not: each thinned pin's death
    interval contains the switch the daily observations saw (to the day)."""
    observations, certificates, store = history
    hosts = observations[observations["host"].isin([f"h{h:02d}.test" for h in range(0, 40, 5)])]

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        chains = observed_chains(frame, certificates, trust_stores=store)
        return replay(chains, strategies=["leaf-spki"], semantics=[Semantics.PRESENTED])

    dense, sparse = rows(hosts), rows(thin(hosts, every))
    merged = sparse[sparse["broken"]].merge(
        dense[["host", "pinned_at", "days_survived"]], on=["host", "pinned_at"],
        suffixes=("", "_true"),
    )  # fmt: skip
    assert len(merged) > 10
    assert (merged["death_lower_days"] <= merged["days_survived_true"]).all()
    assert (merged["death_upper_days"] >= merged["days_survived_true"] - 1).all()


def test_without_certificate_dates_turnbull_has_only_the_gaps(
    history: tuple[pd.DataFrame, pd.DataFrame, TrustStore],
) -> None:
    observations, certificates, store = history
    hosts = observations[observations["host"].isin([f"h{h:02d}.test" for h in range(0, 40, 4)])]
    frame = thinning_check(
        hosts, certificates, trust_stores=store, every=(180,), days=(60,),
        semantics=[Semantics.PRESENTED], certificate_dates=False,
    )  # fmt: skip
    median = _at(frame, 180, "median_days")
    # deaths known only within (last pass, first fail]: a 180-day gap the NPMLE cannot split
    assert median["turnbull_upper"] - median["turnbull_lower"] >= 90
    assert median["truth_in_turnbull"]


def test_an_empty_history_is_refused(
    history: tuple[pd.DataFrame, pd.DataFrame, TrustStore],
) -> None:
    observations, certificates, store = history
    with pytest.raises(SparseCheckError):
        thinning_check(observations.iloc[:0], certificates, trust_stores=store)


def test_the_figure_draws_truth_estimate_and_envelope(check: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pinlab.figures import plot_sparse_check

    ax = plot_sparse_check(check)
    labels = ax.get_legend_handles_labels()[1]
    assert labels[0].startswith("truth (dense data): 4")
    assert "Kaplan-Meier (death at first failure)" in labels
    km = next(line for line in ax.get_lines() if line.get_label().startswith("Kaplan"))
    assert list(km.get_ydata()) == list(check[check["measure"] == "median_days"]["km"])
    assert "leaf-spki pins, presented chain" in ax.get_title()
    assert not plot_sparse_check(check, measure="survival_999d").get_lines()
    plt.close("all")
