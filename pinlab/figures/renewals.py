"""Figures of the renewal ledger (notebooks 02 and 05)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pinlab.figures._base import axes, dates, empty, legend_outside, percent

__all__ = [
    "VALIDITY_CAPS",
    "plot_change_rates",
    "plot_key_reuse_by_ca",
    "plot_key_survival",
    "plot_keys_per_host",
    "plot_reuse_by_host",
    "plot_validity",
]

VALIDITY_CAPS = {398: "398 d (since 2020)", 200: "200 d (2026)", 100: "100 d (2027)"}
"""CA/Browser Forum maximum leaf validity: 398 days since September 2020, then the steps of
ballot SC-081 (200 days from March 2026, 100 from March 2027; 47 from March 2029)."""


def plot_change_rates(rates: pd.DataFrame, ax: Any = None) -> Any:
    """What changed at renewals (:func:`pinlab.analysis.change_rates`)."""
    import seaborn as sns

    ax = axes(ax, (8.0, 3.4))
    title = "What changed when the leaf certificate changed"
    known = rates.dropna(subset=["share"])
    if known.empty:
        return empty(ax, title, "no renewals observed")
    sns.barplot(known, x="share", y="change", color=sns.color_palette()[0], ax=ax)
    labels = [f"{s:.0f}% of {n}" for s, n in zip(known["share"], known["renewals"], strict=True)]
    ax.bar_label(ax.containers[0], labels=labels, padding=3, fontsize=9)
    ax.set(title=title, xlabel="share of renewals (%)", ylabel="", xlim=(0, 115))
    percent(ax, "x")
    return ax


def plot_keys_per_host(summary: pd.DataFrame, ax: Any = None) -> Any:
    """Distinct leaf keys against leaf certificates, per host (``history.host_summary``)."""
    import seaborn as sns

    ax = axes(ax, (6.5, 4.8))
    title = "Fresh key per certificate, or one key for years?"
    if summary.empty:
        return empty(ax, title, "no hosts")
    hosts = summary.groupby(["leaves", "distinct_keys"]).size().rename("hosts").reset_index()
    top = float(max(hosts["leaves"].max(), hosts["distinct_keys"].max())) + 0.5
    ax.plot([0.5, top], [0.5, top], ls="--", color="0.55", lw=1, label="a new key every time")
    ax.axhline(1, ls=":", color="0.35", lw=1, label="one key kept")
    sns.scatterplot(
        hosts, x="leaves", y="distinct_keys", size="hosts", sizes=(40, 400), alpha=0.75,
        ax=ax, legend="brief",
    )  # fmt: skip
    ax.set(
        title=title, xlabel="leaf certificates seen (count)", ylabel="distinct leaf keys (count)"
    )
    ax.set(xlim=(0.5, top), ylim=(0.5, top))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="hosts (point size)")
    return ax


def plot_reuse_by_host(summary: pd.DataFrame, ax: Any = None) -> Any:
    """Per host with renewals: the share of renewals that kept the leaf key."""
    import seaborn as sns

    ax = axes(ax)
    title = "Key reuse is a habit of each host"
    renewed = summary[summary["renewals"] > 0].dropna(subset=["key_reuse_rate"])
    if renewed.empty:
        return empty(ax, title, "no host renewed in this data")
    sns.histplot(x=100 * renewed["key_reuse_rate"], bins=np.linspace(0, 100, 11), ax=ax)
    ax.set(title=title, xlabel="renewals that kept the leaf key (% per host)", ylabel="hosts")
    percent(ax, "x")
    return ax


def plot_key_survival(curve: pd.DataFrame, ax: Any = None) -> Any:
    """How long leaf keys stay in service (Kaplan-Meier, :func:`analysis.kaplan_meier`)."""
    ax = axes(ax)
    title = "How long a leaf key stays in service"
    if curve.empty:
        return empty(ax, title, "no leaf keys")
    ax.step(curve["days"], 100 * curve["survival"], where="post", lw=2)
    ax.fill_between(
        curve["days"], 100 * curve["ci_lower"], 100 * curve["ci_upper"], step="post", alpha=0.2
    )
    ax.set(
        title=title, xlabel="days since the key was first seen", ylabel="keys still served (%)",
        ylim=(0, 102),
    )  # fmt: skip
    percent(ax, "y")
    return ax


def plot_validity(validity: pd.DataFrame, ax: Any = None) -> Any:
    """Validity of each leaf against its issue date, with the CA/Browser Forum caps."""
    import seaborn as sns

    ax = axes(ax)
    title = "Leaf validity by issue date"
    if validity.empty:
        return empty(ax, title, "no leaf certificates")
    sns.scatterplot(validity, x="not_before", y="validity_days", hue="key_label", alpha=0.8, ax=ax)
    highest = float(validity["validity_days"].max())
    for days, label in VALIDITY_CAPS.items():
        if days < highest * 1.3:
            ax.axhline(days, ls=":", color="0.5", lw=1)
            ax.text(1.0, days, f" {label}", transform=ax.get_yaxis_transform(), va="center",
                    fontsize=8, color="0.35")  # fmt: skip
    ax.set(title=title, xlabel="issued (not before)", ylabel="validity (days)")
    ax.set_ylim(bottom=0)
    dates(ax)
    legend_outside(ax, "leaf key")
    if ax.get_legend() is not None:
        ax.get_legend().set_bbox_to_anchor((1.16, 1))
    return ax


def plot_key_reuse_by_ca(reuse: pd.DataFrame, ax: Any = None) -> Any:
    """Per CA, the share of renewals that kept the leaf key, with its Wilson 95 % interval
    (:func:`pinlab.history.key_reuse_by_ca`), labelled "k of n"."""
    ax = axes(ax, (7.5, 0.5 + 0.45 * max(len(reuse), 2)))
    title = "Key kept at reissue, per CA"
    if reuse.empty:
        return empty(ax, title, "no renewals")
    rows = reuse.iloc[::-1]  # most renewals at the top
    positions = np.arange(len(rows))
    share = 100 * rows["share"].to_numpy(dtype=float)
    errors = [
        share - 100 * rows["ci_lower"].to_numpy(dtype=float),
        100 * rows["ci_upper"].to_numpy(dtype=float) - share,
    ]
    ax.barh(positions, share, xerr=errors, capsize=3, alpha=0.8)
    for y, k, n in zip(positions, rows["key_reuses"], rows["renewals"], strict=True):
        ax.text(101, y, f" {k} of {n}", va="center", fontsize=9)
    ax.set_yticks(positions, [str(ca) for ca in rows["ca"]])
    ax.set(title=title, xlabel="renewals that kept the leaf key (%, 95 % Wilson interval)",
           ylabel="", xlim=(0, 118))  # fmt: skip
    percent(ax, "x")
    return ax
