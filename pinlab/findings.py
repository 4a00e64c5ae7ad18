"""Findings in words: each a number with its interval, its n and the data it rests on.

Every page of the report opens with its findings (:func:`show_findings`), and the index
shows them as headline numbers: :func:`show_findings` displays them as Markdown for the
reader and, beside it, as JSON under :data:`FINDINGS_MIME`, which
:func:`pinlab.report.pages.page_findings` reads back from the executed notebook.

A value that the data cannot give is never a ``NaN``: it is "—" with the reason, and an
infinite median is "not reached". Shares carry a Wilson 95 % interval
(:func:`pinlab.history.wilson_interval`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

__all__ = [
    "FINDINGS_MIME",
    "WORLD_VIEW",
    "Finding",
    "describe_data",
    "share_finding",
    "show_findings",
    "world_observations",
    "world_view",
]

FINDINGS_MIME = "application/vnd.pinlab.findings+json"
"""The MIME type under which a page's findings travel in the executed notebook."""

Kind = Literal["share", "days", "count", "ratio"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding: what was measured, its value and 95 % interval, n, and the data.

    ``value`` None means the data cannot give it; ``missing`` then says why.
    """

    statement: str
    value: float | None
    kind: Kind
    n: str
    data: str
    lower: float | None = None
    upper: float | None = None
    missing: str = ""
    note: str = ""

    def value_text(self) -> str:
        """The value with its interval, as a reader sees it ("—" when unknown)."""
        if _unknown(self.value):
            return "—"
        text = _number(self.value, self.kind)
        if not _unknown(self.lower) and not _unknown(self.upper):
            interval = f"{_number(self.lower, self.kind)}\u2013{_number(self.upper, self.kind)}"
            text += f" (95 % interval {interval})"
        return text

    def markdown(self) -> str:
        """One bullet: statement, value, n, data, and the reason for a missing value."""
        line = f"- **{self.statement}: {self.value_text()}**; n = {self.n}; data: {self.data}."
        if _unknown(self.value) and self.missing:
            line += f" — {self.missing}."
        if self.note:
            line += f" {self.note}"
        return line

    def record(self) -> dict[str, Any]:
        """The finding as JSON-ready values (None for unknown numbers)."""
        record = asdict(self)
        for name in ("value", "lower", "upper"):
            if _unknown(record[name]):
                record[name] = None
        record["text"] = self.value_text()
        return record


def _unknown(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: float | None, kind: Kind) -> str:
    assert value is not None
    if math.isinf(value):
        return "not reached"
    if kind == "share":
        return f"{value:.0%}" if value in (0.0, 1.0) else f"{value:.1%}"
    if kind == "days":
        return f"{value:,.0f} days"
    if kind == "ratio":
        return f"{value:.2f}\u00d7"  # the multiplication sign
    return f"{value:,.0f}"


def share_finding(
    statement: str, successes: int, n: int, *, unit: str, data: str, note: str = ""
) -> Finding:
    """A share of ``successes`` in ``n`` (``unit``: what n counts) with its Wilson interval."""
    from pinlab.history import wilson_interval

    if n == 0:
        return Finding(
            statement, None, "share", f"0 {unit}", data, missing="nothing to count", note=note
        )
    lower, upper = wilson_interval(successes, n)
    return Finding(
        statement, successes / n, "share", f"{successes:,} of {n:,} {unit}", data,
        lower, upper, note=note,
    )  # fmt: skip


def show_findings(findings: Sequence[Finding], *, heading: str = "Findings") -> None:
    """Display ``findings`` as Markdown, with their JSON for the report's index."""
    from IPython.display import display

    lines = [f"### {heading}", "", *(finding.markdown() for finding in findings)]
    if not findings:
        lines.append("- No finding: this store holds no data for this page.")
    bundle = {
        "text/markdown": "\n".join(lines),
        FINDINGS_MIME: [finding.record() for finding in findings],
    }
    display(bundle, raw=True)  # type: ignore[no-untyped-call]


def _loopback(address: Any) -> bool:
    if not isinstance(address, str) or not address:
        return False
    try:
        parsed = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)
    return bool(parsed.is_loopback or (mapped is not None and mapped.is_loopback))


def world_observations(
    observations: pd.DataFrame, scans: pd.DataFrame, *, sources: Iterable[str] | None = None
) -> pd.DataFrame:
    """The observations that say something about the world.

    Not the rotation lab's (source ``lab``: it checks the machinery, with ground truth), and
    not those made at a loopback address (the demo campaign's farm, a test's servers): what
    a server on this machine did says nothing about the internet. ``sources`` keeps only
    those scan sources (e.g. ``["import"]``).
    """
    source = observations["scan_id"].map(scans.set_index("scan_id")["source"])
    keep = (source != "lab") & ~observations["ip"].map(_loopback).astype(bool)
    if sources is not None:
        keep &= source.isin(list(sources))
    return observations[keep]


def describe_data(observations: pd.DataFrame, scans: pd.DataFrame) -> str:
    """ "N observations of H hosts, from SOURCES, FIRST to LAST" for a findings line."""
    if observations.empty:
        return "no observations"
    source = observations["scan_id"].map(scans.set_index("scan_id")["source"])
    counts = source.value_counts()
    parts = ", ".join(f"{_SOURCE_WORDS.get(str(s), str(s))} {c:,}" for s, c in counts.items())
    first = pd.Timestamp(observations["observed_at"].min())
    last = pd.Timestamp(observations["observed_at"].max())
    hosts = observations["host"].nunique()
    return (
        f"{len(observations):,} observations of {hosts:,} hosts ({parts}), "
        f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"
    )


_SOURCE_WORDS = {
    "import": "imported chains",
    "scan": "collected",
    "ct": "CT entries",
    "lab": "rotation lab",
}


WORLD_VIEW = "world_observations"


def world_view(connection: Any) -> str:
    """Create (or replace) the temporary view :data:`WORLD_VIEW` on ``connection``: the
    store's observations that :func:`world_observations` keeps, in SQL, for the out-of-core
    ledger (:meth:`pinlab.history.History.from_connection`). Returns the view's name."""
    connection.execute(
        f"CREATE OR REPLACE TEMP VIEW {WORLD_VIEW} AS SELECT o.* FROM observations o "
        "LEFT JOIN (SELECT DISTINCT scan_id, source FROM scans) s USING (scan_id) "
        "WHERE s.source IS DISTINCT FROM 'lab' AND NOT (coalesce(o.ip, '') LIKE '127.%' "
        "OR coalesce(o.ip, '') IN ('::1', '0:0:0:0:0:0:0:1') "
        "OR coalesce(o.ip, '') LIKE '::ffff:127.%')"
    )
    return WORLD_VIEW
