"""Figures of what a pin check costs (notebook 04), from ``pinlab bench pins`` rows."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pinlab.figures._base import axes, empty, legend_outside, plain_log_ticks, single_hue_legend

__all__ = [
    "bench_focus",
    "plot_by_key_and_length",
    "plot_cost_vs_limit",
    "plot_handshake_share",
]

LIMIT = "limit"
CHECK_AT_ANCHOR = "pin check: match at anchor"
VALIDATE_PINS = "validation + pins"
CACHED = "PinSet.check, cached"
WITH_PINS = "verify_chain + check"
HANDSHAKE = "TLS handshake (loopback)"


def bench_focus(rows: pd.DataFrame) -> tuple[str, int]:
    """The (key type, chain length) the single-configuration figures show: P-256 and 3
    certificates when measured (a typical Let's Encrypt ECDSA chain), else the first."""
    keys = list(dict.fromkeys(rows["key_type"]))
    key = "P-256" if "P-256" in keys else keys[0]
    lengths = sorted(set(rows.loc[rows["key_type"] == key, "chain_length"]) - {1} or {1})
    return key, 3 if 3 in lengths else lengths[-1]


def _smallest_pin_sets(rows: pd.DataFrame) -> pd.DataFrame:
    sizes = rows["pin_set_size"].fillna(0)
    smallest = sizes.groupby([rows["operation"], rows["implementation"]]).transform("min")
    return rows[sizes == smallest]


def plot_cost_vs_limit(rows: pd.DataFrame, ax: Any = None) -> Any:
    """Median time of each operation on one configuration, against the limit line."""
    import seaborn as sns

    title = "Cost per operation against the limit"
    if rows.empty:
        return empty(axes(ax), title, "no benchmark rows")
    key, length = bench_focus(rows)
    shown = rows[(rows["key_type"] == key) & rows["chain_length"].isin([1, length])]
    shown = _smallest_pin_sets(shown).assign(
        micros=lambda f: f["median_ns"] / 1000,
        row=lambda f: f["operation"] + ": " + f["implementation"],
    )
    ax = axes(ax, (9.0, 1.3 + 0.3 * len(shown)))
    operations = list(dict.fromkeys(shown["operation"]))
    colours = dict(zip(operations, sns.color_palette("colorblind", len(operations)), strict=True))
    floor = float(shown["micros"].min()) / 3
    positions = range(len(shown))
    ax.hlines(positions, floor, shown["micros"], color=shown["operation"].map(colours), lw=2)
    ax.scatter(shown["micros"], positions, color=shown["operation"].map(colours), s=40, zorder=3)
    for y, (micros, ratio) in enumerate(zip(shown["micros"], shown["ratio_to_limit"], strict=True)):
        label = f"×{ratio:,.1f}" if ratio < 100 else f"×{ratio:,.0f}"  # noqa: RUF001
        ax.annotate(label, (micros, y), textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.set_xscale("log")
    ax.set_yticks(list(positions), shown["row"].tolist(), fontsize=8)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(floor, float(shown["micros"].max()) * 4)
    plain_log_ticks(ax, "x")
    limit = shown.loc[shown["operation"] == LIMIT, "micros"]
    if not limit.empty:
        ax.axvline(float(limit.iloc[0]), color="0.3", ls="--", lw=1)
    ax.grid(axis="y", visible=False)
    ax.set(
        title=f"{title} ({key}, chain of {length}; label: times the limit)",
        xlabel="median time per call (µs, log scale)", ylabel="",
    )  # fmt: skip
    return ax


def plot_handshake_share(rows: pd.DataFrame, ax: Any = None) -> Any:
    """Time pinning adds, as a share of a bare loopback TLS handshake; the pin check alone
    (cached digests, whole chain walked) beside validation + pins and the pinned handshake."""
    import seaborn as sns

    ax = axes(ax, (8.0, 3.4))
    title = "What pinning adds to a TLS handshake"
    shown = rows.dropna(subset=["overhead_pct_of_handshake"])
    if shown.empty:
        return empty(ax, title, "no handshake rows (the suite ran without handshakes)")
    shown = _smallest_pin_sets(shown)[
        ["key_type", "chain_length", "implementation", "overhead_pct_of_handshake", "iqr_ns",
         "median_ns"]
    ]  # fmt: skip
    bare = rows[(rows["operation"] == HANDSHAKE) & (rows["pin_set_size"].fillna(0) == 0)]
    checks = _smallest_pin_sets(
        rows[(rows["operation"] == CHECK_AT_ANCHOR) & (rows["implementation"] == CACHED)]
    )
    alone = checks.merge(
        bare[["key_type", "chain_length", "median_ns"]], on=["key_type", "chain_length"],
        suffixes=("", "_handshake"),
    ).assign(
        implementation="pin check alone (" + CACHED + ")",
        overhead_pct_of_handshake=lambda f: 100 * f["median_ns"] / f["median_ns_handshake"],
    )  # fmt: skip
    shown = pd.concat([alone[shown.columns], shown], ignore_index=True)
    shown, unresolved = _resolved(shown)
    if shown.empty:
        return empty(ax, title, _unresolved_text(unresolved))
    medians = shown.groupby("implementation")["overhead_pct_of_handshake"].median()
    shown = shown.assign(
        row=shown["implementation"].map(lambda name: f"{name}\nmedian {medians[name]:.2g}%")
    )
    sns.stripplot(
        shown, x="overhead_pct_of_handshake", y="row", hue="key_type", log_scale=True,
        jitter=0.15, size=6, alpha=0.8, ax=ax,
    )  # fmt: skip
    plain_log_ticks(ax, "x")
    ax.set(title=title, xlabel="added time (% of a bare loopback handshake, log scale)", ylabel="")
    legend_outside(ax, "key type")
    single_hue_legend(ax, shown["key_type"].nunique())
    if not unresolved.empty:
        ax.text(
            0, -0.3, _unresolved_text(unresolved), transform=ax.transAxes, va="top",
            fontsize=8,
        )  # fmt: skip
    return ax


def _resolved(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows whose added time stands above the measurement's own spread, and the others.

    An in-loop overhead is the difference of two noisy handshake medians: under load it can
    come out negative or smaller than the runs' interquartile range. Such a row is "not
    resolved at this load" and is listed, never drawn as a cost (nor dropped silently by a
    log scale)."""
    from pinlab.analysis import overhead_resolution

    spread, resolved = overhead_resolution(rows)
    return rows[resolved], rows[~resolved].assign(spread_pct=spread[~resolved])


def _unresolved_text(rows: pd.DataFrame) -> str:
    lines = [
        f"not resolved at this load: {row.implementation} ({row.key_type}, chain of "
        f"{row.chain_length}): {row.overhead_pct_of_handshake:+.0f}% with a spread of "
        f"{row.spread_pct:.0f}% between runs"
        for row in rows.itertuples()
    ]
    return "\n".join(lines) or "no rows"


def plot_by_key_and_length(rows: pd.DataFrame, ax: Any = None) -> Any:
    """The pin check and validation + pins across key types and chain lengths."""
    import seaborn as sns

    ax = axes(ax)
    title = "Cost by key type and chain length"
    chosen = rows[
        ((rows["operation"] == CHECK_AT_ANCHOR) & (rows["implementation"] == CACHED))
        | ((rows["operation"] == VALIDATE_PINS) & (rows["implementation"] == WITH_PINS))
    ]
    chosen = _smallest_pin_sets(chosen)
    if chosen.empty:
        return empty(ax, title, "no pin check rows")
    chosen = chosen.assign(micros=chosen["median_ns"] / 1000)
    sns.lineplot(
        chosen, x="chain_length", y="micros", hue="key_type", style="operation", markers=True,
        markersize=9, ax=ax,
    )  # fmt: skip
    ax.set_yscale("log")
    plain_log_ticks(ax, "y")
    ax.set_xticks(sorted(chosen["chain_length"].unique()))
    ax.set(title=title, xlabel="chain length (certificates)", ylabel="median time (µs, log scale)")
    legend_outside(ax)
    for text in ax.get_legend().get_texts() if ax.get_legend() is not None else ():
        text.set_text(text.get_text().replace("key_type", "key type"))
    return ax
