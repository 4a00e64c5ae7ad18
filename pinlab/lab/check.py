"""The lab checks the machinery: the ledger and the replay of a lab run against ``truth.csv``.

The truth is derived from lego's files alone (:mod:`pinlab.lab.truth`); the ledger and the
replay are derived from what the collector stored. :func:`lab_agreement` counts, check by
check, how many of the truth's facts the derived tables reproduce, so a report page can
show the machinery agreeing with ground truth, or where it does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["PIN_ORACLE", "lab_agreement", "lab_intervals", "read_truth"]

PIN_ORACLE = {
    "cert": "renewed",
    "leaf-spki": "key_changed",
    "intermediate-spki": "issuer_key_changed",
    "root-spki": "root_changed",
}
"""Replayed strategy -> the truth column that says its pin taken in round 0 breaks."""


def read_truth(path: str | Path) -> pd.DataFrame:
    """``truth.csv`` as a frame: booleans as booleans (empty: unknown), times as UTC."""
    truth = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("renewed", "key_reused", "issuer_changed", "issuer_key_changed",
                   "root_changed", "reuse_key_requested"):  # fmt: skip
        truth[column] = truth[column].map({"true": True, "false": False, "": None})
    truth["round"] = truth["round"].astype(int)
    truth["observed_at"] = pd.to_datetime(truth["observed_at"], utc=True)
    truth["key_changed"] = truth["key_reused"].map({True: False, False: True, None: None})
    return truth


def lab_agreement(
    truth: pd.DataFrame, ledger: pd.DataFrame, replayed: pd.DataFrame
) -> pd.DataFrame:
    """One row per check: what is compared, how many agree, out of how many.

    ``ledger`` is the renewal ledger of the lab's observations; ``replayed`` the replay of
    the same observations (verified semantics). Checks: every renewal of the truth found
    with the same new leaf (and no other), its key-reuse and issuer-key flags, its interval
    in virtual days (the rounds between the two leaves), and, per host and strategy, the
    round where a pin taken in round 0 first breaks.
    """
    round_at = dict(zip(truth["observed_at"], truth["round"], strict=False))
    first_round = truth.sort_values("round").drop_duplicates("leaf_sha256")
    leaf_round = dict(zip(first_round["leaf_sha256"], first_round["round"], strict=True))
    days = _days_per_round(truth)
    renewals = truth[truth["renewed"].astype(bool) & (truth["round"] > 0)]
    expected: dict[tuple[str, int], dict[Any, Any]] = {
        (r["host"], int(r["round"])): r for r in renewals.to_dict("records")
    }
    found: dict[tuple[str, int], dict[Any, Any]] = {}
    for row in ledger.to_dict("records"):
        found[(row["host"], int(round_at.get(pd.Timestamp(row["new_first_seen"]), -1)))] = row
    same_leaf = [
        (expected[key], found[key])
        for key in expected
        if key in found and expected[key]["leaf_sha256"] == found[key]["new_sha256"]
    ]

    def agreeing(test: Any) -> int:
        return sum(bool(test(t, d)) for t, d in same_leaf)

    def interval_ok(t: dict[Any, Any], d: dict[Any, Any]) -> bool:
        rounds = int(t["round"]) - int(leaf_round.get(d["old_sha256"], t["round"]))
        return abs(float(d["renewal_interval_days"]) - days * rounds) < 1e-6

    n = len(same_leaf)
    rows: list[tuple[str, int, int, str]] = [
        ("Renewals found by the ledger (same new leaf, none extra)", n,
         len(set(expected) | set(found)), "renewals"),
        ("Key-reuse flags of the ledger",
         agreeing(lambda t, d: bool(d["key_reused"]) == bool(t["key_reused"])), n, "renewals"),
        ("Issuer-key change flags of the ledger",
         agreeing(lambda t, d: bool(d["issuer_key_changed"]) == bool(t["issuer_key_changed"])),
         n, "renewals"),
        ("Renewal intervals in virtual days", agreeing(interval_ok), n, "renewals"),
    ]  # fmt: skip
    agree, total = _pin_breaks(truth, replayed)
    rows.append(("Round of the first break of pins taken in round 0 (replay)", agree, total,
                 "host x strategy pairs"))  # fmt: skip
    return pd.DataFrame(rows, columns=["check", "agree", "n", "unit"])


def _days_per_round(truth: pd.DataFrame) -> float:
    times = truth.drop_duplicates("round").sort_values("round")
    if len(times) < 2:
        return 0.0
    first, second = times.iloc[0], times.iloc[1]
    rounds = second["round"] - first["round"]
    return float((second["observed_at"] - first["observed_at"]).total_seconds() / 86400 / rounds)


def _pin_breaks(truth: pd.DataFrame, replayed: pd.DataFrame) -> tuple[int, int]:
    start = truth["observed_at"].min()
    round_at = dict(zip(truth["observed_at"], truth["round"], strict=False))
    pinned = replayed[(replayed["pinned_at"] == start) & (replayed["semantics"] == "verified")]
    agree = total = 0
    for host, rows in truth.sort_values("round").groupby("host"):
        for strategy, column in PIN_ORACLE.items():
            later = rows[(rows["round"] > 0) & (rows[column] == True)]  # noqa: E712 (None is not True)
            expected = int(later["round"].iloc[0]) if len(later) else None
            got_rows = pinned[(pinned["host"] == host) & (pinned["strategy"] == strategy)]
            total += 1
            if len(got_rows) != 1:
                continue
            broken_at = got_rows["broken_at"].iloc[0]
            got = None if pd.isna(broken_at) else round_at.get(pd.Timestamp(broken_at), -1)
            agree += got == expected
    return agree, total


def lab_intervals(
    truth: pd.DataFrame, ledger: pd.DataFrame, sightings: pd.DataFrame
) -> pd.DataFrame:
    """Per scenario group: the renewal interval the policy sets (rounds between renewals of
    its first host x days per round), the intervals and validity lengths measured (days)."""
    days = _days_per_round(truth)
    group_of = dict(zip(truth["host"], truth["group"], strict=False))
    renewed = truth[truth["renewed"].astype(bool)].sort_values("round")
    policy = renewed.groupby("host")["round"].apply(
        lambda rounds: float(rounds.diff().dropna().min()) * days if len(rounds) > 1 else None
    )
    measured = ledger.assign(group=ledger["host"].map(group_of))
    validity = sightings.drop_duplicates("leaf").assign(group=sightings["host"].map(group_of))
    rows = []
    for group in sorted(set(group_of.values())):
        hosts = [h for h, g in group_of.items() if g == group]
        planned = policy.reindex(hosts).dropna()
        intervals = measured.loc[measured["group"] == group, "renewal_interval_days"]
        valid = validity.loc[validity["group"] == group, "validity_days"]
        rows.append({
            "group": group, "hosts": len(hosts),
            "policy interval (days)": "—" if planned.empty else f"{planned.min():,.0f}",
            "renewals": len(intervals),
            "measured intervals (days)": _range(intervals),
            "validity (days)": _range(valid),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("group")


def _range(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    low, high = float(values.min()), float(values.max())
    return f"{low:,.0f}" if abs(high - low) < 0.5 else f"{low:,.0f}\u2013{high:,.0f}"
