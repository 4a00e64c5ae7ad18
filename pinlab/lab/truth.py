"""The lab's ground truth: what each host served in each round, from lego's files.

One :class:`TruthRow` per host and round, written to ``truth.csv`` by :func:`write_truth`:
the oracle that the collector, the renewal ledger and the survival replay are tested
against. It is derived from the ACME client's output files only, never from observations.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["TRUTH_COLUMNS", "TruthRow", "write_truth"]


@dataclass(frozen=True, slots=True)
class TruthRow:
    """What a host served in a round, from lego's files (one row per host and round)."""

    host: str
    group: str
    round: int
    observed_at: datetime
    renewed: bool
    ca: str
    ca_epoch: int
    """How many times this CA's Pebble had been restarted when it issued the leaf."""
    policy: str
    key_type: str
    reuse_key_requested: bool
    leaf_sha256: str
    leaf_spki_sha256: str
    leaf_pin: str
    issuer: str
    issuer_sha256: str
    issuer_spki_sha256: str
    root_sha256: str
    root_spki_sha256: str
    chain_length: int
    key_reused: bool | None
    """New leaf SPKI equals the previous one; None when the round issued nothing new."""
    issuer_changed: bool | None
    issuer_key_changed: bool | None
    root_changed: bool | None
    ca_event: str
    """``issued`` (round 0), ``rollover``, ``switch``, ``renewal`` or empty (no renewal)."""


TRUTH_COLUMNS = [f.name for f in dataclasses.fields(TruthRow)]


def write_truth(rows: Sequence[TruthRow], path: Path) -> Path:
    """Write the truth rows as CSV (booleans ``true``/``false``, None as empty)."""

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRUTH_COLUMNS)
        for row in rows:
            writer.writerow([cell(getattr(row, name)) for name in TRUTH_COLUMNS])
    return path
