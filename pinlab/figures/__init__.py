"""The notebooks' figures: seaborn, labelled axes with units, one message each.

Every ``plot_*`` takes the tidy frame it draws (from :mod:`pinlab.analysis`,
:mod:`pinlab.history`, :mod:`pinlab.survival` or a benchmark file), an optional ``ax``, and
returns the axes, as lifelines and seaborn do. An empty frame gives axes that say so, never
an error: a store without renewals is still a store. :func:`setup` sets the look once.
"""

from __future__ import annotations

import warnings

import pandas as pd

from pinlab.figures._base import EMPTY_CHART_ID
from pinlab.figures.collection import (
    plot_chain_lengths,
    plot_handshake_times,
    plot_leaf_keys,
    plot_statuses,
    plot_throughput,
    plot_validation,
)
from pinlab.figures.cost import (
    bench_focus,
    plot_by_key_and_length,
    plot_cost_vs_limit,
    plot_handshake_share,
)
from pinlab.figures.renewals import (
    VALIDITY_CAPS,
    plot_change_rates,
    plot_key_reuse_by_ca,
    plot_key_survival,
    plot_keys_per_host,
    plot_reuse_by_host,
    plot_validity,
)
from pinlab.figures.survival import (
    plot_breaks,
    plot_ca_timeline,
    plot_issuers,
    plot_root_lifetimes,
    plot_root_store,
    plot_semantics,
    plot_sparse_check,
    plot_survival,
)
from pinlab.figures.updates import plot_expiry_tradeoff, plot_scenarios, plot_stranded

__all__ = [
    "EMPTY_CHART_ID",
    "UNKNOWN_NOTE",
    "VALIDITY_CAPS",
    "bench_focus",
    "plot_breaks",
    "plot_by_key_and_length",
    "plot_ca_timeline",
    "plot_chain_lengths",
    "plot_change_rates",
    "plot_cost_vs_limit",
    "plot_expiry_tradeoff",
    "plot_handshake_share",
    "plot_handshake_times",
    "plot_issuers",
    "plot_key_reuse_by_ca",
    "plot_key_survival",
    "plot_keys_per_host",
    "plot_leaf_keys",
    "plot_reuse_by_host",
    "plot_root_lifetimes",
    "plot_root_store",
    "plot_scenarios",
    "plot_semantics",
    "plot_sparse_check",
    "plot_statuses",
    "plot_stranded",
    "plot_survival",
    "plot_throughput",
    "plot_validation",
    "plot_validity",
    "setup",
    "table_html",
]


def setup() -> None:
    """The notebooks' look: seaborn's whitegrid, colour-blind palette, SVG figures."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    mpl.rcParams.update(
        {
            "figure.figsize": (8.0, 4.2),
            "figure.dpi": 100,
            "axes.titlesize": 13,
            "axes.titleweight": "bold",
            "axes.titlelocation": "left",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "svg.fonttype": "none",
        }
    )
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    pd.set_option("display.precision", 2)
    pd.set_option("display.float_format", _number)
    # Pebble names its CAs with 65 characters; cryptography warns at every parse of them.
    warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
    # pandas deprecations met inside pinlab are pinlab's to fix, not the reader's to see.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pinlab\.")
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # pragma: no cover - the notebooks' environment has both
        return
    shell = get_ipython()
    if shell is not None:
        set_matplotlib_formats("svg")  # type: ignore[no-untyped-call]
        html = shell.display_formatter.formatters["text/html"]
        html.for_type(pd.DataFrame, table_html)
        html.for_type(pd.Series, lambda series: table_html(series.to_frame()))


UNKNOWN_NOTE = (
    "— : not known from this data (nothing to compute it from, or not followed that long); "
    "not reached: the quantity was never reached within the follow-up."
)


def table_html(frame: pd.DataFrame) -> str:
    """A frame as the reader sees it: unknown values as "—", infinities as "not reached",
    and a footnote saying so when the table holds either; never ``NaN`` or ``inf``."""
    import numpy as np

    shown = frame
    numeric = shown.select_dtypes("number")
    infinite = bool(np.isinf(numeric.to_numpy(dtype=float, na_value=0.0)).any())
    if infinite:
        shown = shown.astype(object).where(~shown.isin([np.inf, -np.inf]), "not reached")
    unknown = bool(shown.isna().to_numpy().any())
    if unknown:  # None, NaT and pd.NA (na_rep covers only NumPy floats' NaN)
        shown = shown.copy()
        for column in shown.columns[shown.isna().any().to_numpy()]:
            if not pd.api.types.is_float_dtype(shown[column]) or isinstance(
                shown[column].dtype, pd.api.extensions.ExtensionDtype
            ):
                shown[column] = shown[column].astype(object).where(shown[column].notna(), "—")
    body = shown.to_html(
        na_rep="—", float_format=_number, classes="dataframe", border=0,
        max_rows=pd.get_option("display.max_rows"), max_cols=pd.get_option("display.max_columns"),
    )  # fmt: skip
    if unknown or infinite:
        body += f'<p class="pinlab-footnote"><small>{UNKNOWN_NOTE}</small></p>'
    return body


def _number(value: float) -> str:
    """Tables' floats: two decimals with thousands separators; tiny values in e-notation."""
    if value != value:
        return "—"
    if value in (float("inf"), float("-inf")):
        return "not reached"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:,.2f}"
