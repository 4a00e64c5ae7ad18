"""A sparse-sampling check: how far each estimator moves from the truth as scans thin out.

Real histories are observed every few weeks or months, so a pin's death is only known to lie
between its last passing and its first failing observation. :func:`thinning_check` takes a
densely observed history, keeps one observation per host every N days (:func:`thin`),
replays both the dense and the thinned data, and compares, per (every, strategy,
semantics) and measure (the median and survival at fixed days):

- the **truth**, Kaplan-Meier on the dense replay (with daily observations a death is known
  to the day), or on replay rows the caller knows to be the truth;
- **Kaplan-Meier** on the thinned replay (right-censored: the death placed at the first
  failing observation, so it drifts later as observations thin out);
- **Turnbull's NPMLE** on the thinned replay (interval-censored, the death somewhere in
  ``death_lower_days``..``death_upper_days``): an envelope, reported as its bounds, its
  midpoint and whether the truth lies inside.

Everything is a tidy frame in and out; no I/O. With ``certificate_dates=False`` the death
intervals ignore the certificates' dates and run from the last passing observation to the
first failing one: for the rotation lab, whose observations carry a virtual clock while
Pebble dates certificates by the real one (a new leaf's notBefore then lies after every
observation, and the narrowing would collapse each interval onto the failing observation).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pinlab.errors import PinlabError
from pinlab.pins import Semantics
from pinlab.survival.fit import PinSurvival, one_pin_per_release
from pinlab.survival.python_engine import TrustStores, observed_chains, replay
from pinlab.survival.rules import ObservedChain

__all__ = ["SPARSE_COLUMNS", "SparseCheckError", "thin", "thinning_check", "turnbull_curve"]

SPARSE_COLUMNS = [
    "every", "strategy", "semantics", "measure", "truth", "km", "km_error",
    "turnbull_lower", "turnbull_upper", "turnbull", "turnbull_error", "truth_in_turnbull",
    "observations", "pins", "breaks",
]  # fmt: skip
"""One row per (every, strategy, semantics, measure). ``measure`` is ``median_days`` or
``survival_<d>d``; ``km_error`` and ``turnbull_error`` are estimate minus truth (the
Turnbull estimate being its envelope's midpoint); ``truth_in_turnbull`` says whether the
truth lies within the envelope (one day of slack for medians, 0.01 for survival).
``observations`` are those kept by the thinning, ``pins`` and ``breaks`` those fitted."""

_HOST = ["host", "port", "sni"]
_NO_CURVE = pd.DataFrame({"days": [0.0], "lower": [np.nan], "upper": [np.nan]})
_GROUP = ["strategy", "semantics"]


class SparseCheckError(PinlabError):
    """The sparse-sampling check cannot run on the data given."""


def thin(observations: pd.DataFrame, every: float) -> pd.DataFrame:
    """One observation per host every ``every`` days: the first at or after each grid point.

    The grid runs per (host, port, SNI) from the host's first observation to its last; a
    gap in the data can make two grid points keep the same observation, kept once.
    """
    if every <= 0:
        raise SparseCheckError("every must be a positive number of days")
    if observations.empty:
        return observations
    step = np.int64(round(every * 86400 * 1e9))
    frame = observations.sort_values("observed_at", kind="stable")
    kept = []
    for _, group in frame.groupby(_HOST, sort=False, dropna=False):
        times = pd.to_datetime(group["observed_at"], utc=True).dt.tz_localize(None)
        nanos = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        grid = nanos[0] + step * np.arange((nanos[-1] - nanos[0]) // step + 1)
        chosen = np.unique(np.searchsorted(nanos, grid, side="left"))
        kept.append(group.iloc[chosen[chosen < len(group)]])
    return pd.concat(kept).sort_index()


def turnbull_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Turnbull's NPMLE of replay rows: ``days``, ``lower``, ``upper`` (the envelope).

    A broken pin died in ``death_lower_days``..``death_upper_days``; a censored one lived
    past ``days_survived``. Rows without bounds (an older replay) raise.
    """
    from lifelines import KaplanMeierFitter

    broken = rows["broken"].astype(bool)
    lower = rows["death_lower_days"].where(broken, rows["days_survived"]).astype(float)
    upper = rows["death_upper_days"].where(broken, np.inf).astype(float)
    if lower.isna().any() or upper.isna().any():
        raise SparseCheckError("replay rows lack death bounds (death_lower/upper_days)")
    fitter = KaplanMeierFitter().fit_interval_censoring(lower.to_numpy(), upper.to_numpy())
    curve = fitter.survival_function_
    return pd.DataFrame({
        "days": curve.index.to_numpy(float),
        "lower": curve["NPMLE_estimate_lower"].to_numpy(float),
        "upper": curve["NPMLE_estimate_upper"].to_numpy(float),
    })  # fmt: skip


def thinning_check(
    observations: pd.DataFrame,
    certificates: pd.DataFrame,
    *,
    trust_stores: TrustStores,
    every: Sequence[float] = (30, 90, 180),
    days: Sequence[float] = (30, 90, 180, 365),
    strategies: Iterable[str] | None = ("leaf-spki",),
    semantics: Iterable[Semantics] = (Semantics.VERIFIED, Semantics.PRESENTED),
    truth: pd.DataFrame | None = None,
    scans: pd.DataFrame | None = None,
    validate_at: datetime | None = None,
    release_every: float | None = None,
    certificate_dates: bool = True,
) -> pd.DataFrame:
    """Thin ``observations`` to every N days, replay, fit both estimators, compare to the truth.

    ``observations``/``certificates`` are a store's tables, observed densely (daily, say);
    ``trust_stores``, ``scans`` and ``validate_at`` go to :func:`observed_chains`.
    ``truth`` is replay rows whose Kaplan-Meier is the truth (by default the dense data's
    replay). ``release_every`` weights pins as :class:`PinSurvival` does (None: every pin).
    ``days`` beyond a fit's follow-up give empty estimates. Returns :data:`SPARSE_COLUMNS`.
    """
    modes, chosen = list(semantics), list(strategies) if strategies is not None else None

    def replayed(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        chains = observed_chains(
            frame, certificates, trust_stores=trust_stores, validate_at=validate_at, scans=scans
        )
        rows = replay(chains, strategies=chosen, semantics=modes)
        if not certificate_dates:
            rows = _observation_bounds(rows, chains)
        if release_every is not None:
            rows = one_pin_per_release(rows, release_every)
        return rows, len(frame)

    dense, _ = replayed(observations)
    reference = dense if truth is None else truth
    if reference.empty:
        raise SparseCheckError("no pins to take the truth from: the dense replay is empty")
    truths = {
        key: _measures(group, days, turnbull=False) for key, group in reference.groupby(_GROUP)
    }
    records: list[dict[str, Any]] = []
    for step in every:
        rows, kept = replayed(thin(observations, step))
        for (name, mode), group in rows.groupby(_GROUP, sort=True):
            if (name, mode) not in truths:
                continue
            estimates = _measures(group, days)
            for measure, true in truths[(name, mode)].items():
                records.append({
                    "every": float(step), "strategy": name, "semantics": mode,
                    "measure": measure, "truth": true["km"], **_compare(true["km"],
                    estimates[measure], slack=1.0 if measure == "median_days" else 0.01),
                    "observations": kept, "pins": len(group),
                    "breaks": int(group["broken"].sum()),
                })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=SPARSE_COLUMNS)


def _measures(
    rows: pd.DataFrame, days: Sequence[float], *, turnbull: bool = True
) -> dict[str, dict[str, float]]:
    """measure -> {km, lower, upper}: KM and the Turnbull envelope of one group's rows
    (the envelope empty with ``turnbull=False``: the truth needs none)."""
    fitter = PinSurvival(release_every=None, bootstrap=0).fit(rows).fitters_
    km = next(iter(fitter.values()))
    followup = float(rows["days_survived"].max())
    curve = turnbull_curve(rows) if turnbull else _NO_CURVE
    low, high = _median_range(curve)
    measures = {"median_days": {"km": float(km.median_survival_time_), "lower": low, "upper": high}}
    for day in days:
        known = day <= followup or float(km.predict(followup)) == 0
        lower, upper = _envelope_at(curve, day) if known else (np.nan, np.nan)
        measures[f"survival_{day:g}d"] = {
            "km": float(km.predict(day)) if known else np.nan, "lower": lower, "upper": upper,
        }  # fmt: skip
    return measures


def _envelope_at(curve: pd.DataFrame, day: float) -> tuple[float, float]:
    """Survival at ``day`` as the NPMLE allows it, conservatively: between the lower curve of
    the first step after ``day`` and the upper curve of the last step at or before it.

    lifelines tabulates the NPMLE at the Turnbull intervals' ends; between two ends the mass
    of the interval may lie anywhere, so a day inside one is bracketed by both."""
    times = curve["days"].to_numpy(float)
    after = int(np.searchsorted(times, day, side="right"))
    lower = float(curve["lower"].iloc[after]) if after < len(curve) else 0.0
    upper = float(curve["upper"].iloc[max(after - 1, 0)])
    return lower, upper


def _median_range(curve: pd.DataFrame) -> tuple[float, float]:
    """Where the NPMLE may cross one half, with the bracketing of :func:`_envelope_at`."""
    times = curve["days"].to_numpy(float)
    low = np.flatnonzero(curve["lower"].to_numpy(float) <= 0.5)
    high = np.flatnonzero(curve["upper"].to_numpy(float) <= 0.5)
    earliest = float(times[max(low[0] - 1, 0)]) if low.size else np.inf
    latest = float(times[high[0]]) if high.size else np.inf
    return earliest, latest


def _compare(truth: float, estimate: dict[str, float], *, slack: float) -> dict[str, Any]:
    lower, upper = sorted((estimate["lower"], estimate["upper"]))
    middle = (lower + upper) / 2 if np.isfinite(upper) else np.inf
    inside = bool(lower - slack <= truth <= upper + slack)
    return {
        "km": estimate["km"], "km_error": estimate["km"] - truth,
        "turnbull_lower": lower, "turnbull_upper": upper, "turnbull": middle,
        "turnbull_error": middle - truth,
        "truth_in_turnbull": inside if not np.isnan(truth) else pd.NA,
    }  # fmt: skip


def _observation_bounds(rows: pd.DataFrame, chains: Sequence[ObservedChain]) -> pd.DataFrame:
    """Death bounds from observations alone: (last checked observation, first failing one].

    The last checked observation before the break, or the pin time when there is none, as
    the replay finds it, without the certificate dates.
    """
    checked: dict[tuple[Any, ...], list[datetime]] = {}
    for chain in chains:
        for mode in Semantics:
            if chain.chain(mode) is not None:
                key = (chain.host, chain.port, chain.sni, chain.lineage, mode.value)
                checked.setdefault(key, []).append(chain.observed_at)
    for times in checked.values():
        times.sort()
    rows = rows.copy()
    lower: list[float] = []
    columns = ["host", "port", "sni", "lineage", "semantics"]
    keys = zip(*(rows[c] for c in columns), strict=True)
    pinned_at = [t.to_pydatetime() for t in pd.to_datetime(rows["pinned_at"], utc=True)]
    broken_at = pd.to_datetime(rows["broken_at"], utc=True)
    for key, pinned, broke, broken in zip(
        keys, pinned_at, broken_at, rows["broken"].astype(bool), strict=True
    ):
        if not broken:
            lower.append(np.nan)
            continue
        times = checked.get(tuple(key), [])
        index = bisect.bisect_left(times, broke.to_pydatetime())
        passed = max(times[index - 1], pinned) if index > 0 else pinned
        lower.append((passed - pinned).total_seconds() / 86400)
    rows["death_lower_days"] = lower
    rows["death_upper_days"] = rows["days_survived"].where(rows["broken"].astype(bool))
    return rows
