"""Figures of update-lag breakage, pin-set expiry and forward scenarios (notebook 03)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pinlab.figures._base import (
    axes,
    empty,
    legend_outside,
    percent,
    strategy_colours,
    strategy_order,
)

__all__ = ["plot_expiry_tradeoff", "plot_scenarios", "plot_stranded"]


def plot_stranded(stranded: pd.DataFrame, ax: Any = None, *, horizon_days: int = 730) -> Any:
    """Mean share of users stranded per strategy, by day since the first app release
    (:func:`pinlab.analysis.stranded_by_day`)."""
    import seaborn as sns

    ax = axes(ax, (8.5, 4.2))
    title = "Users an app release strands, while they wait for the next"
    shown = stranded[stranded["day"] <= horizon_days] if not stranded.empty else stranded
    if shown.empty:
        return empty(ax, title, "no replay on a release calendar")
    order = strategy_order(shown["strategy"])
    sns.lineplot(
        shown, x="day", y="stranded", hue="strategy", hue_order=order,
        palette=strategy_colours(order), errorbar=None, lw=1.6, ax=ax,
    )  # fmt: skip
    ax.set(
        title=title, xlabel="days since the first release pinned the server",
        ylabel="users whose app rejects the server (%)", ylim=(0, None),
    )  # fmt: skip
    percent(ax, "y")
    legend_outside(ax, "strategy")
    return ax


def plot_expiry_tradeoff(tradeoff: pd.DataFrame, ax: Any = None) -> Any:
    """Bricked against unprotected user-days per strategy, one point per pin-set expiry
    (``pinlab.advice.updates.expiry_tradeoff``)."""
    import seaborn as sns

    ax = axes(ax, (8.5, 4.6))
    title = "What pin-set expiry trades: bricked days for unprotected days"
    if tradeoff.empty:
        return empty(ax, title, "no replay on a release calendar")
    shown = tradeoff.assign(
        expiry=tradeoff["expiry_days"].map(lambda d: "never" if pd.isna(d) else f"{d:.0f} d"),
        bricked=tradeoff["bricked_user_days"] / tradeoff["timelines"],
        unprotected=tradeoff["unprotected_user_days"] / tradeoff["timelines"],
    )
    order, colours = strategy_order(shown["strategy"]), strategy_colours(shown["strategy"])
    sns.lineplot(
        shown, x="unprotected", y="bricked", hue="strategy", hue_order=order, palette=colours,
        sort=False, estimator=None, legend=False, lw=1.2, ax=ax,
    )  # fmt: skip
    sns.scatterplot(
        shown, x="unprotected", y="bricked", hue="strategy", hue_order=order, palette=colours,
        style="expiry", s=70, ax=ax,
    )  # fmt: skip
    ax.set(
        title=title,
        xlabel="unprotected user-days per host (pins expired, per 1,000 users)",
        ylabel="bricked user-days per host (per 1,000 users)",
    )  # fmt: skip
    legend_outside(ax, None)
    return ax


def plot_scenarios(summary: pd.DataFrame, ax: Any = None) -> Any:
    """One-year pin survival per strategy under each forward scenario
    (``pinlab.advice.forward.scenario_summary``), as a heat map."""
    import seaborn as sns

    ax = axes(ax, (8.5, 4.2))
    title = "Pins alive after one year, under tomorrow's rules (%)"
    if summary.empty:
        return empty(ax, title, "no host profile with a verified chain to project")
    table = summary.pivot_table(index="strategy", columns="scenario", values="survival_1y")
    order = [s for s in dict.fromkeys(summary["scenario"]) if s in table.columns]
    if not order:
        return empty(ax, title, "no pin followed for a year: project further (forward_years)")
    table = 100 * table[order].loc[strategy_order(table.index)]
    pins = summary.pivot_table(index="strategy", columns="scenario", values="pins")
    pins = pins.reindex(index=table.index, columns=table.columns)
    labels = table.round(0).astype("Int64").astype(str) + "\nn=" + pins.astype("Int64").astype(str)
    table.columns = [str(name).replace("+", "\n+ ") for name in table.columns]
    sns.heatmap(
        table, annot=labels.to_numpy(), fmt="", vmin=0, vmax=100, cmap="RdYlGn",
        linewidths=0.5, cbar_kws={"label": "%"}, ax=ax, annot_kws={"fontsize": 7},
    )  # fmt: skip
    ax.set(title=title, xlabel="validity rule (+ random intermediate rotation)", ylabel="")
    ax.tick_params(axis="x", rotation=0, labelsize=9)
    return ax
