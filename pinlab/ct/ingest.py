"""Log entries into the store: one observation per issuance, merged, deduplicated, resumable.

Each batch is one transaction holding its certificates, its observations, the issuance
registry rows and the new position of the backfill, so a crash loses at most the batch in
flight and a rerun resumes exactly where the last commit stopped.

**Issuances.** A precertificate and its final certificate share the TBS of
:func:`pinlab.ct.rows.issuance_key` and are one issuance: its observation carries the
final certificate's chain when both are seen, at the earlier (precertificate) timestamp.
A precertificate waits up to ``merge_window`` entries for its final certificate in the
same run, then is recorded alone; a final certificate that turns up later is linked to
the recorded issuance in ``ct_issuances`` (and stored in ``certificates``) without a
second observation. The same issuance read from a second log, or again after a resume,
is recognised there and skipped.

Observations of CT carry ``port`` 443, no SNI and no address: CT shows issuance, not
deployment. ``source_extra`` holds the log, the entry index(es) and the entry type.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from pinlab.ct.domains import DomainFilter
from pinlab.ct.entries import LogEntry
from pinlab.ct.prepare import EntryPreparer, IngestStats, Prepared, PreparedBatch
from pinlab.ct.registry import DEFAULT_INDEX_BYTES, KeyIndex, key64
from pinlab.ct.sth import SignedTreeHead
from pinlab.store import CertificateRow, Observation, Scan, Status, Store

__all__ = ["IngestStats", "IssuanceWriter", "Prepared"]

CT_PORT = 443
_ABSENT = object()


def _json_text(text: str) -> str:
    """``text`` as a JSON string, exactly as :func:`json.dumps` writes it."""
    return json.dumps(text)


def _insert(store: Store, table: str, records: Sequence[Any], *, conflict: str = "") -> None:
    """Insert dataclass records or dicts BY NAME (inside the caller's transaction)."""
    if not records:
        return
    if dataclasses.is_dataclass(records[0]):
        names = [f.name for f in dataclasses.fields(records[0])]
        data = {name: [getattr(r, name) for r in records] for name in names}
    else:
        data = {name: [r[name] for r in records] for name in records[0]}
    store.connection.register("_ct_batch", pa.table(data))
    try:
        store.connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _ct_batch {conflict}")
    finally:
        store.connection.unregister("_ct_batch")


class IssuanceWriter:
    """Turns parsed entries of one source into committed store rows (see the module doc)."""

    def __init__(
        self,
        store: Store,
        *,
        scan: Scan,
        log: str,
        domains: DomainFilter | None,
        merge_window: int = 10_000,
        check_entries: bool = True,
        index_bytes: int = DEFAULT_INDEX_BYTES,
    ) -> None:
        self.store, self.scan, self.log = store, scan, log
        self.scan_id = scan.scan_id
        self._scan_stored = False
        self.domains = domains
        self.filter_key = domains.key if domains is not None else "*"
        self.merge_window = merge_window
        self.stats = IngestStats()
        self._log_json = _json_text(log)
        self.pending: dict[str, Prepared] = {}
        self.index = KeyIndex.load(store, size=index_bytes)
        self.preparer = EntryPreparer(domains, check_entries=check_entries, stats=self.stats)

    # -- per entry ---------------------------------------------------------------------------

    def prepare(self, entry: LogEntry) -> Prepared | None:
        """Check, filter and parse one entry in this process (see
        :meth:`pinlab.ct.prepare.EntryPreparer.prepare`)."""
        return self.preparer.prepare(entry)

    def absorb(self, batch: PreparedBatch) -> list[Prepared]:
        """Take in a batch prepared elsewhere (a worker process): its counts and its
        unparsable entries; return the entries to pass to :meth:`commit`."""
        self.stats.add(batch.stats)
        self.preparer.unparsable.extend(batch.unparsable)
        return batch.prepared

    # -- per batch ---------------------------------------------------------------------------

    def _existing(self, keys: Iterable[str]) -> dict[tuple[str, str], str | None]:
        """(issuance, host) -> final_sha256 of what the registry already holds."""
        wanted = {key64(key): key for key in keys}
        hits = self.index.hits(list(wanted))
        if not hits:
            return {}
        self.store.connection.register("_ct_keys", pa.table({"key64": sorted(hits)}))
        try:
            rows = self.store.connection.execute(
                "SELECT issuance, host, final_sha256 FROM ct_issuances "
                "WHERE key64 IN (SELECT key64 FROM _ct_keys)"
            ).fetchall()
        finally:
            self.store.connection.unregister("_ct_keys")
        return {(issuance, host): final for issuance, host, final in rows}

    def commit(
        self,
        prepared: Sequence[Prepared],
        *,
        next_index: int,
        sth: SignedTreeHead | None,
        now: datetime,
        flush_all: bool = False,
    ) -> None:
        """Record one batch (entries up to ``next_index`` processed) in one transaction."""
        finals: list[Prepared] = []
        fresh: list[Prepared] = []
        merged: list[tuple[Prepared | None, Prepared]] = []
        seen: set[str] = set()  # final certificates of this batch
        for item in prepared:
            if item.precert:
                if item.key in self.pending:
                    self.stats.duplicates += 1
                else:
                    self.pending[item.key] = item
                    fresh.append(item)
            elif item.key in self.pending:
                merged.append((self.pending.pop(item.key), item))
                seen.add(item.key)
            elif item.key in seen:
                self.stats.duplicates += 1
            else:
                finals.append(item)
                seen.add(item.key)
        keys = [item.key for item in (*fresh, *finals)] + [final.key for _, final in merged]
        existing = self._existing(keys)
        for item in fresh:
            if self.pending.get(item.key) is not item:
                continue  # merged with its final certificate in this very batch
            unseen = tuple(h for h in item.hosts if (item.key, h) not in existing)
            if not unseen:
                del self.pending[item.key]
                self.stats.duplicates += 1
            elif unseen != item.hosts:
                self.pending[item.key] = dataclasses.replace(item, hosts=unseen)
        writes: list[tuple[Prepared | None, Prepared | None, tuple[str, ...]]] = []
        links: list[tuple[str, str, Prepared]] = []
        pairs = [*merged, *((None, item) for item in finals)]
        for precert, final in pairs:
            missing: list[str] = []
            for host in (precert or final).hosts:
                recorded: object = existing.get((final.key, host), _ABSENT)
                if recorded is _ABSENT:
                    missing.append(host)
                elif recorded is None:
                    links.append((final.key, host, final))
                else:
                    self.stats.duplicates += 1
            if missing:
                writes.append((precert, final, tuple(missing)))
                self.stats.merged += precert is not None
        horizon = next_index if flush_all else next_index - self.merge_window
        for key, item in list(self.pending.items()):
            if item.index < horizon:
                writes.append((self.pending.pop(key), None, item.hosts))
        resume = min((item.index for item in self.pending.values()), default=next_index)
        self._write(writes, links, next_index=next_index, resume=resume, sth=sth, now=now)

    def _write(
        self,
        writes: Sequence[tuple[Prepared | None, Prepared | None, tuple[str, ...]]],
        links: Sequence[tuple[str, str, Prepared]],
        *,
        next_index: int,
        resume: int,
        sth: SignedTreeHead | None,
        now: datetime,
    ) -> None:
        certificates: dict[str, CertificateRow] = {}
        observations: list[Observation] = []
        registry: list[dict[str, Any]] = []
        for precert, final, hosts in writes:
            shown = final if final is not None else precert
            assert shown is not None
            first = precert if precert is not None else shown
            for row in (*(precert.rows[:1] if precert and final else ()), *shown.rows):
                certificates[row.sha256] = row
            chain_error = shown.chain_error or (precert.chain_error if precert else None)
            # json.dumps of the same dict, written out: it was a tenth of the writer's time
            extra = (
                f'{{"log":{self._log_json},"entry":"{"x509" if final is not None else "precert"}"'
                f',"index":{shown.index}'
                + (f',"precert_index":{precert.index}' if precert and final else "")
                + (f',"chain_error":{_json_text(chain_error)}' if chain_error else "")
                + "}"
            )
            for host in hosts:
                observations.append(self._observation(host, first.observed_at, shown, extra))
                registry.append({
                    "key64": key64(shown.key), "issuance": shown.key, "host": host,
                    "issuer": shown.leaf.issuer, "serial": shown.leaf.serial,
                    "precert_sha256": precert.leaf.sha256 if precert else None,
                    "final_sha256": final.leaf.sha256 if final else None,
                    "observed_at": first.observed_at, "log": self.log,
                    "precert_index": precert.index if precert else None,
                    "final_index": final.index if final else None, "scan_id": self.scan_id,
                    "chain_error": chain_error,
                })  # fmt: skip
            self.stats.issuances += 1
        for _, _, final in links:
            for row in final.rows:
                certificates[row.sha256] = row
        unparsable = [
            {
                "log": self.log, "entry_index": entry.index,
                "entry_type": "precert" if entry.is_precert else "x509", "sha256": row.sha256,
                "error": row.parse_error, "observed_at": entry.observed_at,
                "scan_id": self.scan_id,
            }
            for entry, row in self.preparer.unparsable
        ]  # fmt: skip
        for _, row in self.preparer.unparsable:
            certificates.setdefault(row.sha256, row)
        self.preparer.unparsable.clear()
        connection = self.store.connection
        with self.store.transaction():
            if not self._scan_stored:  # with the first batch: a run failing before leaves nothing
                _insert(self.store, "scans", [self.scan])
            _insert(
                self.store,
                "certificates",
                list(certificates.values()),
                conflict="ON CONFLICT DO NOTHING",
            )
            _insert(self.store, "observations", observations)
            _insert(self.store, "ct_issuances", registry)
            _insert(self.store, "ct_unparsable", unparsable, conflict="ON CONFLICT DO NOTHING")
            for key, host, final in links:
                connection.execute(
                    "UPDATE ct_issuances SET final_sha256 = ?, final_index = ? "
                    "WHERE key64 = ? AND issuance = ? AND host = ? AND final_sha256 IS NULL",
                    [final.leaf.sha256, final.index, key64(key), key, host],
                )
            connection.execute(
                "INSERT INTO ct_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log, filter) "
                "DO UPDATE SET next_index = excluded.next_index, "
                "resume_index = excluded.resume_index, tree_size = excluded.tree_size, "
                "sth_timestamp = excluded.sth_timestamp, root_hash = excluded.root_hash, "
                "scan_id = excluded.scan_id, updated_at = excluded.updated_at",
                [
                    self.log, self.filter_key, next_index, resume,
                    sth.tree_size if sth else None, sth.timestamp if sth else None,
                    sth.root_hash if sth else None, self.scan_id, now,
                ],
            )  # fmt: skip
        self._scan_stored = True
        self.index.add([row["key64"] for row in registry])
        self.stats.observations += len(observations)
        self.stats.linked += len({(key, final.index) for key, _, final in links})

    def _observation(self, host: str, at: datetime, shown: Prepared, extra: str) -> Observation:
        return Observation(
            scan_id=self.scan_id, host=host, port=CT_PORT, sni=None, ip=None, target_ip=None,
            observed_at=at, status=Status.OK, error=None, tls_version=None, cipher=None,
            chain=tuple(row.sha256 for row in shown.rows), validation=None,
            validation_error=None, connect_ms=None, handshake_ms=None, attempts=1,
            source_extra=extra,
        )  # fmt: skip
