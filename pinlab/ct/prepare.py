"""Log entries into certificate rows, in this process or in a pool of processes.

Preparing an entry (checking it, filtering it, parsing its certificate and chain into
rows, checking each signature of the chain) is most of a backfill's CPU, and each entry is
prepared on its own. :class:`EntryPreparer` does it for one entry; :class:`PreparePool`
hands whole batches to worker processes and gives the results back **in log order**, so
the writer (:class:`pinlab.ct.ingest.IssuanceWriter`), which merges, deduplicates and
commits, sees exactly the sequence it would see preparing in process. A worker's error (a
tampered precertificate) is raised where the in-process path would raise it: when its
batch's turn comes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TypeVar

from pinlab.children import die_with_parent, usable_cores
from pinlab.ct.checks import EntryChecks, is_precert_signing
from pinlab.ct.domains import DomainFilter
from pinlab.ct.entries import LogEntry
from pinlab.ct.errors import LogMisbehaviourError
from pinlab.ct.rows import certificate_row, dns_names, identities, issuance_key, tbs_of
from pinlab.errors import MalformedCertificateError
from pinlab.positional import PickledByPosition
from pinlab.store import CertificateRow

__all__ = [
    "POOL_MIN_ENTRIES",
    "EntryPreparer",
    "IngestStats",
    "PreparePool",
    "Prepared",
    "PreparedBatch",
    "default_parse_workers",
]

_CHAIN_CACHE_LIMIT = 10_000
POOL_MIN_ENTRIES = 20_000
"""Below this many entries a backfill prepares in process by default: starting the
workers (a Python interpreter importing cryptography each) costs about as much as
preparing that many entries on one core."""
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Prepared(PickledByPosition):
    """An entry that passed the filter, its rows built: the leaf's, then its chain's."""

    index: int
    observed_at: datetime
    precert: bool
    key: str
    hosts: tuple[str, ...]
    rows: tuple[CertificateRow, ...] = field(repr=False)
    chain_error: str | None = None
    """Why the chain does not hold together (see :mod:`pinlab.ct.checks`), None if it does."""

    @property
    def leaf(self) -> CertificateRow:
        """The logged certificate (or precertificate)."""
        return self.rows[0]


@dataclass(slots=True)
class IngestStats:
    """What a backfill did so far."""

    entries: int = 0
    matched: int = 0
    """Entries whose certificate passed the domain filter."""
    observations: int = 0
    issuances: int = 0
    merged: int = 0
    """Issuances seen as precertificate and final certificate in the same run."""
    linked: int = 0
    """Final certificates linked to an issuance recorded earlier (no new observation)."""
    duplicates: int = 0
    unparsable: int = 0
    """Entries whose certificate cryptography refuses: stored as raw bytes in
    ``certificates`` (``parse_error`` set) and listed in ``ct_unparsable``."""
    nameless: int = 0
    """Certificates with neither a SAN nor a subject common name: nothing to record them
    under, so they are counted here and not stored."""
    bad_chains: int = 0
    """Matched entries whose chain does not hold together (stored, ``chain_error`` set)."""

    def add(self, other: IngestStats) -> None:
        """Add the counts of ``other`` (a worker's batch) to these."""
        for name in (f.name for f in dataclasses.fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class PreparedBatch:
    """What preparing one batch gave: the entries to record, in log order, the entries
    whose certificate does not parse, and the counts."""

    prepared: list[Prepared]
    unparsable: list[tuple[LogEntry, CertificateRow]]
    stats: IngestStats


class EntryPreparer:
    """Checks, filters and parses entries of one source, one at a time."""

    def __init__(
        self,
        domains: DomainFilter | None,
        *,
        check_entries: bool = True,
        stats: IngestStats | None = None,
    ) -> None:
        self.domains = domains
        self.check_entries = check_entries
        """Whether entries come from a log (False for crt.sh: no logged TBS, no chain)."""
        self.stats = stats if stats is not None else IngestStats()
        self.checks = EntryChecks()
        self.unparsable: list[tuple[LogEntry, CertificateRow]] = []
        self._chain_rows: dict[bytes, CertificateRow] = {}

    def _chain_row(self, der: bytes) -> CertificateRow:
        row = self._chain_rows.get(der)
        if row is None:
            if len(self._chain_rows) >= _CHAIN_CACHE_LIMIT:
                self._chain_rows.clear()
            try:
                row = certificate_row(der)
            except MalformedCertificateError as error:  # flagged by the chain check
                row = CertificateRow.unparsable(hashlib.sha256(der).hexdigest(), der, str(error))
            self._chain_rows[der] = row
        return row

    def prepare(self, entry: LogEntry) -> Prepared | None:
        """Check, filter and parse one entry; None when filtered out or not storable.

        A precertificate that does not match its own logged TBS or issuer key hash is a
        :class:`LogMisbehaviourError`: the entry was tampered with. This is checked before
        anything else, so a tampered precertificate can neither dodge the domain filter
        nor pass for an unparsable certificate. An entry whose certificate does not parse
        is kept as raw bytes (see :attr:`IngestStats.unparsable`).
        """
        self.stats.entries += 1
        der = entry.certificate
        if entry.is_precert and self.check_entries:
            self.checks.precert(entry)
        if self.domains is not None:
            quick = dns_names(der)
            if quick and not self.domains.match(quick):
                return None
        try:
            leaf = certificate_row(der)
        except MalformedCertificateError as error:
            self.stats.unparsable += 1
            row = CertificateRow.unparsable(hashlib.sha256(der).hexdigest(), der, str(error))
            self.unparsable.append((entry, row))
            return None
        names = identities(leaf, der)
        if not names:
            self.stats.nameless += 1
            return None
        if self.domains is not None:
            hosts = tuple(self.domains.match(names))
        else:
            hosts = tuple(n.lower().rstrip(".") for n in names[:1])
        if not hosts:
            return None
        chain = tuple(self._chain_row(item) for item in entry.chain)
        if entry.is_precert:
            assert entry.tbs is not None
            self._check_issuer_key(entry, chain)
            key = issuance_key(tbs=entry.tbs, precert_entry=True)
        else:
            key = issuance_key(tbs=tbs_of(der), precert_entry=False)
        chain_error = self.checks.chain_error(entry) if self.check_entries else None
        self.stats.bad_chains += chain_error is not None
        self.stats.matched += 1
        return Prepared(
            entry.index, entry.observed_at, entry.is_precert, key, hosts, (leaf, *chain),
            chain_error,
        )  # fmt: skip

    def _check_issuer_key(self, entry: LogEntry, chain: tuple[CertificateRow, ...]) -> None:
        """RFC 6962 section 3.2: ``issuer_key_hash`` is the key of the final certificate's
        issuer: ``chain[1]`` when ``chain[0]`` is a Precertificate Signing Certificate."""
        if not self.check_entries:
            return
        signing_cert = bool(entry.chain) and is_precert_signing(entry.chain[0])
        issuer = chain[1] if signing_cert and len(chain) > 1 else chain[0] if chain else None
        if issuer is not None and issuer.parse_error is not None:
            raise LogMisbehaviourError(
                f"entry {entry.index}: the issuer in extra_data does not parse, so the "
                "precertificate's issuer_key_hash cannot be checked (tampered entry?)"
            )
        if issuer is not None and issuer.spki_sha256 != (entry.issuer_key_hash or b"").hex():
            raise LogMisbehaviourError(
                f"entry {entry.index}: issuer_key_hash is not the key of the issuer in "
                "extra_data (tampered entry?)"
            )

    def batch(self, entries: Iterable[LogEntry]) -> PreparedBatch:
        """Prepare ``entries``; the counts and unparsable entries are this batch's only."""
        self.stats, self.unparsable = IngestStats(), []
        prepared = [p for entry in entries if (p := self.prepare(entry)) is not None]
        return PreparedBatch(prepared, self.unparsable, self.stats)


# -- the pool ------------------------------------------------------------------------------

_worker: EntryPreparer | None = None


def _start_worker(domains: DomainFilter | None, check_entries: bool, parent: int) -> None:
    global _worker
    die_with_parent(parent)  # a backfill killed with kill -9 leaves no worker waiting
    _worker = EntryPreparer(domains, check_entries=check_entries)


def _prepare_in_worker(entries: Sequence[LogEntry]) -> PreparedBatch:
    assert _worker is not None, "worker not initialised"
    return _worker.batch(entries)


def default_parse_workers() -> int:
    """Worker processes for preparing entries: one per core this process may run on.

    Not the cores less the backfill's own: its process (fetching, merging, writing) takes
    about two thirds of a worker's CPU per entry, so it leaves part of its core idle. On 2
    cores, backfilling 400,000 entries of ``pinlab bench ct``'s log, two workers stored
    4,432 and 5,006 entries/s against 3,684 and 3,726 for one (interleaved runs).
    """
    return usable_cores()


class PreparePool:
    """``workers`` processes preparing batches; results come back in submission order.

    ::

        with PreparePool(domains, workers=2) as pool:
            for batch_end, batch in pool.prepare(batches):
                ...
    """

    def __init__(
        self, domains: DomainFilter | None, *, workers: int, check_entries: bool = True
    ) -> None:
        if workers < 1:
            raise ValueError("a prepare pool needs at least one worker")
        self.workers = workers
        # spawn, not fork: the parent runs fetch threads and a DuckDB connection, which a
        # forked child would inherit in whatever state they were.
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(domains, check_entries, os.getpid()),
        )

    def prepare(
        self, batches: Iterable[tuple[K, Sequence[LogEntry]]]
    ) -> Iterator[tuple[K, PreparedBatch]]:
        """Prepare every batch of ``batches`` ((tag, entries) pairs), yielding (tag, result)
        in order, with ``2 * workers`` batches in flight.

        An error raised by ``batches`` itself (a fetch or a Merkle check failing) is raised
        only after the batches read before it are yielded, as the in-process path would.
        """
        window: deque[tuple[K, concurrent.futures.Future[PreparedBatch]]] = deque()
        source = iter(batches)
        failure: BaseException | None = None
        exhausted = False
        while True:
            while not exhausted and failure is None and len(window) < 2 * self.workers:
                try:
                    tag, entries = next(source)
                except StopIteration:
                    exhausted = True
                except Exception as error:  # re-raised once the batches before it are out
                    failure = error
                else:
                    window.append((tag, self._executor.submit(_prepare_in_worker, entries)))
            if not window:
                break
            tag, future = window.popleft()
            yield tag, future.result()
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Stop the workers, dropping batches not started."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
