"""Fitting survival curves to a replay: Kaplan-Meier per strategy and semantics (lifelines)."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["PinSurvival"]


class PinSurvival:
    """Kaplan-Meier survival of pins per strategy and semantics, in lifelines' style.

    ``PinSurvival().fit(replay_frame)`` returns the fitted estimator; ``summary`` is a
    DataFrame, ``survival_function_`` a tidy DataFrame, ``plot(ax=)`` draws the curves.
    """

    def __init__(self, *, alpha: float = 0.05) -> None:
        self.alpha = alpha
        self.fitters_: dict[tuple[str, str], Any] = {}
        self.survival_function_ = pd.DataFrame()
        self.summary = pd.DataFrame()

    def fit(self, replayed: pd.DataFrame) -> PinSurvival:
        """Fit one Kaplan-Meier estimator per (strategy, semantics) of ``replayed``.

        ``replayed`` is a replay (one row per pin) or a survival table with a ``pins``
        column counting the pins of each (strategy, semantics, days_survived, broken), as
        :func:`pinlab.survival.replay_store` gives it: the curves are the same.
        """
        from lifelines import KaplanMeierFitter
        from lifelines.utils import median_survival_times

        curves, summary = [], []
        for (name, mode), group in replayed.groupby(["strategy", "semantics"], sort=True):
            weights = group["pins"] if "pins" in group else pd.Series(1, index=group.index)
            fitter = KaplanMeierFitter(alpha=self.alpha).fit(
                group["days_survived"], event_observed=group["broken"],
                weights=weights if "pins" in group else None, label=f"{name} ({mode})",
            )  # fmt: skip
            self.fitters_[(str(name), str(mode))] = fitter
            curve = pd.concat([fitter.survival_function_, fitter.confidence_interval_], axis=1)
            curve.columns = ["survival", "ci_lower", "ci_upper"]
            curves.append(
                curve.rename_axis("days").reset_index().assign(strategy=name, semantics=mode)
            )
            interval = median_survival_times(fitter.confidence_interval_)
            summary.append({
                "strategy": name, "semantics": mode, "pins": int(weights.sum()),
                "breaks": int(weights[group["broken"].astype(bool)].sum()),
                "median_days": fitter.median_survival_time_,
                "median_ci_lower": float(interval.iloc[0, 0]),
                "median_ci_upper": float(interval.iloc[0, 1]),
                "survival_1y": float(fitter.predict(365.0)),
            })  # fmt: skip
        self.survival_function_ = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
        self.summary = pd.DataFrame(summary)
        return self

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
        ax.set_title(f"Pin survival by strategy ({semantics} chain)")
        return ax
