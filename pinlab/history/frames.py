"""The renewal ledger from two pandas DataFrames: the readable reference derivation.

Made for small tables (a notebook, a test, survival's replay); :class:`pinlab.history.History`
derives the same tables in DuckDB at scale, and the tests hold the two to equal results.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from pinlab.history.rules import (
    HOST_KEY,
    LEDGER_COLUMNS,
    SIGHTING_COLUMNS,
    assign_lineages,
    ca_organisation,
    is_precertificate,
    key_label,
)

__all__ = [
    "host_summary",
    "key_lifetimes",
    "leaf_sightings",
    "population_summary",
    "renewal_ledger",
    "tidy",
]

_ORDER = [*HOST_KEY, "first_seen", "last_seen", "leaf"]


def leaf_sightings(observations: pd.DataFrame, certificates: pd.DataFrame) -> pd.DataFrame:
    """One row per (host, port, SNI, leaf): when it was first and last served, and by whom.

    Columns: ``SIGHTING_COLUMNS`` (``leaf``, ``lineage`` such as ``RSA-2048#0`` (its
    first leaf's key label and a number),
    ``first_seen``, ``last_seen``, ``sightings``, ``spki_sha256``, ``key_label``,
    ``issuer``, ``issuer_spki``, ``root``, ``ca_org``, ``validity_days``,
    ``precertificate``, ``seen_once``...), in host and time order.
    """
    ok = observations[observations["status"] == "ok"]
    ok = ok[ok["chain"].map(lambda chain: chain is not None and len(chain) > 0)]
    if ok.empty:
        return tidy(pd.DataFrame(columns=SIGHTING_COLUMNS), SIGHTING_COLUMNS)
    facts = certificates.set_index("sha256")
    rows = ok.assign(
        sni=ok["sni"].fillna(""),
        leaf=ok["chain"].map(lambda chain: chain[0]),
        issuer_spki=ok["chain"].map(lambda chain: _issuer_spki(list(chain), facts)),
        root=ok["chain"].map(lambda chain: _root_name(list(chain), facts)),
        t_us=_micros(ok["observed_at"]),
    )
    grouped = rows.sort_values("observed_at", kind="stable").groupby([*HOST_KEY, "leaf"])
    sightings = grouped.agg(
        first_seen=("observed_at", "min"),
        last_seen=("observed_at", "max"),
        sightings=("observed_at", "size"),
        issuer_spki=("issuer_spki", "first"),
        root=("root", "first"),
        times=("t_us", list),
    ).reset_index()
    sightings = sightings.join(_leaf_facts(facts, sightings["leaf"].unique()), on="leaf")
    sightings["precertificate"] = sightings["precertificate"].eq(True)  # unknown leaves: False
    sightings["key_label"] = sightings["key_label"].fillna("unknown")
    sightings = _drop_matched_precertificates(sightings)
    sightings["seen_once"] = sightings["sightings"] == 1
    sightings = sightings.sort_values(_ORDER)
    names = assign_lineages(
        zip(
            zip(*(sightings[c] for c in HOST_KEY), strict=True),
            _micros(sightings["first_seen"]),
            _micros(sightings["last_seen"]),
            sightings["key_label"],
            sightings["times"],
            strict=True,
        )
    )
    sightings["lineage"] = [f"{label}#{i}" for label, i in names]
    return tidy(sightings, SIGHTING_COLUMNS)


def _micros(times: pd.Series) -> list[int]:
    values = times.to_numpy(dtype="datetime64[us]").astype(np.int64)
    return [int(v) for v in values]


def _leaf_facts(facts: pd.DataFrame, leaves: Any) -> pd.DataFrame:
    known = facts.loc[facts.index.intersection(pd.Index(leaves))]
    not_before = pd.to_datetime(known["not_before"], utc=True)
    not_after = pd.to_datetime(known["not_after"], utc=True)
    return pd.DataFrame(
        {
            "subject": known["subject"],
            "issuer": known["issuer"],
            "serial": known["serial"],
            "spki_sha256": known["spki_sha256"],
            "key_type": known["key_type"],
            "key_size": known["key_size"],
            "key_label": [
                key_label(t, s, c)
                for t, s, c in zip(
                    known["key_type"], known["key_size"], known["curve"], strict=True
                )
            ],
            "not_before": not_before,
            "not_after": not_after,
            "validity_days": (not_after - not_before).dt.total_seconds() / 86400,
            "ca_org": known["issuer"].map(ca_organisation),
            "precertificate": known["der"].map(is_precertificate).astype(bool),
        },
        index=known.index,
    )


def _issuer_spki(chain: list[str], facts: pd.DataFrame) -> str | None:
    """SPKI of the presented certificate that issued the leaf (by name), if sent."""
    if chain[0] not in facts.index:
        return None
    issuer: Any = facts.at[chain[0], "issuer"]
    for digest in chain[1:]:
        if digest in facts.index and facts.at[digest, "subject"] == issuer:
            spki: Any = facts.at[digest, "spki_sha256"]
            return None if pd.isna(spki) else str(spki)
    return None


def _root_name(chain: list[str], facts: pd.DataFrame) -> str | None:
    """The name of the root the presented chain leads to (its top certificate's issuer)."""
    top = chain[-1]
    if top not in facts.index:
        return None
    issuer: Any = facts.at[top, "issuer"]
    return None if pd.isna(issuer) else str(issuer)


def _drop_matched_precertificates(sightings: pd.DataFrame) -> pd.DataFrame:
    if not sightings["precertificate"].any():
        return sightings
    final = sightings[~sightings["precertificate"]]
    issued = set(zip(final["issuer"], final["serial"], strict=True))
    duplicate = sightings["precertificate"] & pd.Series(
        [(i, s) in issued for i, s in zip(sightings["issuer"], sightings["serial"], strict=True)],
        index=sightings.index,
    )
    return sightings[~duplicate].copy()


def renewal_ledger(
    observations: pd.DataFrame,
    certificates: pd.DataFrame,
    *,
    sightings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per change of leaf within a lineage (see :mod:`pinlab.history`)."""
    if sightings is None:
        sightings = leaf_sightings(observations, certificates)
    records: list[dict[str, object]] = []
    for _, host_leaves in sightings.groupby(HOST_KEY, sort=False):
        for _, lineage in host_leaves.groupby("lineage", sort=False):
            ordered: list[dict[str, Any]] = lineage.sort_values(_ORDER).to_dict("records")  # type: ignore[assignment]
            for old, new in itertools.pairwise(ordered):
                earlier = host_leaves[host_leaves["first_seen"] < new["first_seen"]]
                records.append(_ledger_row(old, new, set(earlier["spki_sha256"].dropna())))
    ledger = pd.DataFrame.from_records(records, columns=LEDGER_COLUMNS)
    ledger = ledger.sort_values([*HOST_KEY, "new_first_seen", "lineage", "new_sha256"])
    return tidy(ledger, LEDGER_COLUMNS)


def _ledger_row(old: dict[str, Any], new: dict[str, Any], seen: set[Any]) -> dict[str, Any]:
    def days(a: Any, b: Any) -> float:
        return float((pd.Timestamp(b) - pd.Timestamp(a)).total_seconds() / 86400)

    key = None if pd.isna(new["spki_sha256"]) else new["spki_sha256"]
    return {
        "host": new["host"], "port": new["port"], "sni": new["sni"], "lineage": new["lineage"],
        "old_sha256": old["leaf"], "new_sha256": new["leaf"],
        "old_last_seen": old["last_seen"],
        "new_first_seen": new["first_seen"], "new_last_seen": new["last_seen"],
        "key_reused": key is not None and key == old["spki_sha256"],
        "key_seen_before": key is not None and key in seen,
        "issuer_changed": _changed(old["issuer"], new["issuer"], unknown=True),
        "issuer_key_changed": _changed(old["issuer_spki"], new["issuer_spki"]),
        "root_changed": _changed(old["root"], new["root"]),
        "ca_org_changed": _changed(old["ca_org"], new["ca_org"]),
        "key_type_changed": _changed(_known(old["key_label"]), _known(new["key_label"])),
        "old_key_type": old["key_type"], "old_key_size": old["key_size"],
        "new_key_type": new["key_type"], "new_key_size": new["key_size"],
        "gap_days": days(old["last_seen"], new["first_seen"]),
        "renewal_interval_days": days(old["not_before"], new["not_before"]),
        "old_validity_days": old["validity_days"], "new_validity_days": new["validity_days"],
        "old_issuer": old["issuer"], "new_issuer": new["issuer"],
        "old_ca_org": old["ca_org"], "new_ca_org": new["ca_org"],
        "new_seen_once": new["seen_once"],
    }  # fmt: skip


def _known(label: Any) -> str | None:
    return None if label == "unknown" else str(label)


def _changed(old: Any, new: Any, *, unknown: bool = False) -> bool | None:
    """A change flag: None when either side is unknown, or (``unknown=True``, SQL's ``IS
    DISTINCT FROM``) changed unless both are unknown."""
    if pd.isna(old) or pd.isna(new):
        return bool(pd.isna(old) != pd.isna(new)) if unknown else None
    return bool(old != new)


def key_lifetimes(sightings: pd.DataFrame) -> pd.DataFrame:
    """One row per (host, lineage, key): ``duration`` days served and ``observed``.

    ``observed`` is True when the key was replaced (a later leaf of the lineage has another
    key), False when it was still served at the end of the data (censored): the shape
    lifelines' ``KaplanMeierFitter.fit(duration, observed)`` takes. Leaves whose key is
    unknown (unparsable certificates) are left out.
    """
    known = sightings[sightings["spki_sha256"].notna()]
    rows = []
    for (host, port, sni, lineage), group in known.groupby([*HOST_KEY, "lineage"]):
        for key, served in group.groupby("spki_sha256"):
            first, last = served["first_seen"].min(), served["last_seen"].max()
            later = group[(group["first_seen"] > last) & (group["spki_sha256"] != key)]
            rows.append({
                "host": host, "port": port, "sni": sni, "lineage": lineage,
                "spki_sha256": key, "first_seen": first, "last_seen": last,
                "duration": (last - first).total_seconds() / 86400,
                "observed": not later.empty, "leaves": len(served),
            })  # fmt: skip
    return tidy(pd.DataFrame(rows, columns=LIFETIME_COLUMNS), LIFETIME_COLUMNS)


LIFETIME_COLUMNS = [
    *HOST_KEY, "lineage", "spki_sha256", "first_seen", "last_seen", "duration", "observed",
    "leaves",
]  # fmt: skip


def host_summary(ledger: pd.DataFrame, sightings: pd.DataFrame) -> pd.DataFrame:
    """Per host: leaves, renewals, key reuse rate, distinct keys, issuer/CA changes..."""
    per_host = sightings.groupby("host").agg(
        leaves=("leaf", "nunique"),
        distinct_keys=("spki_sha256", "nunique"),
        lineages=("lineage", "nunique"),
        first_seen=("first_seen", "min"),
        last_seen=("last_seen", "max"),
        median_validity_days=("validity_days", "median"),
    )
    counted = ledger.assign(ca_org_change=ledger["ca_org_changed"].fillna(False).astype(int))
    changes = counted.groupby("host").agg(
        renewals=("new_sha256", "size"),
        key_reuse_rate=("key_reused", "mean"),
        issuer_changes=("issuer_changed", "sum"),
        ca_org_changes=("ca_org_change", "sum"),
        median_renewal_interval_days=("renewal_interval_days", "median"),
    )
    summary = per_host.join(changes, how="left")
    for column in ("renewals", "issuer_changes", "ca_org_changes"):
        summary[column] = summary[column].fillna(0)
    lifetimes = key_lifetimes(sightings)
    summary["median_key_age_days"] = lifetimes.groupby("host")["duration"].median()
    return tidy(summary.reset_index().sort_values("host"), HOST_SUMMARY_COLUMNS)


HOST_SUMMARY_COLUMNS = [
    "host", "leaves", "distinct_keys", "lineages", "first_seen", "last_seen",
    "median_validity_days", "renewals", "key_reuse_rate", "issuer_changes", "ca_org_changes",
    "median_renewal_interval_days", "median_key_age_days",
]  # fmt: skip


def population_summary(ledger: pd.DataFrame, sightings: pd.DataFrame) -> pd.DataFrame:
    """One row for the whole population: hosts, renewals, reuse and change rates."""
    return tidy(pd.DataFrame([{
        "hosts": sightings["host"].nunique(),
        "leaves": sightings["leaf"].nunique(),
        "renewals": len(ledger),
        "key_reuse_rate": ledger["key_reused"].mean() if len(ledger) else float("nan"),
        "issuer_change_rate": ledger["issuer_changed"].mean() if len(ledger) else float("nan"),
        "ca_org_change_rate": ledger["ca_org_changed"].dropna().astype(bool).mean()
        if len(ledger) else float("nan"),
        "median_renewal_interval_days": _median(ledger["renewal_interval_days"]),
        "median_validity_days": _median(sightings["validity_days"]),
    }]), POPULATION_COLUMNS)  # fmt: skip


def validity_over_time(sightings: pd.DataFrame, *, period: str = "Q") -> pd.DataFrame:
    """Validity lengths of the leaves issued in each ``period`` (pandas period alias).

    One row per period of issuance (``not_before``): leaves issued, and the minimum,
    median and maximum validity in days; the trend the CA/B Forum's shortening shows.
    """
    leaves = sightings.drop_duplicates("leaf").dropna(subset=["not_before", "validity_days"])
    if leaves.empty:
        return pd.DataFrame(columns=VALIDITY_COLUMNS)
    issued = pd.to_datetime(leaves["not_before"], utc=True).dt.tz_localize(None)
    grouped = leaves.groupby(issued.dt.to_period(period).dt.start_time)["validity_days"]
    frame = pd.DataFrame(
        {
            "leaves": grouped.size(),
            "min_days": grouped.min(),
            "median_days": grouped.median(),
            "max_days": grouped.max(),
        }
    )
    frame = frame.rename_axis("period_start").reset_index()
    frame["period_start"] = pd.to_datetime(frame["period_start"], utc=True)
    return frame[VALIDITY_COLUMNS]


VALIDITY_COLUMNS = ["period_start", "leaves", "min_days", "median_days", "max_days"]


def _median(values: pd.Series) -> float:
    known = values.dropna()  # all unknown: NaN, without numpy's empty-slice warning
    return float(known.median()) if len(known) else float("nan")


POPULATION_COLUMNS = [
    "hosts", "leaves", "renewals", "key_reuse_rate", "issuer_change_rate",
    "ca_org_change_rate", "median_renewal_interval_days", "median_validity_days",
]  # fmt: skip

# -- one set of dtypes for both derivations ----------------------------------------------

_TIMES = {"first_seen", "last_seen", "not_before", "not_after", "old_last_seen",
          "new_first_seen", "new_last_seen"}  # fmt: skip
_INTS = {"port", "sightings", "leaves", "distinct_keys", "lineages", "renewals",
         "issuer_changes", "ca_org_changes", "hosts"}  # fmt: skip
_SIZES = {"key_size", "old_key_size", "new_key_size"}
_FLOATS = {"validity_days", "gap_days", "renewal_interval_days", "old_validity_days",
           "new_validity_days", "duration", "median_validity_days", "key_reuse_rate",
           "median_renewal_interval_days", "median_key_age_days", "issuer_change_rate",
           "ca_org_change_rate"}  # fmt: skip
_BOOLS = {"key_reused", "key_seen_before", "issuer_changed", "precertificate", "seen_once",
          "new_seen_once", "observed"}  # fmt: skip
_UNKNOWN_BOOLS = {"issuer_key_changed", "root_changed", "ca_org_changed", "key_type_changed"}


def tidy(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with exactly ``columns``, a fresh index and pinlab's dtypes for them:
    UTC microsecond times, int64 counts, nullable ``Int64`` key sizes, floats, bools, and
    nullable ``boolean`` for the flags that may be unknown (``<NA>``)."""
    frame = frame.reindex(columns=columns).reset_index(drop=True)
    for column in columns:
        values = frame[column]
        if column in _TIMES:
            frame[column] = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
        elif column in _INTS:
            frame[column] = values.astype("int64")
        elif column in _SIZES:
            frame[column] = values.astype("Int64")
        elif column in _FLOATS:
            frame[column] = values.astype("float64")
        elif column in _BOOLS:
            frame[column] = values.astype(bool)
        elif column in _UNKNOWN_BOOLS:
            frame[column] = values.astype("boolean")
        else:
            frame[column] = values.astype(object).where(values.notna(), None)
    return frame
