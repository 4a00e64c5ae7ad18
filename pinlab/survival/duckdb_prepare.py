"""The out-of-core replay's preparation, in DuckDB (see :mod:`pinlab.survival.duckdb_engine`).

Each ok observation becomes one narrow row of 64-bit ids in temporary tables that DuckDB
spills to disk past its memory limit (``_replay_*``). The few distinct CA chains are
described in Python: the rest of each presented chain, and the verified path built once
per distinct (trust anchors, leaf issuer, rest of the chain) by linking issuer names to
subjects up to an anchor, preferring an anchor to a presented certificate of the same
name, as verifiers build the shortest path. :data:`STREAM` then gives the observations in
timeline order with their key ids under both semantics; the verified chain is null where
the path is missing, a certificate of it or the leaf is not valid at the validation time,
or the leaf's names do not match the host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pinlab.history import History  # type: ignore[attr-defined,unused-ignore]
from pinlab.names import lower_sans_sql, name_match_sql, register_sql_functions
from pinlab.store import CertificateRow
from pinlab.survival.rules import ScanAnchors, organisation
from pinlab.verify import TrustStore

__all__ = ["STREAM", "ChainCertificate", "Prepared", "anchor_frame", "drop_scratch"]

SCRATCH = ("leaves", "observations", "tails", "paths", "orgs", "scan_sets", "releases")

AnchorSets = list[tuple[datetime | None, pd.DataFrame]]
"""Trust anchors in force from a time on (None: always), as rows with the store's
``certificates`` columns (:func:`anchor_frame`): one entry for one store, one per release
for a root store's history."""
_MAX_PATH = 8
_MIN_TIME = -(2**62)


def drop_scratch(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the preparation's temporary tables."""
    for table in SCRATCH:
        con.execute(f"DROP TABLE IF EXISTS _replay_{table}")


_OK = "o.status = 'ok' AND len(o.chain) > 0"
_HID = "hash(o.host, o.port, coalesce(o.sni, ''))"

_LEAVES = f"""
CREATE OR REPLACE TEMP TABLE _replay_leaves AS
SELECT hash(sha256) AS lid, hash(spki_sha256) AS kid, hash(issuer) AS iid,
    epoch_us(not_before) AS nb, epoch_us(not_after) AS na, {lower_sans_sql("sans")} AS sans,
    coalesce(is_ca, false) AS is_ca
FROM certificates
WHERE spki_sha256 IS NOT NULL AND hash(sha256) IN (SELECT lid FROM _history_lineages)
"""

# One narrow row per ok observation that the replay sees (every certificate known).
# ``name_ok``: a leaf name matches the host as a client would check it (the one rule of
# :mod:`pinlab.names`); ``vat``: the time the chain is validated at.
_OBSERVATIONS = f"""
CREATE OR REPLACE TEMP TABLE _replay_observations AS
WITH r AS (
    SELECT hash({_HID}, s.lineage) AS tl, {_HID} AS hid, s.lineage,
        epoch_us(o.observed_at) AS t_us, l.lid, l.kid, l.iid, hash(o.chain[2:]) AS th,
        v.set_id AS scan_set,
        coalesce(v.validated_at, {{validate_at}}, epoch_us(o.observed_at)) AS vat,
        l.nb, l.na, l.is_ca,
        {name_match_sql("coalesce(nullif(o.sni, ''), o.host)", "l.sans")} AS name_ok
    FROM observations o
    JOIN _history_lineages s ON s.hid = {_HID} AND s.lid = hash(o.chain[1])
    JOIN _replay_leaves l ON l.lid = hash(o.chain[1])
    SEMI JOIN _replay_tails t ON t.th = hash(o.chain[2:]) AND t.complete
    LEFT JOIN _replay_scan_sets v ON v.scan_id = o.scan_id
    WHERE {_OK}
)
-- the store in force at the validation time: the latest release at or before it (the
-- first release before that), unless the scan recorded its own anchors
SELECT r.* EXCLUDE (scan_set), coalesce(r.scan_set, {{release_in_force}}, 0) AS set_id
FROM r
"""


def release_in_force(releases: list[tuple[int, int]]) -> str:
    """SQL for the anchor set in force at ``r.vat``: of ``(valid_from, set_id)``, the one
    with the latest ``valid_from`` at or before it (NULL before the first).

    A ``CASE`` over the few releases (one per certifi release date), not an ``ASOF`` join:
    an ASOF join holds its whole left side in memory and does not spill, and at a million
    hosts that side is the twelve million observations.
    """
    arms = " ".join(
        f"WHEN r.vat >= {valid_from} THEN {set_id}"
        for valid_from, set_id in sorted(releases, reverse=True)
    )
    return f"CASE {arms} END" if arms else "NULL"


_VERIFIED = """(p.kids IS NOT NULL AND r.name_ok
    AND r.vat BETWEEN greatest(r.nb, p.nb) AND least(r.na, p.na))"""

STREAM = f"""
SELECT r.tl, r.t_us, r.lid AS leaf, coalesce(g.org, 0) AS organisation, r.nb, r.na,
    list_prepend(r.kid, t.kids) AS presented,
    CASE WHEN {_VERIFIED} THEN list_prepend(r.kid, p.kids) END AS verified{{names}}
FROM _replay_observations r
JOIN _replay_tails t USING (th)
LEFT JOIN _replay_paths p USING (set_id, iid, th)
LEFT JOIN _replay_orgs g USING (iid){{joins}}
ORDER BY r.tl, r.t_us
"""


@dataclass
class ChainCertificate:
    """What path building and the catalog need of one CA certificate (keys as 64-bit ids)."""

    subject: str
    issuer: str
    kid: int
    nb: int
    na: int
    is_ca: bool


class Prepared:
    """The scratch tables, the catalog of CA keys and the organisation ids."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, anchors: AnchorSets, validate_at: datetime | None
    ) -> None:
        con.execute("SET TimeZone = 'UTC'")
        register_sql_functions(con)
        History.from_connection(con)
        self.anchor_sets = _anchor_sets(con, anchors)
        con.execute(_LEAVES)
        # Issuer names by id: few distinct, so the wide rows above carry only the id.
        self.issuers: dict[int, str] = dict(
            con.execute(
                "SELECT DISTINCT hash(issuer), issuer FROM certificates WHERE issuer IS NOT NULL"
            ).fetchall()
        )
        self.tails = _tails(con)
        at_sql = "NULL" if validate_at is None else str(int(validate_at.timestamp() * 1e6))
        releases = con.execute("SELECT valid_from, set_id FROM _replay_releases").fetchall()
        con.execute(
            _OBSERVATIONS.format(validate_at=at_sql, release_in_force=release_in_force(releases))
        )
        self.organisations: dict[str, int] = {}
        self.paths = self._paths(con)
        self._orgs(con)
        self.catalog = self._catalog(con)

    def organisation_id(self, name: str) -> int:
        return self.organisations.setdefault(name, len(self.organisations) + 1)

    def _paths(self, con: duckdb.DuckDBPyConnection) -> dict[int, list[ChainCertificate]]:
        """Verified paths (above the leaf) per distinct (anchor set, leaf issuer, tail)."""
        combos = con.execute("SELECT DISTINCT set_id, iid, th FROM _replay_observations").fetchall()
        rows: list[dict[str, object]] = []
        paths: dict[int, list[ChainCertificate]] = {}
        for set_id, iid, th in combos:
            path = _link(self.issuers.get(iid), self.tails[th][1], self.anchor_sets.get(set_id, {}))
            if path is None:
                continue
            pid = len(paths)
            paths[pid] = path
            rows.append({
                "set_id": set_id, "iid": iid, "th": th, "pid": pid,
                "kids": [c.kid for c in path], "nb": max(c.nb for c in path),
                "na": min(c.na for c in path),
            })  # fmt: skip
        schema = pa.schema([
            ("set_id", pa.int64()), ("iid", pa.uint64()), ("th", pa.uint64()),
            ("pid", pa.int64()), ("kids", pa.list_(pa.uint64())), ("nb", pa.int64()),
            ("na", pa.int64()),
        ])  # fmt: skip
        _create(con, "paths", pa.Table.from_pylist(rows, schema=schema))
        return paths

    def _orgs(self, con: duckdb.DuckDBPyConnection) -> None:
        rows = [{"iid": iid, "org": self.organisation_id(organisation(name or ""))}
                for iid, name in self.issuers.items()]  # fmt: skip
        schema = pa.schema([("iid", pa.uint64()), ("org", pa.int64())])
        _create(con, "orgs", pa.Table.from_pylist(rows, schema=schema))

    def _catalog(self, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        """Every CA key seen, by organisation, first seen when (:class:`CaCatalog`)."""
        seen: dict[tuple[int, int], int] = {}

        def add(certificates: Iterable[ChainCertificate], at: int) -> None:
            for certificate in certificates:
                if certificate.is_ca:
                    key = (self.organisation_id(organisation(certificate.subject)), certificate.kid)
                    seen[key] = min(seen.get(key, at), at)

        for th, at in con.execute(
            "SELECT th, min(t_us) FROM _replay_observations GROUP BY th"
        ).fetchall():
            add(self.tails[th][1], at)
        verified = (
            "SELECT p.pid, min(r.t_us) FROM _replay_observations r "
            f"JOIN _replay_paths p USING (set_id, iid, th) WHERE {_VERIFIED} GROUP BY p.pid"
        )
        for pid, at in con.execute(verified).fetchall():
            add(self.paths[pid], at)
        leaves = (  # leaves that are CA certificates (rare): their subjects join back
            "SELECT any_value(c.subject), r.kid, min(r.t_us) FROM _replay_observations r "
            "JOIN (SELECT hash(sha256) AS lid, subject FROM certificates WHERE is_ca) c "
            "USING (lid) WHERE r.is_ca GROUP BY r.lid, r.kid"
        )
        for subject, kid, at in con.execute(leaves).fetchall():
            add([ChainCertificate(subject or "", "", kid, 0, 0, True)], at)
        return pd.DataFrame(
            [(org, np.uint64(kid), at) for (org, kid), at in seen.items()],
            columns=["organisation", "key", "first_seen"],
        ).astype({"organisation": np.int64, "key": np.uint64, "first_seen": np.int64})


def _create(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    con.register("_replay_rows", table)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _replay_{name} AS SELECT * FROM _replay_rows")
    finally:
        con.unregister("_replay_rows")


def _tails(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[bool, list[ChainCertificate]]]:
    """Each distinct rest of a presented chain: whether every certificate is known, and them."""
    tails = con.execute(
        f"SELECT DISTINCT hash(o.chain[2:]), o.chain[2:] FROM observations o WHERE {_OK}"
    ).fetchall()
    facts = _facts(con, (d for _th, tail in tails for d in tail))
    described: dict[int, tuple[bool, list[ChainCertificate]]] = {}
    table = []
    for th, tail in tails:
        complete = all(d in facts for d in tail)
        certificates = [facts[d] for d in tail] if complete else []
        described[th] = (complete, certificates)
        table.append({"th": th, "complete": complete, "kids": [c.kid for c in certificates]})
    schema = pa.schema([("th", pa.uint64()), ("complete", pa.bool_()),
                        ("kids", pa.list_(pa.uint64()))])  # fmt: skip
    _create(con, "tails", pa.Table.from_pylist(table, schema=schema))
    return described


def anchor_frame(trust_store: TrustStore) -> pd.DataFrame:
    """A trust store's anchors as rows of the store's ``certificates`` columns."""
    rows = [CertificateRow.from_certificate(root) for root in trust_store.roots]
    return pd.DataFrame([{f: getattr(r, f) for f in _ANCHOR_COLUMNS} for r in rows],
                        columns=_ANCHOR_COLUMNS)  # fmt: skip


_ANCHOR_COLUMNS = ["sha256", "subject", "issuer", "spki_sha256", "not_before", "not_after", "is_ca"]
_FACTS = """
SELECT sha256, any_value(subject), any_value(issuer), hash(any_value(spki_sha256)),
    epoch_us(any_value(not_before)), epoch_us(any_value(not_after)),
    any_value(coalesce(is_ca, false))
FROM {source} WHERE spki_sha256 IS NOT NULL AND sha256 IN (SELECT unnest(?::VARCHAR[]))
GROUP BY sha256
"""


def _facts(
    con: duckdb.DuckDBPyConnection, digests: Iterable[str], source: str = "certificates"
) -> dict[str, ChainCertificate]:
    """Facts of the certificates ``digests`` (SHA-256, hex) found in ``source``."""
    wanted = sorted(set(digests))
    if not wanted:
        return {}
    found = con.execute(_FACTS.format(source=source), [wanted]).fetchall()
    return {
        sha: ChainCertificate(subject or "", issuer or "", kid, nb, na, bool(is_ca))
        for sha, subject, issuer, kid, nb, na, is_ca in found
    }


def _anchor_sets(
    con: duckdb.DuckDBPyConnection, anchors: AnchorSets
) -> dict[int, dict[str, ChainCertificate]]:
    """One set per entry of ``anchors`` (``_replay_releases`` says from when), then one per
    scan that recorded its own anchors, found in the store's certificates. Each set maps a
    subject to its anchor."""
    facts: dict[int, list[ChainCertificate]] = {}
    releases = []
    for set_id, (valid_from, frame) in enumerate(anchors):
        con.register("_replay_anchor_rows", frame[_ANCHOR_COLUMNS])
        try:
            facts[set_id] = list(_facts(con, frame["sha256"], "_replay_anchor_rows").values())
        finally:
            con.unregister("_replay_anchor_rows")
        start = _MIN_TIME if valid_from is None else int(valid_from.timestamp() * 1e6)
        releases.append({"valid_from": start, "set_id": set_id})
    schema = pa.schema([("valid_from", pa.int64()), ("set_id", pa.int64())])
    _create(con, "releases", pa.Table.from_pylist(releases, schema=schema))
    scan_rows = []
    tables = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'scans'"
    ).fetchall()
    if tables != [(0,)]:
        scan_rows = con.execute("SELECT scan_id, parameters FROM scans").fetchall()
    sets = []
    for scan_id, text in scan_rows:
        recorded = ScanAnchors.from_parameters(text)
        if recorded is not None:
            set_id = len(facts)
            facts[set_id] = list(_facts(con, list(recorded.trust_anchors)).values())
            at = int(recorded.validated_at.timestamp() * 1e6)
            sets.append({"scan_id": scan_id, "set_id": set_id, "validated_at": at})
    schema = pa.schema([("scan_id", pa.string()), ("set_id", pa.int64()),
                        ("validated_at", pa.int64())])  # fmt: skip
    _create(con, "scan_sets", pa.Table.from_pylist(sets, schema=schema))
    by_subject: dict[int, dict[str, ChainCertificate]] = {}
    for set_id, members in facts.items():
        by_subject[set_id] = {}
        for anchor in members:
            by_subject[set_id].setdefault(anchor.subject, anchor)
    return by_subject


def _link(
    issuer: str | None, tail: list[ChainCertificate], anchors: dict[str, ChainCertificate]
) -> list[ChainCertificate] | None:
    """Issuer name to subject, from the leaf's issuer up to an anchor; None if none is reached.

    An anchor is preferred to a presented certificate of the same name, as verifiers build
    the shortest path (a cross-signed root sent along is left out).
    """
    path: list[ChainCertificate] = []
    name, used = issuer, set()
    for _ in range(_MAX_PATH):
        if name is None:
            return None
        if name in anchors:
            return [*path, anchors[name]]
        index = next((i for i, c in enumerate(tail) if c.subject == name and i not in used), None)
        if index is None:
            return None
        used.add(index)
        path.append(tail[index])
        name = tail[index].issuer
    return None
