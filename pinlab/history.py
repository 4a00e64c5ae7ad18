"""The renewal ledger: what servers did when their certificate changed.

Pure derivation from two tidy tables the store provides (no I/O here):

- ``observations``: ``host``, ``port``, ``sni``, ``observed_at``, ``status``, ``chain`` (the
  presented chain as a list of certificate SHA-256 hex digests, leaf first);
- ``certificates``: ``sha256``, ``der``, ``subject``, ``issuer``, ``spki_sha256``,
  ``not_before``, ``not_after``, ``key_type``, ``key_size`` (and optionally ``curve``).

**Lineages.** A host may serve several leaves at once: one per key type (badssl.com serves
RSA and ECDSA side by side), or one per IP behind a CDN. Counting every alternation as a
renewal would invent rotations, so the leaves of a (host, port, SNI) are first split by key
label (``RSA-2048``, ``P-256``...), then, within a key label, grouped by observation
overlap: leaves are taken in order of first sighting; a new leaf continues the lineage whose
current leaf stopped being served before it appeared, or stops first after being served
alongside it for less than half of the new leaf's span (a roll-out across IPs); otherwise
it starts a parallel lineage (two leaves seen at the same instant are parallel). Only
distinct leaves are considered, so flapping back to an earlier leaf is never a renewal.

**Precertificates** (CT poison extension) are dropped when the final certificate of the same
issuance (issuer and serial) is present, and otherwise kept and flagged. A leaf seen in a
single observation is kept and flagged ``seen_once`` so analyses can exclude it.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pandas as pd
from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = [
    "LEDGER_COLUMNS",
    "host_summary",
    "key_lifetimes",
    "leaf_sightings",
    "population_summary",
    "renewal_ledger",
]

HOST_KEY = ["host", "port", "sni"]
LEDGER_COLUMNS = [
    "host", "port", "sni", "lineage", "old_sha256", "new_sha256",
    "old_last_seen", "new_first_seen", "new_last_seen",
    "key_reused", "key_seen_before", "issuer_changed", "issuer_key_changed",
    "root_changed", "ca_org_changed",
    "old_key_type", "old_key_size", "new_key_type", "new_key_size",
    "gap_days", "renewal_interval_days", "old_validity_days", "new_validity_days",
    "old_issuer", "new_issuer", "old_ca_org", "new_ca_org", "new_seen_once",
]  # fmt: skip


def leaf_sightings(observations: pd.DataFrame, certificates: pd.DataFrame) -> pd.DataFrame:
    """One row per (host, port, SNI, leaf): when it was first and last served, and by whom.

    Columns add to the host key: ``leaf``, ``first_seen``, ``last_seen``, ``sightings``,
    ``spki_sha256``, ``key_label``, ``issuer``, ``issuer_spki``, ``root``, ``ca_org``,
    ``not_before``, ``not_after``, ``validity_days``, ``precertificate``, ``seen_once``,
    ``lineage`` (key label and a parallel index: ``RSA-2048#0``).
    """
    ok = observations[observations["status"] == "ok"]
    ok = ok[ok["chain"].map(lambda chain: chain is not None and len(chain) > 0)]
    if ok.empty:
        return pd.DataFrame(columns=[*HOST_KEY, "leaf", "lineage"])
    facts = _certificate_facts(certificates)
    rows = ok.assign(
        sni=ok["sni"].fillna(""),
        leaf=ok["chain"].map(lambda chain: chain[0]),
        issuer_spki=ok["chain"].map(lambda chain: _issuer_spki(list(chain), facts)),
        root=ok["chain"].map(lambda chain: _root_name(list(chain), facts)),
    )
    grouped = rows.sort_values("observed_at").groupby([*HOST_KEY, "leaf"], sort=False)
    sightings = grouped.agg(
        first_seen=("observed_at", "min"),
        last_seen=("observed_at", "max"),
        sightings=("observed_at", "size"),
        issuer_spki=("issuer_spki", "first"),
        root=("root", "first"),
    ).reset_index()
    sightings = sightings.join(facts, on="leaf")
    sightings = _drop_matched_precertificates(sightings)
    sightings["seen_once"] = sightings["sightings"] == 1
    sightings["lineage"] = pd.Series(_assign_lineages(sightings))
    return sightings.sort_values([*HOST_KEY, "first_seen"]).reset_index(drop=True)


def renewal_ledger(
    observations: pd.DataFrame,
    certificates: pd.DataFrame,
    *,
    sightings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per change of leaf within a lineage (see the module docstring)."""
    if sightings is None:
        sightings = leaf_sightings(observations, certificates)
    records: list[dict[str, object]] = []
    for _, host_leaves in sightings.groupby(HOST_KEY, sort=True):
        host_leaves = host_leaves.sort_values("first_seen")
        for _, lineage in host_leaves.groupby("lineage", sort=True):
            ordered: list[dict[str, Any]] = lineage.sort_values("first_seen").to_dict("records")  # type: ignore[assignment]
            for old, new in itertools.pairwise(ordered):
                earlier = host_leaves[host_leaves["first_seen"] < new["first_seen"]]
                records.append(_ledger_row(old, new, set(earlier["spki_sha256"])))
    ledger = pd.DataFrame.from_records(records, columns=LEDGER_COLUMNS)
    return ledger.sort_values(["host", "port", "sni", "new_first_seen"]).reset_index(drop=True)


def _ledger_row(old: dict[str, Any], new: dict[str, Any], seen: set[Any]) -> dict[str, Any]:
    def days(a: Any, b: Any) -> float:
        return float((pd.Timestamp(b) - pd.Timestamp(a)).total_seconds() / 86400)

    return {
        "host": new["host"], "port": new["port"], "sni": new["sni"], "lineage": new["lineage"],
        "old_sha256": old["leaf"], "new_sha256": new["leaf"],
        "old_last_seen": old["last_seen"],
        "new_first_seen": new["first_seen"], "new_last_seen": new["last_seen"],
        "key_reused": new["spki_sha256"] == old["spki_sha256"],
        "key_seen_before": new["spki_sha256"] in seen,
        "issuer_changed": new["issuer"] != old["issuer"],
        "issuer_key_changed": _changed(old["issuer_spki"], new["issuer_spki"]),
        "root_changed": _changed(old["root"], new["root"]),
        "ca_org_changed": _changed(old["ca_org"], new["ca_org"]),
        "old_key_type": old["key_type"], "old_key_size": old["key_size"],
        "new_key_type": new["key_type"], "new_key_size": new["key_size"],
        "gap_days": days(old["last_seen"], new["first_seen"]),
        "renewal_interval_days": days(old["not_before"], new["not_before"]),
        "old_validity_days": old["validity_days"], "new_validity_days": new["validity_days"],
        "old_issuer": old["issuer"], "new_issuer": new["issuer"],
        "old_ca_org": old["ca_org"], "new_ca_org": new["ca_org"],
        "new_seen_once": new["seen_once"],
    }  # fmt: skip


def _changed(old: Any, new: Any) -> bool | None:
    """A change flag; unknown (None) when either side could not be determined."""
    if old is None or new is None or pd.isna(old) or pd.isna(new):
        return None
    return bool(old != new)


def _certificate_facts(certificates: pd.DataFrame) -> pd.DataFrame:
    facts = certificates.set_index("sha256")
    parsed = facts["der"].map(_parse)
    label = facts.apply(
        lambda row: _key_label(row["key_type"], row["key_size"], row.get("curve")), axis=1
    )
    return pd.DataFrame(
        {
            "subject": facts["subject"],
            "issuer": facts["issuer"],
            "spki_sha256": facts["spki_sha256"],
            "key_type": facts["key_type"],
            "key_size": facts["key_size"],
            "key_label": label,
            "not_before": pd.to_datetime(facts["not_before"], utc=True),
            "not_after": pd.to_datetime(facts["not_after"], utc=True),
            "ca_org": parsed.map(lambda c: _organisation(c.issuer) if c is not None else None),
            "serial": parsed.map(lambda c: c.serial_number if c is not None else None),
            "precertificate": parsed.map(_is_precertificate),
            "self_issued": parsed.map(lambda c: c is not None and c.subject == c.issuer),
        },
        index=facts.index,
    ).assign(validity_days=lambda f: (f["not_after"] - f["not_before"]).dt.total_seconds() / 86400)


def _parse(der: Any) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(bytes(der))
    except (ValueError, TypeError):
        return None


def _organisation(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else None


def _is_precertificate(certificate: x509.Certificate | None) -> bool:
    if certificate is None:
        return False
    try:
        certificate.extensions.get_extension_for_class(x509.PrecertPoison)
    except (x509.ExtensionNotFound, ValueError):
        return False
    return True


def _key_label(key_type: Any, key_size: Any, curve: Any) -> str:
    curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
    if isinstance(curve, str):
        return curves.get(curve, curve)
    if key_type == "EC" and pd.notna(key_size):
        return f"P-{int(key_size)}"
    if pd.notna(key_size):
        return f"{key_type}-{int(key_size)}"
    return str(key_type)


def _issuer_spki(chain: list[str], facts: pd.DataFrame) -> str | None:
    """SPKI of the presented certificate that issued the leaf (by name), if sent."""
    if chain[0] not in facts.index:
        return None
    issuer: Any = facts.at[chain[0], "issuer"]
    for digest in chain[1:]:
        if digest in facts.index and str(facts.at[digest, "subject"]) == issuer:
            return str(facts.at[digest, "spki_sha256"])
    return None


def _root_name(chain: list[str], facts: pd.DataFrame) -> str | None:
    """The name of the root the presented chain leads to (its top certificate's issuer)."""
    top = chain[-1]
    if top not in facts.index:
        return None
    return str(facts.at[top, "issuer"])


def _drop_matched_precertificates(sightings: pd.DataFrame) -> pd.DataFrame:
    final = sightings[~sightings["precertificate"]]
    issued = set(zip(final["issuer"], final["serial"], strict=True))
    duplicate = sightings["precertificate"] & pd.Series(
        [(i, s) in issued for i, s in zip(sightings["issuer"], sightings["serial"], strict=True)],
        index=sightings.index,
    )
    return sightings[~duplicate].copy()


def _assign_lineages(sightings: pd.DataFrame) -> dict[Any, str]:
    labels: dict[Any, str] = {}
    for _, group in sightings.groupby([*HOST_KEY, "key_label"], sort=False):
        tails: list[tuple[datetime, datetime]] = []  # per lineage: (first, last) of its tail
        for index, leaf in group.sort_values(["first_seen", "last_seen"]).iterrows():
            first, last = leaf["first_seen"], leaf["last_seen"]
            candidates = [
                i for i, (_, tail_last) in enumerate(tails) if _continues(tail_last, first, last)
            ]
            if candidates:
                chosen = max(candidates, key=lambda i: tails[i][1])
                tails[chosen] = (first, last)
            else:
                chosen = len(tails)
                tails.append((first, last))
            labels[index] = f"{leaf['key_label']}#{chosen}"
    return labels


def _continues(tail_last: datetime, first: datetime, last: datetime) -> bool:
    """Whether a leaf served from ``first`` to ``last`` can succeed a tail last seen then.

    It can when the tail had stopped before it appeared, or when the tail stops first and
    was served alongside it for less than half of the new leaf's span (a roll-out);
    otherwise both are served in parallel.
    """
    if tail_last < first:
        return True
    return tail_last < last and (tail_last - first) < (last - first) / 2


def key_lifetimes(sightings: pd.DataFrame) -> pd.DataFrame:
    """One row per (host, lineage, key): ``duration`` days served and ``observed``.

    ``observed`` is True when the key was replaced (a later leaf of the lineage has another
    key), False when it was still served at the end of the data (censored): the shape
    lifelines' ``KaplanMeierFitter.fit(duration, observed)`` takes.
    """
    rows = []
    for (host, port, sni, lineage), group in sightings.groupby([*HOST_KEY, "lineage"]):
        group = group.sort_values("first_seen")
        for key, served in group.groupby("spki_sha256", sort=False):
            first, last = served["first_seen"].min(), served["last_seen"].max()
            later = group[(group["first_seen"] > last) & (group["spki_sha256"] != key)]
            rows.append({
                "host": host, "port": port, "sni": sni, "lineage": lineage,
                "spki_sha256": key, "first_seen": first, "last_seen": last,
                "duration": (last - first).total_seconds() / 86400,
                "observed": not later.empty, "leaves": len(served),
            })  # fmt: skip
    return pd.DataFrame(rows)


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
    changes = ledger.groupby("host").agg(
        renewals=("new_sha256", "size"),
        key_reuse_rate=("key_reused", "mean"),
        issuer_changes=("issuer_changed", "sum"),
        ca_org_changes=("ca_org_changed", lambda s: int(s.fillna(False).astype(bool).sum())),
        median_renewal_interval_days=("renewal_interval_days", "median"),
    )
    summary = per_host.join(changes, how="left")
    summary["renewals"] = summary["renewals"].fillna(0).astype(int)
    lifetimes = key_lifetimes(sightings)
    summary["median_key_age_days"] = lifetimes.groupby("host")["duration"].median()
    return summary.reset_index()


def population_summary(ledger: pd.DataFrame, sightings: pd.DataFrame) -> pd.DataFrame:
    """One row for the whole population: hosts, renewals, reuse and change rates."""
    return pd.DataFrame([{
        "hosts": sightings["host"].nunique(),
        "leaves": sightings["leaf"].nunique(),
        "renewals": len(ledger),
        "key_reuse_rate": ledger["key_reused"].mean() if len(ledger) else float("nan"),
        "issuer_change_rate": ledger["issuer_changed"].mean() if len(ledger) else float("nan"),
        "ca_org_change_rate": ledger["ca_org_changed"].dropna().astype(bool).mean()
        if len(ledger) else float("nan"),
        "median_renewal_interval_days": ledger["renewal_interval_days"].median(),
        "median_validity_days": sightings["validity_days"].median(),
    }])  # fmt: skip
