"""The SQL of :class:`pinlab.history.History`, in the order it runs.

Wide strings (host names, 64-character digests, distinguished names) are replaced early by
64-bit ids, ``hash()`` of the string: ``hid`` for a (host, port, SNI), ``lid`` for a leaf,
``kid`` for a key, ``iid`` for a name, ``th`` for the rest of a presented chain. Every heavy
step (grouping, windows, the ledger) works on these narrow rows, and the views
``history_sightings`` and ``history_ledger`` join the strings back when read. Ids that are
looked up globally (hosts, leaves, names, chains) are checked for collisions (an error,
never a silent merge); key ids are only compared within one host, where a collision among a
handful of keys has a probability of about 1e-18.

``{observations}`` and ``{certificates}`` are the source relations' names.
"""

from __future__ import annotations

from pinlab.history.rules import CA_ORG_SQL, CONTINUES_SQL, KEY_LABEL_SQL, POISON_OID_DER

DAYS = "/ 86400e6"
"""``(epoch_us(b) - epoch_us(a)) / 86400e6``: days, as pandas' total_seconds / 86400 (and
far cheaper than ``date_diff``, which does calendar work on TIMESTAMPTZ)."""

OK = "status = 'ok' AND len(chain) > 0"

# Every ok observation, reduced to (host, leaf, rest of the chain) with times: one scan.
GROUPS = f"""
CREATE OR REPLACE TEMP TABLE _history_groups AS
SELECT hash(host, port, coalesce(sni, '')) AS hid, hash(chain[1]) AS lid,
    hash(chain[2:]) AS th, min(observed_at) AS first_seen, max(observed_at) AS last_seen,
    count(*) AS sightings
FROM {{observations}} WHERE {OK}
GROUP BY ALL
"""

HOSTS = """
CREATE OR REPLACE TEMP TABLE _history_hosts AS
SELECT hash(host, port, coalesce(sni, '')) AS hid, hash(host) AS nid, *
FROM (SELECT DISTINCT host, port, coalesce(sni, '') AS sni FROM {observations}
    WHERE status = 'ok')
"""

# Each distinct rest of a presented chain, with what its certificates say: their subjects'
# and keys' ids in order, and the root's name (the issuer of the top certificate).
TAILS = f"""
CREATE OR REPLACE TEMP TABLE _history_tails AS
WITH t AS (
    SELECT DISTINCT chain[2:] AS tail FROM {{observations}} WHERE {OK}
), e AS (
    SELECT tail, unnest(tail) AS sha256, generate_subscripts(tail, 1) AS position FROM t
)
SELECT hash(t.tail) AS th, len(t.tail) AS length,
    list(c.subject ORDER BY e.position) AS subject_names,
    list(CASE WHEN c.subject IS NOT NULL THEN hash(c.subject) END ORDER BY e.position)
        AS subjects,
    list(c.spki_sha256 ORDER BY e.position) AS spkis,
    list(CASE WHEN c.spki_sha256 IS NOT NULL THEN hash(c.spki_sha256) END
        ORDER BY e.position) AS spki_ids,
    max(CASE WHEN c.issuer IS NOT NULL THEN hash(c.issuer) END)
        FILTER (WHERE e.position = len(t.tail)) AS root
FROM t LEFT JOIN e USING (tail) LEFT JOIN {{certificates}} c USING (sha256)
GROUP BY t.tail
"""

NAMES = f"""
CREATE OR REPLACE TEMP TABLE _history_names AS
SELECT iid, issuer, ca_org, CASE WHEN ca_org IS NOT NULL THEN hash(ca_org) END AS cid
FROM (
    SELECT hash(issuer) AS iid, issuer, ({CA_ORG_SQL}) AS ca_org
    FROM (SELECT DISTINCT issuer FROM {{certificates}} WHERE issuer IS NOT NULL))
"""

# The facts of each leaf served, narrow; ``poison`` marks precertificate candidates.
LEAVES = f"""
CREATE OR REPLACE TEMP TABLE _history_leaves AS
SELECT hash(sha256) AS lid,
    CASE WHEN spki_sha256 IS NOT NULL THEN hash(spki_sha256) END AS kid,
    CASE WHEN issuer IS NOT NULL THEN hash(issuer) END AS iid,
    ({KEY_LABEL_SQL}) AS key_label, not_before,
    (epoch_us(not_after) - epoch_us(not_before)) {DAYS} AS validity_days,
    contains(hex(der), '{POISON_OID_DER.hex().upper()}') AS poison, false AS precertificate
FROM {{certificates}}
WHERE hash(sha256) IN (SELECT lid FROM _history_groups)
"""

CHECKS = """
SELECT
    (SELECT count(*) - count(DISTINCT hid) FROM _history_hosts) AS hosts,
    (SELECT count(DISTINCT host) - count(DISTINCT nid) FROM _history_hosts) AS host_names,
    (SELECT count(*) - count(DISTINCT lid) FROM _history_leaves) AS leaves,
    (SELECT count(*) - count(DISTINCT iid) FROM _history_names) AS names,
    (SELECT count(DISTINCT ca_org) - count(DISTINCT cid) FROM _history_names) AS organisations,
    (SELECT count(*) - count(DISTINCT th) FROM _history_tails) AS chains,
    (SELECT count(*) FROM (
        SELECT unnest(subject_names) AS name, unnest(subjects) AS iid FROM _history_tails
     ) s JOIN _history_names n USING (iid) WHERE n.issuer <> s.name) AS subjects,
    (SELECT count(*) - count(DISTINCT isk) FROM _history_issuer_keys) AS issuer_keys
"""

ISSUER_KEYS = """
CREATE OR REPLACE TEMP TABLE _history_issuer_keys AS
SELECT DISTINCT hash(spki) AS isk, spki AS issuer_spki
FROM (SELECT unnest(spkis) AS spki FROM _history_tails) WHERE spki IS NOT NULL
"""

# One row per (host, leaf) with its facts. The issuing certificate's key: of the first
# presented certificate whose subject is the leaf's issuer; the root: the issuer of the top
# certificate (the leaf's own issuer when it was presented alone); both from the earliest
# sighting that has them. Unknown leaves (not in ``certificates``) are kept, facts null.
# Aggregated before the facts are joined (cheaper), with the chain first sent; the few
# leaves sent with several chains (``multi``) are then settled by MULTI_CHAIN.
_LINK = """CASE WHEN l.iid IS NOT NULL THEN x.spki_ids[list_position(x.subjects, l.iid)] END
        AS isk,
    CASE WHEN x.length = 0 THEN l.iid ELSE x.root END AS root"""

SEEN = f"""
CREATE OR REPLACE TEMP TABLE _history_seen AS
WITH s AS (
    SELECT hid, lid, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
        sum(sightings)::BIGINT AS sightings, arg_min(th, first_seen) AS th,
        count(*) > 1 AS multi
    FROM _history_groups GROUP BY hid, lid
)
SELECT s.* EXCLUDE (th), l.kid, l.iid, coalesce(l.key_label, 'unknown') AS key_label,
    l.not_before, l.validity_days, coalesce(l.precertificate, false) AS precertificate,
    l.lid IS NULL AS unknown, {_LINK}
FROM s LEFT JOIN _history_leaves l USING (lid) JOIN _history_tails x USING (th)
"""

MULTI_CHAIN = f"""
UPDATE _history_seen s SET isk = m.isk, root = m.root
FROM (
    SELECT hid, lid, arg_min(isk, first_seen) AS isk, arg_min(root, first_seen) AS root
    FROM (
        SELECT g.hid, g.lid, g.first_seen, {_LINK}
        FROM _history_groups g
        SEMI JOIN (SELECT hid, lid FROM _history_seen WHERE multi) USING (hid, lid)
        LEFT JOIN _history_leaves l USING (lid) JOIN _history_tails x USING (th))
    GROUP BY hid, lid
) m
WHERE s.hid = m.hid AND s.lid = m.lid
"""


# A precertificate goes when the final certificate of its issuance was served too.
DROP_MATCHED_PRECERTIFICATES = """
DELETE FROM _history_seen WHERE lid IN (
    WITH issued AS (
        SELECT l.lid, l.precertificate, c.issuer, c.serial
        FROM _history_leaves l JOIN {certificates} c ON hash(c.sha256) = l.lid
    )
    SELECT p.lid FROM issued p JOIN issued f USING (issuer, serial)
    WHERE p.precertificate AND NOT f.precertificate
)
"""

# First sighting of each key served by several leaves of a host (reused keys only: the
# others cannot have been seen before); a hash aggregate, cheaper than another window.
KEY_FIRST = """
CREATE OR REPLACE TEMP TABLE _history_key_first AS
SELECT hid, kid, min(first_seen) AS key_first_seen, arg_min(lid, first_seen) AS key_first_lid
FROM _history_seen WHERE kid IS NOT NULL GROUP BY hid, kid HAVING count(*) > 1
"""

# What the ledger compares, of the leaf before in the window ``w``...
_PREVIOUS = """lag(lid) OVER w AS old_lid, lag(first_seen) OVER w AS old_first_seen,
    lag(last_seen) OVER w AS old_last_seen, lag(kid) OVER w AS old_kid,
    lag(iid) OVER w AS old_iid, lag(isk) OVER w AS old_isk, lag(root) OVER w AS old_root,
    lag(cid) OVER w AS old_cid, lag(not_before) OVER w AS old_not_before,
    lag(validity_days) OVER w AS old_validity_days, lag(key_label) OVER w AS old_key_label"""
_PREVIOUS_KEPT = "old_lid, old_iid, old_last_seen, old_validity_days"
_PREVIOUS_DROPPED = """old_first_seen, old_kid, old_isk, old_root, old_cid, old_not_before,
    old_key_label"""

# ... and what it says of the change (flags unknown, NULL, when a side is unknown).
_CHANGE = f"""coalesce(kid = old_kid, false) AS key_reused,
    coalesce(key_first_seen < first_seen, false) AS key_seen_before,
    iid IS DISTINCT FROM old_iid AS issuer_changed,
    isk <> old_isk AS issuer_key_changed, root <> old_root AS root_changed,
    cid <> old_cid AS ca_org_changed,
    nullif(key_label, 'unknown') <> nullif(old_key_label, 'unknown') AS key_type_changed,
    (epoch_us(first_seen) - epoch_us(old_last_seen)) {DAYS} AS gap_days,
    (epoch_us(not_before) - epoch_us(old_not_before)) {DAYS} AS renewal_interval_days"""
_CHANGE_COLUMNS = """key_reused, key_seen_before, issuer_changed, issuer_key_changed,
    root_changed, ca_org_changed, key_type_changed, gap_days, renewal_interval_days"""

# One row per (host, leaf), in one window over each host (host, port, SNI) in order of
# sighting, whatever the key type: whether each leaf continues the one before
# (rules.CONTINUES_SQL), and the change from the one before. Where every leaf continues
# (nearly all hosts), the host is one lineage, named after its first leaf's key label
# (``<label>#0``), and these rows are its ledger; the others are ``split`` below.
STEPS = f"""
CREATE OR REPLACE TEMP TABLE _history_sightings AS
WITH w AS (
    SELECT s.* EXCLUDE (unknown, multi), n.cid, f.key_first_seen,
        kid IS NOT NULL AND coalesce(f.key_first_lid = lid, true) AS new_key,
        s.sightings = 1 AS seen_once, first_value(key_label) OVER w AS lineage_label,
        {_PREVIOUS}
    FROM _history_seen s LEFT JOIN _history_names n USING (iid)
    LEFT JOIN _history_key_first f USING (hid, kid)
    WINDOW w AS (PARTITION BY hid ORDER BY first_seen, last_seen)
), t AS (
    SELECT *, epoch_us(old_first_seen) AS tail_first, epoch_us(old_last_seen) AS tail_last,
        epoch_us(first_seen) AS first, epoch_us(last_seen) AS last
    FROM w
)
SELECT * EXCLUDE (tail_first, tail_last, first, last, key_first_seen, {_PREVIOUS_DROPPED}),
    old_lid IS NULL OR {CONTINUES_SQL} AS continues, {_CHANGE},
    0::BIGINT AS lineage_index, old_lid IS NULL AS opens, false AS split
FROM t
"""

# The hosts with leaves served in parallel (or an old leaf back: a rollback).
SPLIT = """
CREATE OR REPLACE TEMP TABLE _history_split AS
SELECT DISTINCT hid FROM _history_sightings WHERE NOT continues
"""

LEAF_NAMES = """
CREATE OR REPLACE TEMP TABLE _history_leaf_names AS
SELECT lid, leaf FROM (
    SELECT hash(sha256) AS lid, sha256 AS leaf FROM {certificates}
    UNION ALL SELECT lid, leaf FROM _history_unknown)
WHERE lid IN (
    SELECT lid FROM _history_sightings SEMI JOIN _history_split USING (hid))
"""

# Every sighting time of the split hosts' leaves: whether a tail was served alongside a new
# leaf or came back after it (rules.served_until).
TIMES = f"""
CREATE OR REPLACE TEMP TABLE _history_times AS
SELECT hid, lid, list(t ORDER BY t) AS times
FROM (
    SELECT hash(host, port, coalesce(sni, '')) AS hid, hash(chain[1]) AS lid,
        epoch_us(observed_at) AS t
    FROM {{observations}} WHERE {OK})
SEMI JOIN _history_split USING (hid)
GROUP BY hid, lid
"""

# The rows the Python assignment needs, in its order (the leaf digest breaks ties).
PARALLEL = """
SELECT s.hid, s.key_label, s.lid, epoch_us(s.first_seen) AS first,
    epoch_us(s.last_seen) AS last, t.times
FROM _history_sightings s SEMI JOIN _history_split USING (hid)
JOIN _history_times t USING (hid, lid)
LEFT JOIN _history_leaf_names n USING (lid)
ORDER BY s.hid, s.first_seen, s.last_seen, n.leaf
"""

MARK_SPLIT = """
UPDATE _history_sightings s SET split = true, lineage_label = p.lineage_label,
    lineage_index = p.lineage_index, opens = p.opens
FROM _history_parallel p WHERE s.hid = p.hid AND s.lid = p.lid
"""

# Digests of leaves the certificates table does not hold, from the observations.
UNKNOWN_LEAVES = f"""
CREATE OR REPLACE TEMP TABLE _history_unknown AS
SELECT DISTINCT hash(chain[1]) AS lid, chain[1] AS leaf FROM {{observations}}
WHERE {OK} AND hash(chain[1]) IN (SELECT lid FROM _history_seen WHERE unknown)
"""

_LEDGER_ROW = """hid, lineage_label || '#' || lineage_index AS lineage, old_lid, lid AS new_lid,
    old_iid, iid AS new_iid, old_last_seen, first_seen AS new_first_seen,
    last_seen AS new_last_seen, key_reused, key_seen_before, issuer_changed,
    issuer_key_changed, root_changed, ca_org_changed, key_type_changed, gap_days,
    renewal_interval_days, old_validity_days, validity_days AS new_validity_days,
    seen_once AS new_seen_once"""

# The split groups' ledger: a LAG over each of their lineages (first sightings strictly
# increase within one, so first_seen orders it).
LEDGER_SPLIT = f"""
CREATE OR REPLACE TEMP TABLE _history_ledger_split AS
WITH w AS (
    SELECT s.* EXCLUDE ({_PREVIOUS_KEPT}, {_CHANGE_COLUMNS}), f.key_first_seen, {_PREVIOUS}
    FROM _history_sightings s LEFT JOIN _history_key_first f USING (hid, kid)
    WHERE split
    WINDOW w AS (PARTITION BY hid, lineage_label, lineage_index ORDER BY first_seen)
)
SELECT {_LEDGER_ROW} FROM (SELECT *, {_CHANGE} FROM w) WHERE old_lid IS NOT NULL
"""

# The ledger, narrow: rows of the plain groups, then those of the split ones.
LEDGER = f"""
CREATE OR REPLACE TEMP VIEW _history_ledger AS
SELECT {_LEDGER_ROW} FROM _history_sightings WHERE old_lid IS NOT NULL AND NOT split
UNION ALL SELECT * FROM _history_ledger_split
"""

LINEAGES = """
CREATE OR REPLACE TEMP VIEW _history_lineages AS
SELECT *, lineage_label || '#' || lineage_index AS lineage FROM _history_sightings
"""

_CERTIFICATE = """(
    SELECT hash(sha256) AS lid, sha256 AS leaf, spki_sha256, key_type, key_size, subject,
        issuer, serial, not_after
    FROM {certificates}
    UNION ALL BY NAME SELECT lid, leaf FROM _history_unknown)"""

SIGHTINGS_VIEW = f"""
CREATE OR REPLACE TEMP VIEW history_sightings AS
SELECT h.host, h.port, h.sni, c.leaf, s.lineage, s.first_seen, s.last_seen, s.sightings,
    c.spki_sha256, s.key_label, c.key_type, c.key_size, c.subject, c.issuer, c.serial,
    k.issuer_spki, r.issuer AS root, n.ca_org, s.not_before, c.not_after, s.validity_days,
    s.precertificate, s.seen_once
FROM _history_lineages s
JOIN _history_hosts h USING (hid)
JOIN {_CERTIFICATE} c USING (lid)
LEFT JOIN _history_issuer_keys k USING (isk)
LEFT JOIN _history_names r ON r.iid = s.root
LEFT JOIN _history_names n ON n.iid = s.iid
"""

LEDGER_VIEW = f"""
CREATE OR REPLACE TEMP VIEW history_ledger AS
SELECT h.host, h.port, h.sni, l.lineage, o.leaf AS old_sha256, c.leaf AS new_sha256,
    l.old_last_seen, l.new_first_seen, l.new_last_seen, l.key_reused, l.key_seen_before,
    l.issuer_changed, l.issuer_key_changed, l.root_changed, l.ca_org_changed,
    l.key_type_changed,
    o.key_type AS old_key_type, o.key_size AS old_key_size,
    c.key_type AS new_key_type, c.key_size AS new_key_size,
    l.gap_days, l.renewal_interval_days, l.old_validity_days, l.new_validity_days,
    o.issuer AS old_issuer, c.issuer AS new_issuer, oi.ca_org AS old_ca_org,
    ni.ca_org AS new_ca_org, l.new_seen_once
FROM _history_ledger l
JOIN _history_hosts h USING (hid)
JOIN {_CERTIFICATE} o ON o.lid = l.old_lid
JOIN {_CERTIFICATE} c ON c.lid = l.new_lid
LEFT JOIN _history_names oi ON oi.iid = l.old_iid
LEFT JOIN _history_names ni ON ni.iid = l.new_iid
"""

# observed: another key of the lineage was first served after this key's last sighting.
# The latest first sighting among the other keys is the top one of the lineage, or its
# second when this key is the top one (one row per key, so the second is another key's).
LIFETIMES = f"""
WITH k AS (
    SELECT hid, lineage_label, lineage_index, kid, any_value(lid) AS lid,
        min(first_seen) AS first_seen, max(last_seen) AS last_seen, max(first_seen) AS latest,
        count(*) AS leaves
    FROM _history_sightings WHERE kid IS NOT NULL
    GROUP BY hid, lineage_label, lineage_index, kid
), top AS (
    SELECT hid, lineage_label, lineage_index, arg_max(kid, latest) AS top_kid,
        max(latest, 2) AS tops
    FROM k GROUP BY hid, lineage_label, lineage_index
)
SELECT hid, lineage_label || '#' || lineage_index AS lineage, kid, lid, first_seen, last_seen,
    (epoch_us(last_seen) - epoch_us(first_seen)) {DAYS} AS duration,
    coalesce(CASE WHEN kid = top_kid THEN tops[2] ELSE tops[1] END > last_seen, false)
        AS observed,
    leaves
FROM k JOIN top USING (hid, lineage_label, lineage_index)
"""

LIFETIMES_VIEW = f"""
SELECT h.host, h.port, h.sni, t.lineage, c.spki_sha256, t.first_seen, t.last_seen,
    t.duration, t.observed, t.leaves
FROM ({LIFETIMES}) t JOIN _history_hosts h USING (hid) JOIN {_CERTIFICATE} c USING (lid)
"""

# Per host name (``nid``), on ids; names joined last. A name served on one (port, SNI),
# nearly all, counts its leaves, keys (first leaf of each) and lineages (the leaf opening
# each) without DISTINCT; a name shared by several needs DISTINCT across them.
HOST_SUMMARY = f"""
WITH shared AS (
    SELECT nid FROM _history_hosts GROUP BY nid HAVING count(*) > 1
), s AS (
    SELECT h.nid, h.nid IN (SELECT nid FROM shared) AS shared, s.lid, s.kid,
        s.lineage_label, s.lineage_index, s.first_seen, s.last_seen, s.validity_days,
        s.new_key, s.opens
    FROM _history_sightings s JOIN _history_hosts h USING (hid)
), leaves AS (
    SELECT nid, count(*) AS leaves, count(*) FILTER (WHERE new_key) AS distinct_keys,
        count(*) FILTER (WHERE opens) AS lineages, min(first_seen) AS first_seen,
        max(last_seen) AS last_seen, median(validity_days) AS median_validity_days
    FROM s WHERE NOT shared GROUP BY nid
    UNION ALL
    SELECT nid, count(DISTINCT lid), count(DISTINCT kid),
        count(DISTINCT hash(lineage_label, lineage_index)), min(first_seen), max(last_seen),
        median(validity_days)
    FROM s WHERE shared GROUP BY nid
), changes AS (
    SELECT h.nid, count(*) AS renewals, avg(key_reused::DOUBLE) AS key_reuse_rate,
        sum(issuer_changed::BIGINT) AS issuer_changes,
        sum(coalesce(ca_org_changed, false)::BIGINT) AS ca_org_changes,
        median(renewal_interval_days) AS median_renewal_interval_days
    FROM _history_ledger l JOIN _history_hosts h USING (hid) GROUP BY h.nid
), ages AS (
    SELECT h.nid, median(duration) AS median_key_age_days
    FROM ({LIFETIMES}) t JOIN _history_hosts h USING (hid) GROUP BY h.nid
), names AS (
    SELECT DISTINCT nid, host FROM _history_hosts
)
SELECT names.host, leaves.* EXCLUDE (nid), coalesce(renewals, 0) AS renewals, key_reuse_rate,
    coalesce(issuer_changes, 0) AS issuer_changes, coalesce(ca_org_changes, 0) AS ca_org_changes,
    median_renewal_interval_days, median_key_age_days
FROM leaves JOIN names USING (nid) LEFT JOIN changes USING (nid) LEFT JOIN ages USING (nid)
ORDER BY names.host
"""

POPULATION = """
SELECT
    (SELECT count(DISTINCT h.nid) FROM _history_hosts h
        WHERE hid IN (SELECT hid FROM _history_sightings)) AS hosts,
    (SELECT count(DISTINCT lid) FROM _history_sightings) AS leaves,
    count(*) AS renewals,
    avg(key_reused::DOUBLE) AS key_reuse_rate,
    avg(issuer_changed::DOUBLE) AS issuer_change_rate,
    avg(ca_org_changed::DOUBLE) AS ca_org_change_rate,
    median(renewal_interval_days) AS median_renewal_interval_days,
    (SELECT median(validity_days) FROM _history_sightings) AS median_validity_days
FROM _history_ledger
"""
