"""Analyses of the renewal ledger that the measurement literature reports, as tidy frames.

Each function takes the frames of :mod:`pinlab.history` (``renewal_ledger``,
``leaf_sightings``; the pandas and the DuckDB derivations give the same ones) and returns a
tidy DataFrame, so a notebook can compare a store's figures with a paper's:

- :func:`renewal_regularity` and :func:`regularity_summary`: are renewals on a schedule?
  (Omolola et al., PAM 2021: most Let's Encrypt certificates with long histories were
  reissued on a predictable schedule);
- :func:`key_reuse_by_ca`: how often a reissue keeps the key, per CA organisation (Zhang et
  al., IMC 2014, on the reissues after Heartbleed);
- :func:`key_type_migrations`: which key types hosts moved between at a renewal.

Shares come with a Wilson score interval (:func:`wilson_interval`), which stays inside
[0, 1] and keeps a sensible width for the small counts one host history gives.
Time to rotate after a CA event is in :mod:`pinlab.history.events`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pinlab.errors import PinlabError

__all__ = [
    "MIGRATION_COLUMNS",
    "REGULARITY_COLUMNS",
    "REGULARITY_SUMMARY_COLUMNS",
    "REUSE_COLUMNS",
    "AnalysisInputError",
    "key_reuse_by_ca",
    "key_type_migrations",
    "regularity_summary",
    "renewal_regularity",
    "wilson_interval",
]

Z_95 = 1.959963984540054
"""The standard normal quantile of 97.5 %: a two-sided 95 % interval."""


class AnalysisInputError(PinlabError, ValueError):
    """A frame given to a ledger analysis lacks what it needs, or an option is out of range."""


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) for a share of ``successes`` in ``n``.

    With p = successes / n::

        centre     = (p + z²/2n) / (1 + z²/n)
        half-width = z / (1 + z²/n) * sqrt(p(1 - p)/n + z²/4n²)

    (Wilson, JASA 1927.) Unlike the normal approximation it never leaves [0, 1] and does not
    collapse to a width of zero at 0 % or 100 %. ``(nan, nan)`` when ``n`` is 0.
    """
    if n < 0 or not 0 <= successes <= n:
        raise AnalysisInputError(f"a share needs 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0 % and 100 % the bound is exactly 0 or 1; rounding would leave 1e-17 there.
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return (lower, upper)


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise AnalysisInputError(
            f"{what} needs the columns {missing}: pass history.renewal_ledger(...) or "
            "history.leaf_sightings(...) (or History.ledger()/sightings())"
        )


# -- renewal-schedule regularity ---------------------------------------------------------

REGULARITY_COLUMNS = [
    "host", "lineages", "renewals", "median_interval_days", "cv", "on_schedule", "regular",
]  # fmt: skip


def renewal_regularity(
    ledger: pd.DataFrame,
    *,
    min_renewals: int = 3,
    tolerance: float = 0.1,
    share: float = 0.8,
) -> pd.DataFrame:
    """Whether each host renews on a schedule, one row per host.

    A renewal's interval is ``renewal_interval_days``: the new leaf's notBefore minus the old
    leaf's, so it measures when the CA issued, not when a sparse sample happened to look.
    Intervals of all the host's lineages are pooled (unknown ones dropped). Per host:

    - ``renewals``: intervals known; ``median_interval_days``: their median *m*;
    - ``cv``: coefficient of variation (standard deviation / mean), the plain spread;
    - ``on_schedule``: the share of intervals within ``tolerance`` x *m* of a whole multiple
      k x *m*, k >= 1. A multiple, because a sampled history misses leaves: two 60-day
      renewals seen as one 120-day interval are still on schedule. Intervals of zero or less
      (leaves issued out of order) are never on schedule;
    - ``regular``: ``on_schedule >= share`` when the host has at least ``min_renewals``
      intervals, else ``<NA>`` (too few renewals to speak of a schedule).

    With the defaults (3 renewals, 10 %, 80 %) a host renewing every 60 days to the day is
    regular, and one renewing after 40 to 80 days at random is not. The ``cv`` is kept beside
    it because it is what a reader expects, but it is not the criterion: one missed leaf in
    a sparse sample doubles an interval and inflates the CV of a perfectly regular host.
    """
    _require(ledger, ["host", "lineage", "renewal_interval_days"], "renewal_regularity")
    if min_renewals < 1 or not 0 < tolerance < 0.5 or not 0 < share <= 1:
        raise AnalysisInputError(
            "renewal_regularity needs min_renewals >= 1, 0 < tolerance < 0.5 and 0 < share <= 1"
        )
    known = ledger.dropna(subset=["renewal_interval_days"])
    rows = []
    for host, renewals in known.groupby("host", sort=True):
        intervals = renewals["renewal_interval_days"].to_numpy(dtype=float)
        median = float(np.median(intervals))
        mean = float(intervals.mean())
        cv = float(intervals.std(ddof=0) / mean) if mean > 0 else math.nan
        on = _on_schedule(intervals, median, tolerance)
        rows.append({
            "host": host, "lineages": renewals["lineage"].nunique(),
            "renewals": len(intervals), "median_interval_days": median, "cv": cv,
            "on_schedule": on,
            "regular": bool(on >= share) if len(intervals) >= min_renewals else pd.NA,
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=REGULARITY_COLUMNS)
    return frame.astype(
        {"lineages": "int64", "renewals": "int64", "median_interval_days": "float64",
         "cv": "float64", "on_schedule": "float64", "regular": "boolean"}
    )  # fmt: skip


def _on_schedule(intervals: np.ndarray[Any, Any], median: float, tolerance: float) -> float:
    if median <= 0:
        return 0.0
    multiples = np.maximum(np.rint(intervals / median), 1)
    close = np.abs(intervals - multiples * median) <= tolerance * median
    return float((close & (intervals > 0)).mean())


REGULARITY_SUMMARY_COLUMNS = [
    "hosts", "hosts_judged", "regular", "share_regular", "ci_lower", "ci_upper",
]  # fmt: skip


def regularity_summary(regularity: pd.DataFrame) -> pd.DataFrame:
    """One row: hosts, hosts judged (enough renewals), regular ones, their share and its
    Wilson 95 % interval (:func:`wilson_interval`); share and bounds NaN when none judged."""
    _require(regularity, ["host", "regular"], "regularity_summary")
    judged = regularity["regular"].dropna().astype(bool)
    regular = int(judged.sum())
    lower, upper = wilson_interval(regular, len(judged))
    return pd.DataFrame([{
        "hosts": len(regularity), "hosts_judged": len(judged), "regular": regular,
        "share_regular": regular / len(judged) if len(judged) else math.nan,
        "ci_lower": lower, "ci_upper": upper,
    }], columns=REGULARITY_SUMMARY_COLUMNS)  # fmt: skip


# -- key reuse on reissue, per CA --------------------------------------------------------

REUSE_COLUMNS = ["ca", "hosts", "renewals", "key_reuses", "share", "ci_lower", "ci_upper"]


def key_reuse_by_ca(ledger: pd.DataFrame, *, by: str = "new_ca_org") -> pd.DataFrame:
    """Per CA (the new leaf's organisation by default, or any ledger column ``by`` such as
    ``new_issuer``): hosts, renewals, renewals that kept the leaf key (``key_reused``), the
    share and its Wilson 95 % interval. A renewal whose CA is unknown counts under
    ``unknown``. Sorted by renewals, most first, then by name."""
    _require(ledger, ["host", "key_reused", by], "key_reuse_by_ca")
    frame = ledger.assign(ca=ledger[by].astype(object).where(ledger[by].notna(), "unknown"))
    rows = []
    for ca, renewals in frame.groupby("ca", sort=False):
        reuses = int(renewals["key_reused"].astype(bool).sum())
        lower, upper = wilson_interval(reuses, len(renewals))
        rows.append({
            "ca": ca, "hosts": renewals["host"].nunique(), "renewals": len(renewals),
            "key_reuses": reuses, "share": reuses / len(renewals),
            "ci_lower": lower, "ci_upper": upper,
        })  # fmt: skip
    result = pd.DataFrame(rows, columns=REUSE_COLUMNS)
    result = result.sort_values(["renewals", "ca"], ascending=[False, True])
    return result.reset_index(drop=True).astype(
        {"hosts": "int64", "renewals": "int64", "key_reuses": "int64", "share": "float64",
         "ci_lower": "float64", "ci_upper": "float64"}
    )  # fmt: skip


# -- key-type migrations -----------------------------------------------------------------

MIGRATION_COLUMNS = ["old_key", "new_key", "renewals", "hosts", "host_names"]


def key_type_migrations(
    ledger: pd.DataFrame, sightings: pd.DataFrame, *, changes_only: bool = True
) -> pd.DataFrame:
    """Counts of (old key label -> new key label) among renewals, with the hosts.

    Key labels (``RSA-2048``, ``P-256``...) are the sightings' ``key_label`` of the old and
    new leaf: the ledger's key type and size alone cannot tell P-256 from another 256-bit
    curve. One row per transition: ``renewals``, distinct ``hosts`` and their names
    (comma-separated, sorted). ``changes_only`` (the default) keeps the renewals that
    changed key label; with False, same-label renewals are counted too. Sorted by renewals,
    most first.
    """
    _require(ledger, ["host", "old_sha256", "new_sha256"], "key_type_migrations")
    _require(sightings, ["leaf", "key_label"], "key_type_migrations")
    labels = sightings.drop_duplicates("leaf").set_index("leaf")["key_label"]
    moves = pd.DataFrame(
        {
            "host": ledger["host"],
            "old_key": ledger["old_sha256"].map(labels).fillna("unknown"),
            "new_key": ledger["new_sha256"].map(labels).fillna("unknown"),
        }
    )
    if changes_only:
        moves = moves[moves["old_key"] != moves["new_key"]]
    if moves.empty:
        return pd.DataFrame(columns=MIGRATION_COLUMNS).astype(
            {"renewals": "int64", "hosts": "int64"}
        )
    grouped = moves.groupby(["old_key", "new_key"])["host"]
    result = pd.DataFrame(
        {
            "renewals": grouped.size(),
            "hosts": grouped.nunique(),
            "host_names": grouped.agg(lambda hosts: ", ".join(sorted(set(hosts)))),
        }
    ).reset_index()
    result = result.sort_values(["renewals", "old_key", "new_key"], ascending=[False, True, True])
    return result.reset_index(drop=True)[MIGRATION_COLUMNS]
