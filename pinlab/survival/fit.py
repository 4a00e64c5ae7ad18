"""Survival curves fitted to a replay, with the uncertainty a reader needs.

Per strategy and semantics, :class:`PinSurvival` fits

- **Kaplan-Meier** (right-censored: a death at the first failing observation, a censored pin
  at its last checked observation), with lifelines' Greenwood band;
- **Turnbull's NPMLE** (interval-censored: a death somewhere between ``death_lower_days`` and
  ``death_upper_days``, lifelines' ``fit_interval_censoring``), the honest estimate when
  observations are sparse;
- **host-bootstrap intervals**: hosts resampled with replacement, Kaplan-Meier refitted, the
  percentile interval of survival at each time, of the median and of one-year survival.

Pins are correlated: a pin taken at every observation lets hosts with many observations
dominate. With ``release_every`` (30 days by default) the fit keeps **one pin per host per
app release**: the last pin taken at or before each release date, releases every that many
days from the host's first pin, as an app that ships its pins with each release would hold
them. Survival is never stated past the data's follow-up: ``survival_1y`` is empty when no
pin was followed for a year. A survival table of counts (the DuckDB engine's, with a ``pins``
column and no hosts) can only be fitted with every pin weighted alike and Greenwood
intervals; ``weighting`` says which was done.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["AT_RISK_DAYS", "PinSurvival"]

AT_RISK_DAYS = (0, 30, 90, 180, 365, 730, 1095)
"""Times of the at-risk tables under the curves."""
_GROUP = ["strategy", "semantics"]
_HOST = ["host", "port", "sni"]


class PinSurvival:
    """Pin survival per strategy and semantics, in lifelines' style.

    ``PinSurvival().fit(replay_frame)`` returns the fitted estimator: ``summary`` (one row
    per strategy and semantics), ``survival_function_`` (tidy curves with both intervals),
    ``at_risk_`` (pins still followed at :data:`AT_RISK_DAYS`), ``plot(ax=)``.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        release_every: float | None = 30.0,
        bootstrap: int = 200,
        seed: int = 0,
        trust_store: str | None = None,
    ) -> None:
        if release_every is not None and release_every <= 0:
            raise ValueError("release_every must be a positive number of days")
        self.alpha, self.release_every, self.bootstrap = alpha, release_every, bootstrap
        self.seed, self.trust_store = seed, trust_store
        self.fitters_: dict[tuple[str, str], Any] = {}
        self.survival_function_ = pd.DataFrame()
        self.at_risk_ = pd.DataFrame()
        self.summary = pd.DataFrame()
        self.weighting = ""

    def fit(self, replayed: pd.DataFrame) -> PinSurvival:
        """Fit every (strategy, semantics) of ``replayed`` (replay rows or a counts table)."""
        from lifelines import KaplanMeierFitter

        rows = "pins" not in replayed and set(_HOST) <= set(replayed.columns)
        if rows and self.release_every is not None:
            replayed = one_pin_per_release(replayed, self.release_every)
            self.weighting = f"one pin per host per release every {self.release_every:g} days"
        else:
            self.weighting = "every pin" + ("" if rows else " (a counts table has no hosts)")
        curves, summary, at_risk = [], [], []
        for (name, mode), group in replayed.groupby(_GROUP, sort=True):
            weights = group["pins"] if "pins" in group else pd.Series(1, index=group.index)
            days, broken = group["days_survived"].astype(float), group["broken"].astype(bool)
            fitter = KaplanMeierFitter(alpha=self.alpha).fit(
                days, event_observed=broken, weights=weights if "pins" in group else None,
                label=f"{name} ({mode})",
            )  # fmt: skip
            self.fitters_[(str(name), str(mode))] = fitter
            followup = float(days.max())
            boot = self._bootstrap(group) if rows and self.bootstrap else None
            curve = pd.concat([fitter.survival_function_, fitter.confidence_interval_], axis=1)
            curve.columns = ["survival", "ci_lower", "ci_upper"]
            curve = curve.rename_axis("days").reset_index()
            curve["at_risk"] = [float(weights[days >= t].sum()) for t in curve["days"]]
            if boot is not None:
                band = boot.curves(curve["days"].to_numpy(), self.alpha)
                curve["boot_lower"], curve["boot_upper"] = band
            curves.append(curve.assign(strategy=name, semantics=mode))
            table = _at_risk(days, weights, followup)
            at_risk.append(table.assign(strategy=str(name), semantics=str(mode)))
            summary.append({
                "strategy": name, "semantics": mode,
                "hosts": int(group[_HOST].drop_duplicates().shape[0]) if rows else pd.NA,
                "pins": int(weights.sum()), "breaks": int(weights[broken].sum()),
                "followup_days": followup,
                **_median(fitter, boot, self.alpha),
                **_one_year(fitter, boot, followup, self.alpha),
                **_turnbull_one_year(group, weights, followup),
                "weighting": self.weighting, "trust_store": self.trust_store,
            })  # fmt: skip
        self.survival_function_ = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
        self.at_risk_ = pd.concat(at_risk, ignore_index=True) if at_risk else pd.DataFrame()
        self.summary = pd.DataFrame(summary)
        return self

    def _bootstrap(self, group: pd.DataFrame) -> _Bootstrap:
        return _Bootstrap(group, self.bootstrap, np.random.default_rng(self.seed))

    def plot(self, ax: Any = None, *, semantics: str = "verified") -> Any:
        """Survival curves with confidence bands for one semantics; returns ``ax``."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 5))
        for (_name, mode), fitter in sorted(self.fitters_.items()):
            if mode == semantics:
                fitter.plot_survival_function(ax=ax, ci_show=True)
        ax.set_xlabel("days since the pin was taken")
        ax.set_ylabel("share of pins still accepted")
        title = f"Pin survival by strategy ({semantics} chain)"
        if self.trust_store:
            title += f"\ntrust store: {self.trust_store}"
        ax.set_title(title)
        return ax


def one_pin_per_release(replayed: pd.DataFrame, release_every: float) -> pd.DataFrame:
    """The pins an app releasing every ``release_every`` days would ship, timed from release.

    Per host, strategy and semantics, releases fall every ``release_every`` days from the
    host's first pin up to its last; each ships the last pin taken at or before it (no
    observation lies between that pin and the release, so the pin had not broken yet), and
    its survival runs from the release: ``pinned_at`` becomes the release time and the day
    columns shrink by the wait. This is the Python engine's ``release_every`` calendar,
    applied to rows pinned at every observation.
    """
    if replayed.empty:
        return replayed
    keys = [*_GROUP, *_HOST]
    frame = replayed.sort_values([*keys, "pinned_at"], kind="stable")
    first = frame.groupby(keys)["pinned_at"].transform("min")
    last = frame.groupby(keys)["pinned_at"].transform("max")
    period = pd.Timedelta(days=release_every)
    kept = []
    for release in range(int((last - first).max() / period) + 1):
        at = first + release * period
        eligible = frame[(frame["pinned_at"] <= at) & (at <= last)]
        shipped = eligible.groupby(keys, sort=False).tail(1).copy()
        wait = (at[shipped.index] - shipped["pinned_at"]).dt.total_seconds() / 86400
        for column in ("days_survived", "death_lower_days", "death_upper_days"):
            if column in shipped:
                shipped[column] = (shipped[column] - wait).clip(lower=0)
        shipped["pinned_at"] = at[shipped.index]
        kept.append(shipped)
    return pd.concat(kept, ignore_index=True)


class _Bootstrap:
    """Kaplan-Meier refitted on host resamples (numpy; lifelines is too slow for 200 x 14)."""

    def __init__(self, group: pd.DataFrame, rounds: int, rng: np.random.Generator) -> None:
        hosts = group[_HOST].astype(str).agg("\x00".join, axis=1)
        codes, _ = pd.factorize(hosts)
        self.days = group["days_survived"].to_numpy(float)
        self.broken = group["broken"].to_numpy(bool)
        members = [np.flatnonzero(codes == code) for code in range(codes.max() + 1)]
        self.samples = []
        for _ in range(rounds):
            chosen = rng.integers(0, len(members), len(members))
            self.samples.append(np.concatenate([members[c] for c in chosen]))

    def _survival_at(self, sample: np.ndarray, times: np.ndarray) -> np.ndarray:
        days, broken = self.days[sample], self.broken[sample]
        ordered = np.sort(days)
        events, deaths = np.unique(days[broken], return_counts=True)
        at_risk = len(days) - np.searchsorted(ordered, events, side="left")
        steps = np.cumprod(1 - deaths / at_risk) if len(events) else np.ones(0)
        index = np.searchsorted(events, times, side="right") - 1
        survival = np.ones(len(times))
        survival[index >= 0] = steps[index[index >= 0]]
        # Past a resample's own follow-up its curve is unknown (not flat), unless it hit 0.
        return np.where((times <= ordered[-1]) | (survival == 0), survival, np.nan)

    def curves(self, times: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Percentile band of survival at ``times`` over the resamples."""
        values = np.array([self._survival_at(s, times) for s in self.samples])
        with np.errstate(all="ignore"):
            lower = np.nanquantile(values, alpha / 2, axis=0)
            upper = np.nanquantile(values, 1 - alpha / 2, axis=0)
        return lower, upper

    def medians(self) -> np.ndarray:
        """Median survival time of each resample (inf: not reached)."""
        medians = []
        for sample in self.samples:
            days = np.unique(self.days[sample])
            survival = self._survival_at(sample, days)
            below = np.flatnonzero(survival <= 0.5)
            medians.append(days[below[0]] if below.size else np.inf)
        return np.array(medians)


def _median(fitter: Any, boot: _Bootstrap | None, alpha: float) -> dict[str, float]:
    from lifelines.utils import median_survival_times

    if boot is not None:
        medians = boot.medians()
        # inverted_cdf: no interpolation between a finite median and "not reached" (inf)
        lower, upper = np.quantile(medians, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
    else:
        interval = median_survival_times(fitter.confidence_interval_)
        lower, upper = float(interval.iloc[0, 0]), float(interval.iloc[0, 1])
    return {
        "median_days": float(fitter.median_survival_time_),
        "median_ci_lower": float(lower),
        "median_ci_upper": float(upper),
    }


def _one_year(
    fitter: Any, boot: _Bootstrap | None, followup: float, alpha: float
) -> dict[str, float]:
    if followup < 365 and float(fitter.predict(followup)) > 0:
        # Not followed for a year and not all broken: a year's survival is not known.
        return {"survival_1y": np.nan, "survival_1y_lower": np.nan, "survival_1y_upper": np.nan}
    if boot is not None:
        lower, upper = boot.curves(np.array([365.0]), alpha)
        lower_1y, upper_1y = float(lower[0]), float(upper[0])
    else:
        band = fitter.confidence_interval_
        row = band[band.index <= 365.0].iloc[-1]
        lower_1y, upper_1y = float(row.iloc[0]), float(row.iloc[1])
    return {
        "survival_1y": float(fitter.predict(365.0)),
        "survival_1y_lower": lower_1y,
        "survival_1y_upper": upper_1y,
    }


def _turnbull_one_year(
    group: pd.DataFrame, weights: pd.Series, followup: float
) -> dict[str, float]:
    """One-year survival from Turnbull's NPMLE on the death intervals of the replay rows.

    Where the NPMLE puts its mass inside an interval is not identified, so the estimate is
    the range between lifelines' lower and upper envelopes."""
    empty = {"turnbull_1y_lower": np.nan, "turnbull_1y_upper": np.nan}
    if "death_lower_days" not in group or (followup < 365 and not group["broken"].all()):
        return empty
    from lifelines import KaplanMeierFitter

    broken = group["broken"].astype(bool)
    lower = group["death_lower_days"].where(broken, group["days_survived"]).astype(float)
    upper = group["death_upper_days"].where(broken, np.inf).astype(float)
    if lower.isna().any() or upper.isna().any():
        return empty
    fitter = KaplanMeierFitter().fit_interval_censoring(
        lower.to_numpy(), upper.to_numpy(), weights=weights.to_numpy(float)
    )
    curve = fitter.survival_function_
    row = curve[curve.index <= 365.0].iloc[-1]
    return {
        "turnbull_1y_lower": float(row["NPMLE_estimate_lower"]),
        "turnbull_1y_upper": float(row["NPMLE_estimate_upper"]),
    }


def _at_risk(days: pd.Series, weights: pd.Series, followup: float) -> pd.DataFrame:
    shown = [t for t in AT_RISK_DAYS if t <= followup]
    return pd.DataFrame(
        {"days": shown, "at_risk": [float(weights[days >= t].sum()) for t in shown]}
    )
