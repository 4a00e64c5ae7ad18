"""Time to rotate after a CA event: an intermediate retired or expired, a root expired.

A CA event is a row of a tidy table (:data:`EVENT_COLUMNS`): its name, ``kind``, the UTC
time ``at``, and what it concerns: a leaf's ``issuer`` name, the ``root`` name its presented
chain leads to, or the ``issuer_spki`` (hex SHA-256 of the issuing key), as
:func:`pinlab.history.leaf_sightings` records them. :func:`le_ca_events` derives such a table
from Let's Encrypt's CA certificates (``../shared/data/le-hierarchy``): the dates come from
the certificates, only which intermediate succeeded which is stated here.
:func:`rotation_after_events` measures, per host lineage served by the CA at the event, the
days until the host moved away from it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from pinlab.certs import Certificate
from pinlab.history.analyses import AnalysisInputError
from pinlab.history.rules import HOST_KEY

__all__ = [
    "CONCERNS",
    "EVENT_COLUMNS",
    "LE_SUCCESSIONS",
    "ROTATION_COLUMNS",
    "le_ca_events",
    "rotation_after_events",
    "rotation_summary",
]

CONCERNS = ("issuer", "root", "issuer_spki")
"""The sightings' columns an event may concern; a leaf matching any of them is affected."""

EVENT_COLUMNS = ["event", "kind", "at", *CONCERNS]

LE_SUCCESSIONS: Mapping[str, tuple[str, ...]] = {
    "Let's Encrypt Authority X3": ("R3",),
    "R3": ("R10", "R11"),
    "E1": ("E5", "E6"),
}
"""Which Let's Encrypt intermediates took over issuance from which (by common name). This is
knowledge the certificates do not carry; the dates are taken from them."""

_CN = re.compile(r"(?:^|[,+])CN=((?:[^\\,+]|\\.)*)")


def _common_name(name: str) -> str:
    found = _CN.search(name)
    return re.sub(r"\\(.)", r"\1", found.group(1)) if found else name


def _staging(certificate: Certificate) -> bool:
    return "(STAGING)" in certificate.subject or "Fake LE" in certificate.subject


def le_ca_events(
    certificates: Iterable[Certificate],
    *,
    until: datetime | None = None,
    successions: Mapping[str, tuple[str, ...]] = LE_SUCCESSIONS,
) -> pd.DataFrame:
    """CA events of a hierarchy's certificates (staging and test CAs left out), by ``at``:

    - ``root-expired``: a self-issued root at its notAfter (DST Root CA X3, 2021-09-30),
      concerning chains that lead to it (``root``);
    - ``intermediate-expired``: an issuing CA at the last notAfter of the certificates
      with its name (cross-signs included), concerning its leaves (``issuer``);
    - ``intermediate-superseded``: an intermediate of ``successions`` at the earliest
      notBefore of its successors, the first day they could issue (R3 by R10/R11,
      2024-03-13). The switch of issuance itself may come later and is not in the data.

    ``until`` drops events after it (the end of the data, say).
    """
    production = [c for c in certificates if not _staging(c)]
    roots = {c.subject for c in production if c.self_issued}
    rows: list[dict[str, Any]] = []
    for root in sorted({c for c in production if c.self_issued}, key=lambda c: c.not_after):
        name = _common_name(root.subject)
        rows.append(
            _event(f"root {name} expired", "root-expired", root.not_after, root=root.subject)
        )
    by_subject: dict[str, list[Certificate]] = {}
    for certificate in production:
        if certificate.subject not in roots and certificate.is_ca:
            by_subject.setdefault(certificate.subject, []).append(certificate)
    by_name = {_common_name(subject): subject for subject in by_subject}
    for subject, issued in by_subject.items():
        end = max(c.not_after for c in issued)
        name = _common_name(subject)
        rows.append(_event(f"{name} expired", "intermediate-expired", end, issuer=subject))
    for old, new in successions.items():
        if old not in by_name or not all(name in by_name for name in new):
            continue
        start = min(c.not_before for name in new for c in by_subject[by_name[name]])
        event = f"{old} superseded by {'/'.join(new)}"
        rows.append(_event(event, "intermediate-superseded", start, issuer=by_name[old]))
    events = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    events["at"] = pd.to_datetime(events["at"], utc=True)
    if until is not None:
        events = events[events["at"] <= pd.Timestamp(until)]
    return events.sort_values(["at", "event"]).reset_index(drop=True)


def _event(event: str, kind: str, at: datetime, **concerns: str) -> dict[str, Any]:
    return {"event": event, "kind": kind, "at": at, **{c: concerns.get(c) for c in CONCERNS}}


ROTATION_COLUMNS = [
    "event", "at", *HOST_KEY, "lineage", "leaf", "seen_at_event", "rotated", "days",
    "lower_days", "issued_days", "new_issuer",
]  # fmt: skip


def rotation_after_events(
    sightings: pd.DataFrame, events: pd.DataFrame, *, include_later_entries: bool = True
) -> pd.DataFrame:
    """Days from each CA event to each affected host lineage's move away from the CA.

    A lineage (:func:`pinlab.history.leaf_sightings`) is affected by an event when the leaf
    it served at ``at`` (its last leaf first seen at or before ``at``) concerns the event
    (matches a non-empty ``issuer``, ``root`` or ``issuer_spki`` of it) and the lineage was
    observed at or after ``at``. With ``include_later_entries`` a lineage first observed
    after the event, already on a leaf that concerns it, is affected too
    (``seen_at_event`` False: left-truncated; it had not moved by its first sighting).

    The move away is the first later leaf of the lineage that does not concern the event (a
    leaf whose chain does not show the name counts as away). Per affected lineage:

    - ``rotated``: whether a move was observed; ``days``: from ``at`` to the first sighting
      of the new leaf (an upper bound of the move), or, censored, to the lineage's last
      sighting;
    - ``lower_days``: from ``at`` to the last sighting of a leaf that concerns the event
      (0 when before ``at``): the host still served the CA then;
    - ``issued_days``: from ``at`` to the new leaf's notBefore (it was not served before
      it was issued); NaN when censored or unknown.
    """
    missing = [c for c in ("event", "at") if c not in events.columns]
    if missing or not any(c in events.columns for c in CONCERNS):
        raise AnalysisInputError(
            f"events need the columns event, at and one of {list(CONCERNS)} "
            "(history.le_ca_events builds such a table)"
        )
    leaves = sightings.sort_values([*HOST_KEY, "lineage", "first_seen", "last_seen", "leaf"])
    groups = [group for _, group in leaves.groupby([*HOST_KEY, "lineage"], sort=True)]
    rows: list[dict[str, Any]] = []
    for event in events.to_dict("records"):
        concerns = {c: event[c] for c in CONCERNS if c in event and _present(event[c])}
        if not concerns:
            raise AnalysisInputError(
                f"event {event['event']!r} concerns nothing: set one of {list(CONCERNS)}"
            )
        at = pd.Timestamp(event["at"])
        for group in groups:
            row = _rotation(group, at, concerns, include_later_entries=include_later_entries)
            if row is not None:
                rows.append({"event": event["event"], "at": at, **row})
    frame = pd.DataFrame(rows, columns=ROTATION_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame.astype(
        {"port": "int64", "seen_at_event": bool, "rotated": bool, "days": "float64",
         "lower_days": "float64", "issued_days": "float64"}
    )  # fmt: skip


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _rotation(
    group: pd.DataFrame, at: pd.Timestamp, concerns: dict[str, Any], *, include_later_entries: bool
) -> dict[str, Any] | None:
    affected = [
        any(leaf.get(column) == value for column, value in concerns.items())
        for leaf in group.to_dict("records")
    ]
    before = int((group["first_seen"] <= at).sum())  # leaves are in first-seen order
    if before:
        start, seen = before - 1, True
        if group["last_seen"].max() < at:
            return None  # not observed at or after the event: whether it was up is unknown
    elif include_later_entries:
        start, seen = 0, False
    else:
        return None
    if not affected[start]:
        return None
    away = next((i for i in range(start + 1, len(group)) if not affected[i]), None)
    still = group.iloc[start : away if away is not None else len(group)]

    def days(when: Any) -> float:
        return math.nan if pd.isna(when) else (pd.Timestamp(when) - at).total_seconds() / 86400

    first = group.iloc[0]
    row: dict[str, Any] = {
        **{column: first[column] for column in (*HOST_KEY, "lineage")},
        "leaf": group.iloc[start]["leaf"], "seen_at_event": seen, "rotated": away is not None,
        "lower_days": max(0.0, days(still["last_seen"].max())),
    }  # fmt: skip
    if away is None:
        return {**row, "days": days(group["last_seen"].max()), "issued_days": math.nan,
                "new_issuer": None}  # fmt: skip
    new = group.iloc[away]
    return {**row, "days": days(new["first_seen"]), "issued_days": days(new["not_before"]),
            "new_issuer": new["issuer"]}  # fmt: skip


ROTATION_SUMMARY_COLUMNS = [
    "event", "at", "lineages", "hosts", "rotated", "censored", "median_days_rotated",
    "max_days_censored",
]  # fmt: skip


def rotation_summary(rotations: pd.DataFrame) -> pd.DataFrame:
    """Per event: affected lineages and hosts, how many were seen to rotate (and the median
    of their ``days``) and how many were censored (and the longest follow-up among them)."""
    rows = []
    for (event, at), group in rotations.groupby(["event", "at"], sort=False):
        moved, stayed = group[group["rotated"]], group[~group["rotated"]]
        rows.append({
            "event": event, "at": at, "lineages": len(group), "hosts": group["host"].nunique(),
            "rotated": len(moved), "censored": len(stayed),
            "median_days_rotated": moved["days"].median() if len(moved) else math.nan,
            "max_days_censored": stayed["days"].max() if len(stayed) else math.nan,
        })  # fmt: skip
    return (
        pd.DataFrame(rows, columns=ROTATION_SUMMARY_COLUMNS)
        .sort_values("at")
        .reset_index(drop=True)
    )
