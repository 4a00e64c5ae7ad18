"""Figures of what a campaign gathered (notebook 01)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pinlab.figures._base import (
    axes,
    empty,
    legend_outside,
    percent,
    plain_log_ticks,
    single_hue_legend,
)

__all__ = [
    "plot_chain_lengths",
    "plot_handshake_times",
    "plot_leaf_keys",
    "plot_statuses",
    "plot_throughput",
    "plot_validation",
]


# -- collection ----------------------------------------------------------------------------


def plot_statuses(counts: pd.DataFrame, ax: Any = None) -> Any:
    """Share of attempts per status, per source (:func:`pinlab.analysis.status_counts`)."""
    import seaborn as sns

    title = "What each attempt returned"
    if counts.empty:
        return empty(axes(ax), title, "no observations in this store")
    ax = axes(ax, (8.0, 1.4 + 0.45 * len(counts)))
    sns.barplot(counts, x="share", y="status", hue="source", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.0f%%", padding=3, fontsize=9)
    ax.set(title=title, xlabel="share of the source's attempts (%)", ylabel="status")
    ax.set_xlim(0, 110)
    legend_outside(ax, "source")
    single_hue_legend(ax, counts["source"].nunique())
    return ax


def plot_chain_lengths(profile: pd.DataFrame, ax: Any = None) -> Any:
    """How many certificates servers sent (:func:`pinlab.analysis.chain_profile`)."""
    import seaborn as sns

    ax = axes(ax)
    title = "How long the presented chains are"
    if profile.empty:
        return empty(ax, title, "no ok observations")
    shares = (
        profile.groupby("source")["chain_length"]
        .value_counts(normalize=True)
        .mul(100)
        .rename("share")
        .reset_index()
    )
    sns.barplot(shares, x="chain_length", y="share", hue="source", ax=ax)
    legend_outside(ax, "source")
    single_hue_legend(ax, shares["source"].nunique())
    ax.set(title=title, xlabel="certificates the server sent (count)", ylabel="ok observations (%)")
    return ax


def plot_leaf_keys(profile: pd.DataFrame, ax: Any = None) -> Any:
    """Distinct leaf certificates per key type."""
    import seaborn as sns

    ax = axes(ax)
    title = "Leaf key types"
    if profile.empty:
        return empty(ax, title, "no ok observations")
    leaves = profile.drop_duplicates("leaf")
    counts = leaves.groupby(["leaf_key", "source"]).size().rename("leaves").reset_index()
    order = leaves["leaf_key"].value_counts().index
    sns.barplot(counts, x="leaves", y="leaf_key", hue="source", order=order, ax=ax)
    legend_outside(ax, "source")
    single_hue_legend(ax, counts["source"].nunique())
    ax.set(title=title, xlabel="distinct leaf certificates (count)", ylabel="leaf key")
    return ax


def plot_validation(profile: pd.DataFrame, ax: Any = None) -> Any:
    """Validation results of the ok observations, as shares of each source."""
    import seaborn as sns

    ax = axes(ax, (8.0, 1.2 + 0.6 * max(profile["source"].nunique(), 1)))
    title = "Did the chain validate against the trust store?"
    if profile.empty:
        return empty(ax, title, "no ok observations")
    sns.histplot(
        profile, y="source", hue="validation", multiple="fill", stat="proportion",
        discrete=True, shrink=0.7, ax=ax,
    )  # fmt: skip
    percent(ax, "x", whole=1)
    ax.set(title=title, xlabel="ok observations (%)", ylabel="source")
    legend_outside(ax, "validation")
    return ax


def plot_handshake_times(profile: pd.DataFrame, ax: Any = None) -> Any:
    """Distribution of handshake times by leaf key type (observations that timed it)."""
    import seaborn as sns

    ax = axes(ax)
    title = "TLS handshake time by leaf key type"
    timed = profile.dropna(subset=["handshake_ms"])
    timed = timed[timed["handshake_ms"] > 0]
    if timed.empty:
        return empty(ax, title, "no timed handshakes (imports carry no timings)")
    order = sorted(timed["leaf_key"].unique())
    sns.ecdfplot(timed, x="handshake_ms", hue="leaf_key", hue_order=order, log_scale=True, ax=ax)
    plain_log_ticks(ax, "x")
    ax.set(title=title, xlabel="handshake time (ms, log scale)", ylabel="share of handshakes")
    percent(ax, "y", whole=1)
    legend_outside(ax, "leaf key")
    return ax


def plot_throughput(overview: pd.DataFrame, ax: Any = None) -> Any:
    """Observations per second of the scans run on a real clock."""
    import seaborn as sns

    ax = axes(ax, (8.0, 2.5))
    title = "Collection throughput"
    timed = overview.dropna(subset=["per_second"])
    if timed.empty:
        return empty(
            ax, title, "no real-time scans here (lab runs and imports use a virtual clock)"
        )
    timed = timed.assign(scan=timed["label"].fillna(timed["scan_id"].str[:8]))
    sns.barplot(timed, x="per_second", y="scan", ax=ax)
    ax.set(title=title, xlabel="observations per second (whole scan)", ylabel="scan")
    return ax
