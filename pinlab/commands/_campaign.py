"""What ``pinlab collect`` shares between a single-process run and a cluster run."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from pinlab.collect import CollectOptions, CollectSummary
from pinlab.commands._common import console
from pinlab.store import Scan

__all__ = ["MAX_REPORTED_BAD_LINES", "new_scan", "now", "print_summary", "scan_parameters"]

MAX_REPORTED_BAD_LINES = 20
"""Bad target lines shown one by one; beyond that, a count."""


def now() -> datetime:
    """The wall clock, UTC: campaigns start at the real time."""
    return datetime.now(UTC)


def print_summary(
    summary: CollectSummary, bad_lines: int, validations: dict[str, int] | None = None
) -> None:
    """The campaign's statuses and counts, as a table; with ``validations``, what path
    validation said of the chains read (a chain read is not a chain that validates)."""
    table = Table(title=f"scan {summary.scan.scan_id}", show_header=True)
    table.add_column("status")
    table.add_column("observations", justify="right")
    for status, count in summary.statuses.most_common():
        table.add_row(status, str(count))
    if validations:
        table.add_section()
        for outcome, count in sorted(validations.items(), key=lambda item: -item[1]):
            table.add_row(f"  chain {outcome}", str(count))
    table.add_section()
    table.add_row("total", str(summary.observations))
    table.add_row("skipped (already done)", str(summary.skipped))
    table.add_row("bad target lines", str(bad_lines))
    table.add_row("distinct certificates", str(summary.distinct_certificates))
    table.add_row("handshake attempts", str(summary.handshakes))
    table.add_row("DNS lookups", str(summary.dns_lookups))
    table.add_row("elapsed (s)", f"{summary.elapsed:.1f}")
    table.add_row("targets/s", f"{summary.per_second:.0f}")
    console.print(table)


def scan_parameters(options: CollectOptions, *, no_sni: bool, anchors: str) -> dict[str, object]:
    """How a campaign collected, as recorded in its scan's parameters."""
    return {
        "concurrency": options.concurrency,
        "per_ip": options.per_ip,
        "rate": options.rate,
        "timeout": options.timeout,
        "connect_timeout": options.connect_timeout,
        "handshake_timeout": options.handshake_timeout,
        "dns_concurrency": options.dns_concurrency,
        "dns_timeout": options.dns_timeout,
        "resolver": options.resolver,
        "retries": options.retries,
        "sni": not no_sni,
        "trust_store": anchors,
    }


def new_scan(source: Path, label: str | None, parameters: dict[str, object]) -> Scan:
    """A new campaign over the target file ``source``, starting now."""
    # Here, not at the top: collector processes import this module for ``now`` (their
    # clock) and must not pay for DuckDB and pandas.
    from pinlab.store import pinlab_version

    return Scan(
        scan_id=uuid.uuid4().hex,
        source="scan",
        label=label,
        targets=str(source),
        parameters=json.dumps(parameters, sort_keys=True),
        started_at=now(),
        finished_at=None,
        pinlab_version=pinlab_version(),
    )
