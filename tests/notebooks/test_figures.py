"""Figures and tables on stores with nothing to show: axes that say so, never an error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import pytest

from pinlab import analysis, figures, history
from pinlab.history import LEDGER_COLUMNS

matplotlib.use("Agg")

EMPTY_SOURCES: dict[str, Callable[[], pd.DataFrame]] = {
    "observations": lambda: pd.DataFrame(
        columns=[
            "scan_id",
            "host",
            "status",
            "chain",
            "validation",
            "connect_ms",
            "handshake_ms",
            "observed_at",
        ]
    ),
    "scans": lambda: pd.DataFrame(
        columns=["scan_id", "source", "label", "started_at", "finished_at"]
    ),
}


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def _empty_frames() -> dict[str, pd.DataFrame]:
    observations, scans = EMPTY_SOURCES["observations"](), EMPTY_SOURCES["scans"]()
    scans["started_at"] = pd.to_datetime(scans["started_at"], utc=True)
    scans["finished_at"] = pd.to_datetime(scans["finished_at"], utc=True)
    certificates = pd.DataFrame(columns=["sha256", "key_type", "key_size", "curve"])
    return {
        "overview": analysis.scan_overview(scans, observations),
        "counts": analysis.status_counts(observations, scans),
        "profile": analysis.chain_profile(observations, certificates, scans),
        "rates": analysis.change_rates(pd.DataFrame(columns=LEDGER_COLUMNS)),
        "curve": analysis.kaplan_meier(pd.Series(dtype=float), pd.Series(dtype=bool)),
        "validity": analysis.validity_by_issuance(pd.DataFrame()),
        "stranded": analysis.stranded_by_day(pd.DataFrame()),
        "reuse": history.key_reuse_by_ca(pd.DataFrame(columns=LEDGER_COLUMNS)),
    }


CASES: list[tuple[str, Callable[..., Any], str]] = [
    ("statuses", figures.plot_statuses, "counts"),
    ("chain lengths", figures.plot_chain_lengths, "profile"),
    ("leaf keys", figures.plot_leaf_keys, "profile"),
    ("validation", figures.plot_validation, "profile"),
    ("handshake times", figures.plot_handshake_times, "profile"),
    ("throughput", figures.plot_throughput, "overview"),
    ("change rates", figures.plot_change_rates, "rates"),
    ("key survival", figures.plot_key_survival, "curve"),
    ("validity", figures.plot_validity, "validity"),
    ("stranded", figures.plot_stranded, "stranded"),
    ("key reuse by CA", figures.plot_key_reuse_by_ca, "reuse"),
]


@pytest.mark.parametrize(("name", "plot", "frame"), CASES, ids=[c[0] for c in CASES])
def test_an_empty_frame_gives_axes_that_say_so(name: str, plot: Any, frame: str) -> None:
    ax = plot(_empty_frames()[frame])
    assert ax.get_title()
    assert any(text.get_text().startswith("no ") for text in ax.texts), name


@pytest.mark.parametrize(
    "plot",
    [figures.plot_survival, figures.plot_semantics, figures.plot_root_store,
     figures.plot_root_lifetimes, figures.plot_expiry_tradeoff, figures.plot_scenarios,
     figures.plot_cost_vs_limit, figures.plot_keys_per_host, figures.plot_sparse_check],
)  # fmt: skip
def test_empty_derived_tables(plot: Any) -> None:
    ax = plot(pd.DataFrame())
    assert any(text.get_text().startswith("no ") for text in ax.texts)


def test_source_overview_of_an_empty_store() -> None:
    assert analysis.source_overview(_empty_frames()["overview"]).empty


def test_common_names() -> None:
    assert analysis.common_name("CN=R3,O=Let's Encrypt,C=US") == "R3"
    assert analysis.common_name(r"CN=Acme\, Inc. CA,C=US") == r"Acme\, Inc. CA"
    assert analysis.common_name("O=No CN") == "O=No CN"


def test_key_labels() -> None:
    assert analysis.key_label("EC", 256, "secp256r1") == "P-256"
    assert analysis.key_label("EC", 384, None) == "P-384"
    assert analysis.key_label("RSA", 2048, None) == "RSA-2048"
    assert analysis.key_label("Ed25519", None, None) == "Ed25519"
    assert analysis.key_label(None, None, None) == "unknown"


def test_an_unresolved_overhead_is_listed_never_plotted_as_a_cost(bench_file: Path) -> None:
    """A pinned handshake measured faster than the bare one (noise under load) must not be
    drawn as a cost, nor vanish from a log scale: it is listed as not resolved."""
    import matplotlib

    matplotlib.use("Agg")
    rows = analysis.load_bench(bench_file)[0].rows
    pinned = rows["overhead_pct_of_handshake"].notna() & (rows["operation"] != "validation + pins")
    assert pinned.any()
    noisy = rows.copy()
    noisy.loc[pinned, "overhead_pct_of_handshake"] = -45.0
    # The other rows stand clear of their spread whatever the load of the quick run was.
    steady = rows["overhead_pct_of_handshake"].notna() & ~pinned
    assert steady.any()
    noisy.loc[steady, "overhead_pct_of_handshake"] = 80.0
    noisy.loc[steady, "iqr_ns"] = 0.01 * noisy.loc[steady, "median_ns"]
    ax = figures.plot_handshake_share(noisy)
    texts = " ".join(text.get_text() for text in ax.texts)
    assert "not resolved at this load" in texts
    assert "-45%" in texts
    plotted = [x for collection in ax.collections for x, _ in collection.get_offsets()]
    assert plotted
    assert min(plotted) > 0


def test_the_cost_table_never_shows_an_unresolved_overhead_as_a_cost(bench_file: Path) -> None:
    """The table follows the figure's rule, even where a row has no spread to compare with."""
    rows = analysis.load_bench(bench_file)[0].rows
    measured = rows["overhead_pct_of_handshake"].notna()
    assert measured.any()
    noisy = rows.copy()
    noisy.loc[measured, "overhead_pct_of_handshake"] = -45.0
    noisy.loc[measured, "iqr_ns"] = float("nan")
    added = analysis.cost_table(noisy)["added to a handshake"][measured.to_numpy()]
    assert all(text.startswith("not resolved at this load (-45 %") for text in added)
