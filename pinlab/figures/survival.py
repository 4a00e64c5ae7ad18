"""Figures of pin survival, the root store and CA hierarchies (notebooks 03 and 05)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pinlab.figures._base import (
    axes,
    dates,
    empty,
    legend_outside,
    percent,
    strategy_colours,
    strategy_order,
)

__all__ = [
    "plot_breaks",
    "plot_ca_timeline",
    "plot_issuers",
    "plot_root_lifetimes",
    "plot_root_store",
    "plot_semantics",
    "plot_sparse_check",
    "plot_survival",
]


# CA pins often coincide (a root pin and any-in-chain break together): styles keep both visible.
LINE_STYLES = {"root-spki": "--", "any-in-chain": ":", "ca-set": "-."}


def plot_survival(
    curves: pd.DataFrame,
    semantics: str = "verified",
    ax: Any = None,
    *,
    ci: bool = True,
    trust_store: str | None = None,
    at_risk_days: tuple[int, ...] = (0, 90, 180, 365, 730),
) -> Any:
    """Kaplan-Meier curves per strategy (``PinSurvival.survival_function_``), one semantics.

    Each curve carries its 95 % band (the host bootstrap where the fit made one, else
    Greenwood's) and, under the axes, the pins still followed (at risk) at
    ``at_risk_days``; the title names the trust store the chains were validated with.
    """
    ax = axes(ax, (8.5, 5.2))
    title = f"Pin survival by strategy ({semantics} chain)"
    if trust_store:
        title += f"\ntrust store: {trust_store}"
    chosen = curves[curves["semantics"] == semantics] if not curves.empty else curves
    if chosen.empty:
        return empty(ax, title, f"no pins replayed under {semantics} semantics")
    strategies = strategy_order(chosen["strategy"].unique())
    colours = strategy_colours(strategies)
    lower, upper = (
        ("boot_lower", "boot_upper") if "boot_lower" in chosen else ("ci_lower", "ci_upper")
    )
    at_risk_lines = []
    for name in strategies:
        curve = chosen[chosen["strategy"] == name]
        colour = colours[name]
        ax.step(
            curve["days"], 100 * curve["survival"], where="post", lw=2, color=colour, label=name,
            ls=LINE_STYLES.get(name, "-"),
        )  # fmt: skip
        if ci:
            ax.fill_between(
                curve["days"], 100 * curve[lower], 100 * curve[upper],
                step="post", alpha=0.10, color=colour, lw=0,
            )  # fmt: skip
        if "at_risk" in curve:
            at_risk_lines.append(f"{name:>21}  " + "  ".join(
                f"{_at_risk(curve, day):>6}" for day in at_risk_days
            ))  # fmt: skip
    ax.set(
        title=title, xlabel="days since the pin was taken", ylabel="pins still accepted (%)",
        ylim=(0, 102), xlim=(0, None),
    )  # fmt: skip
    percent(ax, "y")
    ax.legend(title="strategy", loc="upper left", bbox_to_anchor=(1.01, 1))
    if at_risk_lines:
        band = "host-bootstrap" if lower == "boot_lower" else "Greenwood"
        header = f"{'at risk (pins) at day':>21}  " + "  ".join(f"{d:>6}" for d in at_risk_days)
        ax.text(
            0, -0.16, "\n".join([header, *at_risk_lines, f"bands: 95 % {band} intervals"]),
            transform=ax.transAxes, va="top", ha="left", family="monospace", fontsize=7,
        )  # fmt: skip
    return ax


def _at_risk(curve: pd.DataFrame, day: int) -> str:
    """Pins followed at least ``day`` days: the at-risk count of the first time >= day."""
    later = curve[curve["days"] >= day]
    return "0" if later.empty else f"{later['at_risk'].iloc[0]:.0f}"


def plot_semantics(summary: pd.DataFrame, ax: Any = None) -> Any:
    """One-year survival per strategy, verified against presented chain (``.summary``)."""
    import seaborn as sns

    ax = axes(ax, (8.0, 4.0))
    title = "Verified versus presented chain: pins alive after one year"
    if summary.empty:
        return empty(ax, title, "no pins replayed")
    shown = summary.assign(alive=100 * summary["survival_1y"])
    order = strategy_order(shown["strategy"])
    hue_order = sorted(shown["semantics"].unique(), reverse=True)
    sns.barplot(
        shown, x="alive", y="strategy", hue="semantics", order=order, hue_order=hue_order,
        ax=ax,
    )  # fmt: skip
    if "survival_1y_lower" in shown:
        _interval_bars(ax, shown, order, hue_order)
    stores: list[str] = []
    if "trust_store" in shown:
        stores = [str(store) for store in shown["trust_store"].dropna().unique()]
    if stores:
        title += "\ntrust store: " + "; ".join(stores)
    ax.set(title=title, xlabel="pins still accepted after 365 days (%; bars: 95 % interval)",
           ylabel="", xlim=(0, 100))  # fmt: skip
    percent(ax, "x")
    legend_outside(ax, "semantics")
    return ax


def _interval_bars(ax: Any, shown: pd.DataFrame, order: list[str], hue_order: list[str]) -> None:
    """Error bars at each bar's centre from the summary's one-year interval."""
    width = 0.8 / len(hue_order)
    for record in shown.to_dict("records"):
        strategy, semantics = str(record["strategy"]), str(record["semantics"])
        if strategy not in order or semantics not in hue_order:
            continue
        y = order.index(strategy) - 0.4 + width * (hue_order.index(semantics) + 0.5)
        low = 100 * float(record["survival_1y_lower"])
        high = 100 * float(record["survival_1y_upper"])
        if low == low and high == high:  # not NaN: followed for a year
            ax.plot([low, high], [y, y], color="black", lw=1)
        if "pins" in record:
            ax.text(1, y, f"n={record['pins']}", va="center", fontsize=7, color="0.15")


def plot_breaks(replayed: pd.DataFrame, semantics: str = "verified", ax: Any = None) -> Any:
    """When pins broke: the dates of first rejected chains, per strategy."""
    import seaborn as sns

    ax = axes(ax, (8.5, 3.8))
    title = f"When pins broke ({semantics} chain)"
    broken = replayed[(replayed["semantics"] == semantics) & replayed["broken"]]
    if broken.empty:
        return empty(ax, title, f"no pin broke under {semantics} semantics")
    events = broken.groupby(["strategy", "broken_at"]).size().rename("pins").reset_index()
    order = strategy_order(events["strategy"])
    events["strategy"] = pd.Categorical(events["strategy"], categories=order, ordered=True)
    sns.scatterplot(
        events.sort_values("strategy"), x="broken_at", y="strategy", size="pins",
        sizes=(20, 300), alpha=0.7, hue="strategy", palette=strategy_colours(order),
        legend=False, ax=ax,
    )  # fmt: skip
    ax.set_yticks(range(len(order)), order)
    ax.set(title=title, xlabel="date of the first rejected chain", ylabel="")
    dates(ax)
    return ax


def plot_root_store(changes: pd.DataFrame, ax: Any = None) -> Any:
    """Roots in Mozilla's store per certifi release, removals marked (``.changes()``)."""
    import seaborn as sns

    ax = axes(ax, (8.5, 3.8))
    title = "Mozilla's root store, release by release"
    if changes.empty:
        return empty(ax, title, "no certifi release history cached (pinlab truststores fetch)")
    sns.lineplot(changes, x="released", y="roots", drawstyle="steps-post", ax=ax, label="roots")
    removed = changes[changes["removed"] > 0]
    ax.scatter(
        removed["released"], removed["roots"], s=12 * removed["removed"].clip(upper=20),
        color=sns.color_palette()[3], alpha=0.8, zorder=3,
        label="a release removing roots (area: how many)",
    )  # fmt: skip
    ax.set(title=title, xlabel="certifi release date", ylabel="roots in the store (count)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    dates(ax)
    return ax


def plot_root_lifetimes(lifetimes: pd.DataFrame, ax: Any = None) -> Any:
    """Years each removed root had spent in the store (``.root_lifetimes()``)."""
    import seaborn as sns

    ax = axes(ax)
    title = "How long removed roots had been trusted"
    removed = lifetimes[lifetimes["removed"]] if not lifetimes.empty else lifetimes
    if removed.empty:
        return empty(ax, title, "no root left the store in the cached history")
    sns.histplot(removed, x="years_in_store", binwidth=1, ax=ax)
    first = lifetimes["first_release"].min()
    ax.set(
        title=title, ylabel="removed roots (count)",
        xlabel=f"years in the store before removal (counted from {first:%Y}, the first release)",
    )  # fmt: skip
    return ax


def plot_ca_timeline(hierarchy: pd.DataFrame, ax: Any = None, *, staging: bool = False) -> Any:
    """Validity of every CA certificate of a hierarchy (:func:`analysis.le_hierarchy`)."""
    import seaborn as sns

    shown = hierarchy[hierarchy["staging"] == staging]
    ax = axes(ax, (9.0, 0.9 + 0.24 * max(len(shown), 1)))
    title = "Let's Encrypt roots and intermediates: when each could sign"
    if shown.empty:
        return empty(ax, title, "no certificates")
    shown = shown.assign(label=shown["name"] + "  ← " + shown["issuer"])
    shown = shown.assign(
        family=shown["key"].map(lambda k: "RSA" if k.startswith("RSA") else "ECDSA")
    )
    colours = dict(zip(["RSA", "ECDSA"], sns.color_palette(n_colors=2), strict=True))
    items = zip(
        shown["kind"], shown["family"], shown["not_before"], shown["not_after"], strict=True
    )
    for row, (kind, family, start, end) in enumerate(items):
        ax.hlines(row, start, end, color=colours[str(family)], lw=7 if kind == "root" else 4,
                  linestyles="--" if kind == "cross-sign" else "-")  # fmt: skip
    ax.set_yticks(range(len(shown)), shown["label"].tolist(), fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title, xlabel="validity period (not before to not after)", ylabel="")
    dates(ax)
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], color=c, lw=4, label=f"{f} key") for f, c in colours.items()]
    handles.append(Line2D([0], [0], color="0.3", lw=7, label="self-signed root"))
    handles.append(Line2D([0], [0], color="0.3", lw=4, ls="--", label="cross-signed root"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", visible=False)
    return ax


def plot_issuers(issuers: pd.DataFrame, host: str, ax: Any = None) -> Any:
    """Which intermediate signed the leaf a host served, at each observation."""
    import seaborn as sns

    ax = axes(ax, (8.5, 3.4))
    title = f"{host}: the intermediate behind each leaf"
    shown = issuers[issuers["host"] == host]
    if shown.empty:
        return empty(ax, title, f"no observation of {host}")
    # Categories take their order of appearance: the first intermediate used on top.
    shown = shown.sort_values("observed_at")
    sns.scatterplot(shown, x="observed_at", y="intermediate", hue="key", s=80, ax=ax)
    ax.set(title=title, xlabel="observed", ylabel="issuing intermediate")
    dates(ax)
    legend_outside(ax, "intermediate's key")
    return ax


def plot_sparse_check(
    frame: pd.DataFrame,
    ax: Any = None,
    *,
    measure: str = "median_days",
    strategy: str | None = None,
    semantics: str | None = None,
) -> Any:
    """How far each estimator moves from the truth as observations thin out.

    ``frame`` is :func:`pinlab.survival.sparse.thinning_check`'s. For one strategy and
    semantics (the first of the frame unless named) and one ``measure``: the truth (dashed),
    Kaplan-Meier at each spacing (dots) and Turnbull's NPMLE envelope (bars, drawn to the
    axes' edge where it is unbounded) with its midpoint.
    """
    ax = axes(ax, (7.5, 4.5))
    title = f"Sparse sampling: {measure.replace('_', ' ')} against the truth"
    shown = frame[frame["measure"] == measure] if not frame.empty else frame
    if not shown.empty:
        strategy = strategy or str(shown["strategy"].iloc[0])
        semantics = semantics or str(shown["semantics"].iloc[0])
        mask = (shown["strategy"] == strategy) & (shown["semantics"] == semantics)
        shown = shown[mask].sort_values("every")
    if shown.empty:
        return empty(ax, title, f"no sparse-sampling check of {measure}")
    title += f"\n{strategy} pins, {semantics} chain"
    every = shown["every"].to_numpy(float)
    truth = float(shown["truth"].iloc[0])
    ax.axhline(truth, color="0.3", linestyle="--", label=f"truth (dense data): {truth:.3g}")
    ax.plot(every, shown["km"], "o-", color="C3", label="Kaplan-Meier (death at first failure)")
    values = pd.concat([shown["km"], shown["turnbull_lower"], shown["turnbull_upper"]])
    finite = values[values.abs() != float("inf")].dropna()
    top = max(float(finite.max()) if len(finite) else truth, truth) * 1.1 or 1.0
    lower = shown["turnbull_lower"].clip(upper=top).to_numpy(float)
    upper = shown["turnbull_upper"].clip(upper=top).to_numpy(float)
    middle = (lower + upper) / 2
    ax.errorbar(
        every + 4, middle, yerr=[middle - lower, upper - middle], fmt="s", color="C0",
        capsize=4, label="Turnbull NPMLE envelope (interval-censored)",
    )  # fmt: skip
    ax.set_ylim(bottom=0, top=top)
    ax.set_xticks(every)
    ax.set_xlabel("days between observations after thinning")
    ax.set_ylabel(measure.replace("_", " "))
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    return ax
