"""Tidy tables for the notebooks: what the store holds, reshaped for one figure or sentence.

Pure functions over the frames :class:`pinlab.store.Store` returns and the derived tables of
:mod:`pinlab.history` and :mod:`pinlab.survival`, plus the few loaders the notebooks share
(benchmark results, the real data of ``../shared/data``). Figures are in
:mod:`pinlab.figures`; the notebooks narrate and call both.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pinlab.errors import PinlabError
from pinlab.truststores import choose_trust_stores
from pinlab.verify import TrustStore

if TYPE_CHECKING:
    from pinlab.bench.pins import BenchReport
    from pinlab.certs import Certificate
    from pinlab.store import Store
    from pinlab.survival import ObservedChain
    from pinlab.truststores import TrustStoreHistory

__all__ = [
    "CHANGE_FLAGS",
    "VIRTUAL_CLOCK_SOURCES",
    "busiest_hosts",
    "chain_profile",
    "change_rates",
    "common_name",
    "cost_table",
    "forward_scenarios",
    "issuing_intermediates",
    "kaplan_meier",
    "key_label",
    "le_certificates",
    "le_hierarchy",
    "load_bench",
    "overhead_resolution",
    "real_histories_store",
    "recommendation_view",
    "root_store_history",
    "scan_overview",
    "source_overview",
    "status_counts",
    "stranded_by_day",
    "survival_table",
    "trust_stores",
    "validity_by_issuance",
]

VIRTUAL_CLOCK_SOURCES = frozenset({"lab", "import", "ct"})
"""Scan sources whose times are not wall-clock times of the run (no throughput for them)."""

CHANGE_FLAGS = {
    "key_reused": "leaf key kept",
    "key_seen_before": "leaf key seen before",
    "issuer_changed": "issuer name changed",
    "issuer_key_changed": "issuer key changed",
    "root_changed": "root changed",
    "ca_org_changed": "CA organisation changed",
}
"""Renewal ledger flags, in reading order, with the words the figures use."""

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def key_label(key_type: Any, key_size: Any, curve: Any = None) -> str:
    """``RSA-2048``, ``P-256``, ``Ed25519``... from the store's key columns."""
    if isinstance(curve, str):
        return _CURVES.get(curve, curve)
    if key_type == "EC" and pd.notna(key_size):
        return f"P-{int(key_size)}"
    if isinstance(key_type, str) and pd.notna(key_size) and key_type == "RSA":
        return f"RSA-{int(key_size)}"
    return str(key_type) if isinstance(key_type, str) else "unknown"


def _with_source(observations: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    sources = scans.set_index("scan_id")["source"]
    return observations.assign(source=observations["scan_id"].map(sources).fillna("unknown"))


# -- collection ----------------------------------------------------------------------------


def scan_overview(scans: pd.DataFrame, observations: pd.DataFrame) -> pd.DataFrame:
    """One row per scan: source, label, observations, hosts, share ok, throughput.

    Throughput (``per_second``) is observations over the scan's start-to-end time, and left
    empty for sources whose clock is virtual (a lab run, an import, a CT backfill).
    """
    counted = observations.groupby("scan_id").agg(
        observations=("host", "size"),
        hosts=("host", "nunique"),
        ok_share=("status", lambda s: float((s == "ok").mean())),
    )
    frame = scans.set_index("scan_id")[["source", "label", "started_at", "finished_at"]]
    frame = frame.join(counted, how="left").fillna({"observations": 0, "hosts": 0})
    seconds = (frame["finished_at"] - frame["started_at"]).dt.total_seconds()
    frame["seconds"] = seconds.where(~frame["source"].isin(VIRTUAL_CLOCK_SOURCES))
    frame["per_second"] = frame["observations"] / frame["seconds"]
    frame["observations"] = frame["observations"].astype(int)
    frame["hosts"] = frame["hosts"].astype(int)
    return frame.reset_index()


def source_overview(overview: pd.DataFrame) -> pd.DataFrame:
    """:func:`scan_overview` summed per source: scans, observations, hosts seen, first start,
    last end, share ok and, for real-time scans, observations per second over all of them."""
    if overview.empty:
        return pd.DataFrame(columns=["scans", "observations", "ok_share", "first", "last"])
    timed = overview.dropna(subset=["seconds"])
    rate = timed.groupby("source")["observations"].sum() / timed.groupby("source")["seconds"].sum()
    frame = overview.groupby("source").agg(
        scans=("scan_id", "size"),
        observations=("observations", "sum"),
        first=("started_at", "min"),
        last=("finished_at", "max"),
    )
    ok = overview["ok_share"] * overview["observations"]
    frame["ok_share"] = ok.groupby(overview["source"]).sum() / frame["observations"]
    frame["per_second"] = rate
    return frame


def status_counts(observations: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    """Observations per (source, status), with their share of the source's attempts."""
    frame = _with_source(observations, scans)
    counts = frame.groupby(["source", "status"]).size().rename("observations").reset_index()
    totals = counts.groupby("source")["observations"].transform("sum")
    counts["share"] = 100 * counts["observations"] / totals
    return counts.sort_values(["source", "observations"], ascending=[True, False])


def chain_profile(
    observations: pd.DataFrame, certificates: pd.DataFrame, scans: pd.DataFrame
) -> pd.DataFrame:
    """One row per ok observation: chain length, leaf and its key, validation, timings."""
    ok = _with_source(observations[observations["status"] == "ok"], scans)
    ok = ok[ok["chain"].map(lambda chain: chain is not None and len(chain) > 0).astype(bool)]
    keys = certificates.set_index("sha256")
    labels = pd.Series(
        [
            key_label(t, s, c)
            for t, s, c in zip(keys["key_type"], keys["key_size"], keys["curve"], strict=True)
        ],
        index=keys.index,
        dtype=object,
    )
    leaf = ok["chain"].map(lambda chain: chain[0])
    return pd.DataFrame(
        {
            "source": ok["source"],
            "host": ok["host"],
            "observed_at": ok["observed_at"],
            "chain_length": ok["chain"].map(len).astype(int),
            "leaf": leaf,
            "leaf_key": leaf.map(labels).fillna("unparsed"),
            "validation": ok["validation"].fillna("not validated"),
            "connect_ms": ok["connect_ms"],
            "handshake_ms": ok["handshake_ms"],
        }
    ).reset_index(drop=True)


# -- renewals ------------------------------------------------------------------------------


def change_rates(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per ledger flag: renewals where it is known, and the share (%) where it is true."""
    rows = []
    for flag, words in CHANGE_FLAGS.items():
        known = ledger[flag].dropna().astype(bool) if flag in ledger else pd.Series(dtype=bool)
        share = 100 * float(known.mean()) if len(known) else float("nan")
        rows.append({"flag": flag, "change": words, "renewals": len(known), "share": share})
    return pd.DataFrame(rows)


def kaplan_meier(durations: pd.Series, observed: pd.Series) -> pd.DataFrame:
    """Kaplan-Meier survival as a tidy frame: ``days``, ``survival``, ``ci_lower/upper``."""
    from lifelines import KaplanMeierFitter

    if len(durations) == 0:
        return pd.DataFrame(columns=["days", "survival", "ci_lower", "ci_upper"])
    fitter = KaplanMeierFitter().fit(durations, event_observed=observed)
    curve = pd.concat([fitter.survival_function_, fitter.confidence_interval_], axis=1)
    curve.columns = ["survival", "ci_lower", "ci_upper"]
    frame: pd.DataFrame = curve.rename_axis("days").reset_index()
    return frame


def validity_by_issuance(sightings: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct leaf: issued (``not_before``), validity in days, key, issuer."""
    if sightings.empty or "not_before" not in sightings:
        return pd.DataFrame(columns=["leaf", "host", "not_before", "validity_days", "key_label"])
    columns = ["leaf", "host", "not_before", "validity_days", "key_label", "ca_org"]
    return sightings.drop_duplicates("leaf")[columns].sort_values("not_before")


# -- survival ------------------------------------------------------------------------------


def trust_stores(
    truststores: str | Path, ca_file: str | Path | None = None
) -> tuple[TrustStore | Callable[[datetime], TrustStore], str]:
    """(what :func:`pinlab.survival.observed_chains` takes, one line describing it).

    See :func:`pinlab.truststores.choose_trust_stores`; the release history is read once
    per process.
    """
    if ca_file is not None:
        return choose_trust_stores(ca_file, truststores)
    history = root_store_history(truststores)
    return history.at, history.describe()


@functools.cache
def _history(folder: Path) -> TrustStoreHistory:
    from pinlab.truststores import TrustStoreHistory

    return TrustStoreHistory.load(folder, on_missing="current")


def root_store_history(truststores: str | Path) -> TrustStoreHistory:
    """``TrustStoreHistory.load(truststores, on_missing="current")``, read once per process
    (a notebook asks for it twice: to validate, and to draw the store's history)."""
    return _history(Path(truststores).resolve())


def survival_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:attr:`PinSurvival.summary` for reading: n, median days and one-year survival, each
    with its 95 % interval, as text. An unknown value is "—" (not followed for a year), an
    infinite median "not reached"; no NaN or inf reaches a reader."""
    if summary.empty:
        return summary
    rows = []
    for record in summary.to_dict("records"):
        rows.append({
            "strategy": record["strategy"], "semantics": record["semantics"],
            "hosts": _count_text(record.get("hosts")), "pins": _count_text(record["pins"]),
            "breaks": _count_text(record["breaks"]),
            "followed (days)": _days_text(record.get("followup_days")),
            "median days [95 % CI]": _with_interval(
                _days_text(record["median_days"]), _days_text(record["median_ci_lower"]),
                _days_text(record["median_ci_upper"]),
            ),
            "alive at 1 year [95 % CI]": _with_interval(
                _percent_text(record["survival_1y"]),
                _percent_text(record.get("survival_1y_lower")),
                _percent_text(record.get("survival_1y_upper")),
            ),
            "Turnbull, 1 year": _range_text(
                record.get("turnbull_1y_lower"), record.get("turnbull_1y_upper")
            ),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index(["strategy", "semantics"])


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _count_text(value: Any) -> str:
    return "—" if _missing(value) else f"{int(value):,}"


def _days_text(value: Any) -> str:
    if _missing(value):
        return "—"
    return "not reached" if value == float("inf") else f"{float(value):,.0f}"


def _percent_text(value: Any) -> str:
    return "—" if _missing(value) else f"{100 * float(value):.0f}%"


def _with_interval(value: str, lower: str, upper: str) -> str:
    return value if value == "—" else f"{value} [{lower}, {upper}]"


def _range_text(lower: Any, upper: Any) -> str:
    if _missing(lower) or _missing(upper):
        return "—"
    low, high = _percent_text(lower), _percent_text(upper)
    return low if low == high else f"{low} to {high}"


def stranded_by_day(breakage: pd.DataFrame) -> pd.DataFrame:
    """Mean share of users stranded per strategy and day since a host's first release,
    over the host timelines still running that day (``pinlab.advice.updates.user_breakage``)."""
    if breakage.empty:
        return pd.DataFrame(columns=["strategy", "semantics", "day", "stranded", "timelines"])
    days = breakage["days_since_first_release"].round().astype(int).rename("day")
    grouped = breakage.groupby(["strategy", "semantics", days])["stranded_share"]
    frame = grouped.agg(stranded="mean", timelines="size").reset_index()
    frame["stranded"] = 100 * frame["stranded"]
    return frame


def busiest_hosts(chains: Sequence[ObservedChain], count: int = 3) -> list[str]:
    """The ``count`` hosts with the most validated observations (ties by name): the hosts
    a recommendation can be made for."""
    counts = Counter(chain.host for chain in chains if chain.verified is not None)
    return [host for host, _ in sorted(counts.items(), key=lambda i: (-i[1], i[0]))[:count]]


def recommendation_view(ranked: pd.DataFrame, host: str) -> Any:
    """A ``pinlab.advice.recommend`` ranking for reading: captioned, percentages, text left.

    Survival is shown at the follow-up the host's data reaches (``reach_days``), never past.
    """
    columns = ["rank", "strategy", "protection", "pins", "reach_days", "survival_at_reach",
               "explanation"]  # fmt: skip
    shown = ranked[columns].rename(
        columns={"reach_days": "followed (days)", "survival_at_reach": "alive then"}
    )
    return (
        shown.style.set_caption(f"{host}: pin sets ranked (each keeps a backup)")
        .format({"alive then": "{:.0%}", "rank": _rank_text})
        .hide(axis="index")
        .set_properties(subset=["explanation", "strategy"], **{"text-align": "left"})
        .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}])
    )


def _rank_text(rank: Any) -> str:
    return "—" if rank is None or rank != rank else f"{rank:.0f}"  # NaN: unranked


# -- benchmarks ----------------------------------------------------------------------------


def overhead_resolution(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per benchmark row: the spread between runs (IQR as % of the median) and whether the
    share it adds to a handshake stands above that spread.

    An in-loop overhead is the difference of two noisy handshake medians: under load it can
    come out negative or within the runs' own spread. Such a row is "not resolved at this
    load", never a cost (the one rule the table, the figure and the findings apply)."""
    spread = 100 * rows["iqr_ns"] / rows["median_ns"]
    resolved = rows["overhead_pct_of_handshake"] > spread.fillna(0).clip(lower=0)
    return spread, resolved


def cost_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Benchmark rows for reading: times in µs with their spread, ratios, and the share of a
    handshake added, as text. An added share within the runs' own spread (or negative) is
    "not resolved at this load" with that spread, never a cost; "—" where a row has none."""
    spread, resolved = overhead_resolution(rows)
    added = []
    for value, noise, stands in zip(
        rows["overhead_pct_of_handshake"], spread, resolved, strict=True
    ):
        if _missing(value):
            added.append("—")
        elif stands:
            added.append(f"{value:.1f} %")
        else:
            added.append(f"not resolved at this load ({value:+.0f} %, spread {noise:.0f} %)")
    table = pd.DataFrame({
        "operation": rows["operation"], "implementation": rows["implementation"],
        "key type": rows["key_type"], "chain": rows["chain_length"],
        "pins": rows["pin_set_size"],
        "median µs [IQR]": [
            f"{m / 1000:,.2f} [{q / 1000:,.2f}]"
            for m, q in zip(rows["median_ns"], rows["iqr_ns"], strict=True)
        ],
        "runs": rows["runs"],
        "times the limit": [_ratio_text(v) for v in rows["ratio_to_limit"]],
        "times the limit per certificate": [_ratio_text(v) for v in rows["ratio_per_certificate"]],
        "added to a handshake": added,
    })  # fmt: skip
    return table.reset_index(drop=True)


def _ratio_text(value: Any) -> str:
    return "—" if _missing(value) else f"{float(value):,.2f}"


def load_bench(
    path: str | Path | None, *, fallbacks: Sequence[str | Path] = ()
) -> tuple[BenchReport, str]:
    """(benchmark results, where they came from): ``path``; else the first of
    ``fallbacks`` that exists; else a quick run of the suite now (seconds, and noisy: for
    the shape only)."""
    from pinlab.bench.output import read_results
    from pinlab.bench.pins import run_pins_benchmark

    if path is not None:
        if not Path(path).is_file():
            raise PinlabError(f"{path}: no such benchmark file (pinlab bench pins --out FILE)")
        return read_results(path), str(path)
    for fallback in fallbacks:
        if Path(fallback).is_file():
            return read_results(fallback), str(fallback)
    return run_pins_benchmark(quick=True), "a quick run made just now (pinlab bench pins --quick)"


# -- real data -----------------------------------------------------------------------------


def real_histories_store(
    shared_data: str | Path, store_path: str | Path, *, now: datetime
) -> Store:
    """A new store at ``store_path`` holding ``shared_data/real-histories``, validated
    against today's certifi store at each observation's time; returned open."""
    from pinlab.store import Store

    manifest = Path(shared_data) / "real-histories" / "manifest.csv"
    if not manifest.is_file():
        raise PinlabError(
            f"{manifest} is missing: put the real data under {Path(shared_data)} "
            "(see the notebook's introduction) or pass shared_data=..."
        )
    store = Store.open(store_path)
    from pinlab.collect import import_pem  # the real data enter as an import scan

    import_pem(store, manifest, now=now, trust_store=TrustStore.certifi(), label="real-histories")
    return store


def issuing_intermediates(chain_certificates: pd.DataFrame) -> pd.DataFrame:
    """Per ok observation: the certificate sent after the leaf (``host``, ``observed_at``,
    ``intermediate`` common name, its ``key``), from ``Store.chain_certificates_df()``."""
    second = chain_certificates[chain_certificates["position"] == 1]
    return pd.DataFrame(
        {
            "host": second["host"],
            "observed_at": second["observed_at"],
            "intermediate": second["subject"].map(common_name),
            "key": [
                key_label(t, s, c)
                for t, s, c in zip(
                    second["key_type"], second["key_size"], second["curve"], strict=True
                )
            ],
        }
    ).reset_index(drop=True)


def common_name(distinguished_name: Any) -> str:
    """The CN of an RFC 4514 name (``CN=R3,O=Let's Encrypt,C=US`` -> ``R3``), else the name."""
    text = str(distinguished_name)
    for part in re.split(r"(?<!\\),", text):
        if part.strip().upper().startswith("CN="):
            return part.strip()[3:]
    return text


def le_certificates(shared_data: str | Path) -> list[Certificate]:
    """Every certificate of ``shared_data/le-hierarchy``, in manifest order."""
    from pinlab.certs import load_certificate_file

    folder = Path(shared_data) / "le-hierarchy"
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise PinlabError(f"{manifest} is missing: put the Let's Encrypt hierarchy there")
    with manifest.open(newline="", encoding="utf-8") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    return [c for name in files for c in load_certificate_file(folder / name)]


def forward_scenarios(shared_data: str | Path) -> tuple[list[Any], str]:
    """(:mod:`pinlab.advice.forward` scenarios, one line saying which).

    Today's rules, SC-081 and 6-day certificates, each also with Let's Encrypt's random
    rotation among R10-R14 / E5-E9 (issued by ISRG Root X1) when ``le-hierarchy`` is there;
    without it, only the validity scenarios (each host keeps its own intermediate).
    """
    from pinlab.advice import forward

    if not (Path(shared_data) / "le-hierarchy" / "manifest.csv").is_file():
        schedules = (forward.CURRENT_RULES, forward.SC_081, forward.SIX_DAY)
        scenarios = [forward.Scenario(schedule.name, schedule) for schedule in schedules]
        return scenarios, "validity scenarios only (no le-hierarchy for the rotation ones)"
    certificates = le_certificates(shared_data)
    pool = forward.select_intermediates(certificates, issued_by="ISRG Root X1")
    roots = [c for c in certificates if c.self_issued and common_name(c.subject) == "ISRG Root X1"]
    names = ", ".join(common_name(c.subject) for c in pool)
    return forward.standard_scenarios(pool, roots), f"rotation among {names}"


def le_hierarchy(shared_data: str | Path) -> pd.DataFrame:
    """Every certificate of ``shared_data/le-hierarchy``: name, issuer, validity, key, pin.

    ``kind`` is ``root`` (self-issued), ``cross-sign`` (a root's key signed by another root)
    or ``intermediate``; ``staging`` marks Let's Encrypt's test hierarchy.
    """
    records = []
    for certificate in le_certificates(shared_data):
        name = common_name(certificate.subject)
        records.append(
            {
                "name": name,
                "issuer": common_name(certificate.issuer),
                "not_before": certificate.not_before,
                "not_after": certificate.not_after,
                "key": certificate.key_label,
                "pin": certificate.pin,
                "kind": "root" if certificate.self_issued else "intermediate",
                "staging": "(STAGING)" in name or name.startswith("Fake LE"),
            }
        )
    frame = pd.DataFrame(records)
    roots = set(frame.loc[frame["kind"] == "root", "pin"])
    frame.loc[(frame["kind"] == "intermediate") & frame["pin"].isin(roots), "kind"] = "cross-sign"
    frame["years"] = (frame["not_after"] - frame["not_before"]).dt.total_seconds() / 31_557_600
    return frame.sort_values(["not_before", "name"]).reset_index(drop=True)
