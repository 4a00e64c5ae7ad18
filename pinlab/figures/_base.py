"""What every figure module shares: axes on demand, an honest empty plot, percent ticks."""

from __future__ import annotations

from typing import Any

STRATEGY_ORDER = (
    "cert", "leaf-spki", "leaf+backup", "intermediate-spki", "root-spki", "any-in-chain", "ca-set",
)  # fmt: skip
"""Strategies from the narrowest pin to the widest: the order of every legend."""


def strategy_colours(names: Any) -> dict[str, Any]:
    """One fixed colour per strategy, warm for leaf pins, cool for CA pins, in every figure."""
    import seaborn as sns

    palette = sns.color_palette("colorblind", 10)
    fixed = dict(zip(STRATEGY_ORDER, [palette[i] for i in (3, 1, 8, 2, 0, 4, 7)], strict=True))
    extra = iter(palette[5:7] + palette[9:])
    return {str(name): fixed.get(str(name)) or next(extra, "0.5") for name in names}


def strategy_order(names: Any) -> list[str]:
    """``names`` narrowest first (unknown strategies last, by name)."""
    rank = {name: i for i, name in enumerate(STRATEGY_ORDER)}
    return sorted({str(n) for n in names}, key=lambda n: (rank.get(n, len(rank)), n))


def axes(ax: Any, size: tuple[float, float] | None = None) -> Any:
    """``ax``, or the axes of a new figure (of ``size`` inches, else the theme's size)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=size) if size else plt.subplots()
    return ax


EMPTY_CHART_ID = "pinlab-empty-chart"
"""The SVG id of the message an empty chart shows instead of data."""


def empty(ax: Any, title: str, text: str) -> Any:
    """An axes that says there is nothing to draw, and why."""
    ax.set_title(title)
    message = ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    # Marked in the SVG (id="pinlab-empty-chart..."), so a test of the rendered report can
    # tell a chart with nothing to draw from one with data.
    message.set_gid(EMPTY_CHART_ID)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


def percent(ax: Any, axis: str = "x", *, whole: float = 100) -> None:
    """Tick labels as percentages; ``whole`` is the value that means 100 %."""
    from matplotlib.ticker import PercentFormatter

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(PercentFormatter(whole))


def legend_outside(ax: Any, title: str | None = None) -> None:
    """Move the legend to the right of the axes, where it hides no data."""
    import seaborn as sns

    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title=title)


def single_hue_legend(ax: Any, levels: int) -> None:
    """Drop the legend of a hue with one level: it names what the title already says."""
    if levels <= 1 and ax.get_legend() is not None:
        ax.get_legend().remove()


def dates(ax: Any, axis: str = "x") -> None:
    """Concise date ticks (years, then months where room allows)."""
    import matplotlib.dates as mdates

    target = ax.xaxis if axis == "x" else ax.yaxis
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    target.set_major_locator(locator)
    target.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def plain_log_ticks(ax: Any, axis: str = "x") -> None:
    """Log-scale ticks written as plain numbers (1, 10, 100) rather than powers of ten."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    decades = math.log10(high / low) if low > 0 else 99
    # Over a narrow range, 1-2-5 steps; over many decades, powers of ten only.
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 3 else (1.0,)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())  # 2x10^0, 3x10^0... would collide
