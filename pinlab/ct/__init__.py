"""Certificate Transparency backfill: years of issuance history without waiting for scans.

Three sources, each streamed into the store as scans of source ``ct`` (one observation
per issuance, at its CT timestamp; see :mod:`pinlab.ct.ingest`):

- RFC 6962 logs (:func:`backfill_log`), tree heads and entries verifiable against the log key;
- static-ct-api tiled logs (:func:`backfill_static`);
- crt.sh searches and downloads (:func:`import_crtsh`, :class:`CrtSh`).

:class:`DomainFilter` keeps a domain's certificates while streaming. CT shows when a
certificate was *issued*, not when (or whether) a server deployed it.
"""

from pinlab.ct.backfill import (
    BackfillOptions,
    BackfillResult,
    Progress,
    backfill_log,
    backfill_static,
)
from pinlab.ct.crtsh import CrtSh, CrtShRecord, import_crtsh, read_crtsh_json
from pinlab.ct.domains import DomainFilter
from pinlab.ct.entries import EntryType, LogEntry
from pinlab.ct.errors import CTError, LogFetchError, LogMisbehaviourError
from pinlab.ct.ingest import IngestStats
from pinlab.ct.sth import LogKey, SignedTreeHead

__all__ = [
    "BackfillOptions",
    "BackfillResult",
    "CTError",
    "CrtSh",
    "CrtShRecord",
    "DomainFilter",
    "EntryType",
    "IngestStats",
    "LogEntry",
    "LogFetchError",
    "LogKey",
    "LogMisbehaviourError",
    "Progress",
    "SignedTreeHead",
    "backfill_log",
    "backfill_static",
    "import_crtsh",
    "read_crtsh_json",
]
