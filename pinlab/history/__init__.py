"""The renewal ledger: what servers did when their certificate changed.

Derived from two tables of the store (never edited, always recomputable):

- ``observations``: ``host``, ``port``, ``sni``, ``observed_at``, ``status``, ``chain`` (the
  presented chain as a list of certificate SHA-256 hex digests, leaf first);
- ``certificates``: ``sha256``, ``der``, ``subject``, ``issuer``, ``serial``,
  ``spki_sha256``, ``not_before``, ``not_after``, ``key_type``, ``key_size``, ``curve``.

**Lineages.** Lineages are for leaves served at the same time: one per key type (badssl.com
serves RSA and ECDSA side by side) or one per IP behind a CDN; counting every alternation
between them as a renewal would invent rotations. Leaves that follow each other are one
lineage whatever their key type or CA: a move from RSA to ECDSA, or from RSA-4096 to
RSA-2048, is a renewal (``key_type_changed``), and a pin on the old key breaks there. The
distinct leaves of a (host, port, SNI) are taken in order of first sighting (then last
sighting, then digest); a new leaf continues a lineage whose current leaf appeared before
it and stopped being served before it appeared, or stops first after being served
alongside it for less than half of the new leaf's span (a roll-out across IPs, a CDN
hand-over); otherwise it opens a parallel lineage (two leaves first seen at the same
instant are parallel). "Served alongside" counts the current leaf's sightings up to the
new leaf's last one: an old leaf that comes back later (a rollback) is not parallel, and
flapping back to an earlier leaf is never a renewal (only distinct leaves count). When
several lineages could take the new leaf: one whose current leaf has the same key label
(a dual RSA/ECDSA host renewing both keeps RSA after RSA, ECDSA after ECDSA; leaves first
seen at one instant are matched by key label first), then the one served last. A lineage
is named by its first leaf's key label and a number among the host's lineages that
started with that label: ``RSA-2048#0``, ``P-256#0``, ``RSA-2048#1``...

**Precertificates** (CT poison extension) are dropped when the final certificate of the same
issuance (issuer and serial) is present, and otherwise kept and flagged. A leaf seen in a
single observation is kept and flagged ``seen_once`` so analyses can exclude it. A leaf
missing from ``certificates`` is kept with unknown facts (key label ``unknown``).

**Issuer key, root, CA organisation.** The issuer key is the SPKI of the first presented
certificate whose subject is the leaf's issuer; the root is the name the presented chain
leads to (its top certificate's issuer); both from the earliest sighting that has them.
The CA organisation is the issuer's O, read from the RFC 4514 ``issuer`` string (escapes
undone), so no DER is parsed except to confirm a precertificate. A change flag is unknown
(``<NA>``) when either side is.

**Two derivations, one result.** :mod:`pinlab.history.frames` derives the tables from two
pandas DataFrames (readable; for notebooks, tests and survival's replay); :class:`History`
derives the same tables in DuckDB straight from a store, a connection or a Parquet dataset
(a million hosts x 12 observations in well under a minute: ``pinlab bench history``). The
rules both follow are in :mod:`pinlab.history.rules`, and the tests hold them equal.

**Analyses from the literature** take those tables and return tidy frames:
:mod:`pinlab.history.analyses` (renewal-schedule regularity, key reuse per CA, key-type
migrations, Wilson intervals) and :mod:`pinlab.history.events` (time to rotate after a CA
event, and the events of the Let's Encrypt hierarchy).
"""

from pinlab.history.analyses import (
    AnalysisInputError,
    key_reuse_by_ca,
    key_type_migrations,
    regularity_summary,
    renewal_regularity,
    wilson_interval,
)
from pinlab.history.events import (
    LE_SUCCESSIONS,
    le_ca_events,
    rotation_after_events,
    rotation_summary,
)
from pinlab.history.frames import (
    host_summary,
    key_lifetimes,
    leaf_sightings,
    population_summary,
    renewal_ledger,
    validity_over_time,
)
from pinlab.history.rules import LEDGER_COLUMNS, SIGHTING_COLUMNS
from pinlab.history.sql import History, HistoryError, ledger_from_connection

__all__ = [
    "LEDGER_COLUMNS",
    "LE_SUCCESSIONS",
    "SIGHTING_COLUMNS",
    "AnalysisInputError",
    "History",
    "HistoryError",
    "host_summary",
    "key_lifetimes",
    "key_reuse_by_ca",
    "key_type_migrations",
    "le_ca_events",
    "leaf_sightings",
    "ledger_from_connection",
    "population_summary",
    "regularity_summary",
    "renewal_ledger",
    "renewal_regularity",
    "rotation_after_events",
    "rotation_summary",
    "validity_over_time",
    "wilson_interval",
]
