"""The collector: many TLS handshakes at once, politely, each one a row in the store.

Concurrency model: one asyncio event loop driving pyOpenSSL over memory BIOs
(:mod:`pinlab.collect.aiotls`). Both models of the issue were measured against a local nginx
(2 workers, 200 SNI hosts, 50 handshakes in flight, P-256 chains) on 2 cores shared with
nginx and other jobs, alternating runs of 3,000-6,000 handshakes:

==================================  ==================  ========================
per handshake                        threads + tls.py    asyncio + memory BIOs
==================================  ==================  ========================
handshake only (bare)                990-1,070/s         840-1,360/s
  client CPU                         0.71-0.88 ms        0.58-0.67 ms
+ parse + validate (the real work)   615-660/s           610-1,090/s
  client CPU                         1.27-1.43 ms        0.91-0.98 ms
==================================  ==================  ========================

The full benchmark (12,000 handshakes, best of 2) agrees on CPU and splits on speed with
the machine's load: bare asyncio 1,204/s at 0.68 ms vs threads 887/s at 1.22 ms on one
run; 561/s at 0.70 ms vs 825/s at 0.85 ms on a run with load average 5-7 on 2 cores.

So a thread pool, the expected winner, wins the bare loop when cores are contended (50
runnable threads get a bigger share of them, and OpenSSL runs outside the GIL), but every
run spent 20-80 % more CPU per handshake on threads, handing the GIL back and forth at each
``do_handshake`` step; with the collector's own per-target work added (parsing, path
validation, all GIL-bound) asyncio was as fast or faster in every paired run. Per-IP waits
also cost a suspended coroutine, not a parked thread. Kept: asyncio. Its limit is one core
per loop; sharding targets over several loops/processes is the way past it. The loop is
uvloop's (:mod:`pinlab.collect.loop`).

Two stages joined by a bounded queue: a resolver stage (:mod:`pinlab.collect.resolve`,
``dns_concurrency`` lookups in flight, its own ``dns_timeout``) runs ahead and feeds
resolved targets to the handshake stage, so a slow name server never idles a handshake
slot; targets that fixed an address (``ip,sni`` lines, IP literals) skip DNS, and a name
that does not resolve becomes its row (``nxdomain``, ``servfail``, ``dns_timeout``,
``dns_error``) without taking a slot.

Politeness: a global limit of handshakes in flight (``concurrency``), at most ``per_ip``
connections per resolved address (a target takes its address's slot first, then a
handshake slot, so targets queued behind a silent address with many names idle no
handshake slot; up to 4 x ``concurrency`` targets are admitted at once), an optional
global rate (handshake starts per second),
``timeout`` covering connect and handshake, optionally ``connect_timeout`` and
``handshake_timeout`` for each phase.
Retries with exponential backoff for ``timeout`` and ``reset`` only: packet loss, SYN
backlog overflows and load-shedding resets pass; a refusal (RST to our SYN), a DNS answer,
an alert or a protocol error are the server's answer and are recorded at once. A retry
goes to the name's next address, if it has several.

Memory stays bounded: targets stream from the parser into at most ``concurrency`` tasks;
finished observations go through a bounded queue to one writer thread that commits them in
batches (one transaction each) and then tells the observer (the CLI's progress bar).

A presented certificate that does not parse gives status ``malformed_certificate``; its
raw DER is still stored (``certificates.parse_error`` set, parsed fields null) and the
chain column lists it in place, so nothing the server sent is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import queue
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pinlab.certs import Certificate
from pinlab.collect import loop as event_loop
from pinlab.collect.aiotls import handshake_async
from pinlab.collect.resolve import SYSTEM, Resolution, Resolver, parse_resolver
from pinlab.collect.targets import Target
from pinlab.collect.tls import HandshakeError, client_context
from pinlab.collect.validation import Validator
from pinlab.errors import MalformedCertificateError
from pinlab.store.records import CertificateRow, Observation, Scan, Status
from pinlab.verify import TrustStore

if TYPE_CHECKING:  # DuckDB and pandas stay out of collector processes (fast start-up)
    from pinlab.store import Store
    from pinlab.store.snapshot import SnapshotWriter

__all__ = ["TRANSIENT_STATUSES", "CollectOptions", "CollectSummary", "collect"]

TRANSIENT_STATUSES = frozenset({Status.TIMEOUT, Status.RESET})
_HANDOVER = 64
_ADMITTED = 4
"""Targets admitted per handshake slot (waiting for their address, or to retry)."""


@dataclass(frozen=True, slots=True)
class CollectOptions:
    """How hard and how politely to collect."""

    concurrency: int = 100
    per_ip: int = 2
    rate: float | None = None
    """Handshake starts per second over the whole campaign (retries included); None: no cap."""
    timeout: float = 10.0
    """Seconds for connect and handshake together."""
    connect_timeout: float | None = None
    """Seconds for the TCP connect alone (None: only ``timeout`` bounds it)."""
    handshake_timeout: float | None = None
    """Seconds for the TLS handshake alone (None: only ``timeout`` bounds it)."""
    dns_concurrency: int = 500
    """DNS lookups in flight (the resolver stage's budget, apart from handshake slots)."""
    dns_timeout: float = 5.0
    """Seconds for one name's A and AAAA lookups."""
    resolver: str = SYSTEM
    """``system`` (getaddrinfo), ``resolv.conf`` or ``HOST[:PORT]``: see
    :mod:`pinlab.collect.resolve`."""
    retries: int = 1
    backoff: float = 0.5
    """First retry waits about this long (x0.5-1.5 jitter), doubling each time."""
    batch_size: int = 500
    flush_seconds: float = 0.5
    validation_cache: int = 4096
    """Valid chains remembered by :class:`Validator` (0: build every path)."""
    snapshot_every: float | None = None
    """Seconds between snapshots readers can open while the campaign writes (None: none);
    see :mod:`pinlab.store.snapshot`."""

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.per_ip < 1 or self.timeout <= 0 or self.retries < 0:
            raise ValueError("concurrency, per_ip and timeout must be positive, retries >= 0")
        if self.snapshot_every is not None and not self.snapshot_every > 0:
            raise ValueError("snapshot_every must be positive (or None for no snapshots)")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive (or None for no limit)")
        for phase in (self.connect_timeout, self.handshake_timeout):
            if phase is not None and not phase > 0:
                raise ValueError("connect and handshake timeouts must be positive (or None)")
        if self.dns_concurrency < 1 or not self.dns_timeout > 0:
            raise ValueError("dns_concurrency and dns_timeout must be positive")
        parse_resolver(self.resolver)  # a TargetError names what is wrong


@dataclass(slots=True)
class CollectSummary:
    """What a campaign did; ``statuses`` counts observations by status."""

    scan: Scan
    statuses: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    """Targets already done in the resumed scan."""
    handshakes: int = 0
    """Handshake attempts, retries included."""
    elapsed: float = 0.0
    distinct_certificates: int = 0
    dns_lookups: int = 0
    """Names sent to the resolver (cache misses)."""

    @property
    def observations(self) -> int:
        """Observations written by this run."""
        return sum(self.statuses.values())

    @property
    def per_second(self) -> float:
        """Targets completed per second of wall time."""
        return self.observations / self.elapsed if self.elapsed > 0 else 0.0


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Result:
    observation: Observation
    certificates: tuple[CertificateRow, ...]


_Ready = tuple[Target, datetime, Resolution]
"""A target, when its lookup started, and what the lookup gave."""


class _RateLimiter:
    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _PerIP:
    """One semaphore per address in use; dropped when no task holds or waits for it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, ip: str) -> AsyncIterator[None]:
        semaphore, users = self.entries.setdefault(ip, (asyncio.Semaphore(self.limit), [0]))
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self.entries[ip]


class _Sink(Protocol):
    """Where the engine hands its finished results: the writer thread, or a pipe to the
    parent when it runs in a collector process (:mod:`pinlab.collect.worker`)."""

    @property
    def queue(self) -> _Handover: ...

    @property
    def error(self) -> BaseException | None: ...

    def is_alive(self) -> bool: ...


class _Handover(Protocol):
    def put(self, item: list[_Result], /) -> None: ...

    def put_nowait(self, item: list[_Result], /) -> None: ...


class _Writer(threading.Thread):
    """Commits results in batches from its own thread, then notifies the observer."""

    def __init__(
        self,
        store: Store,
        options: CollectOptions,
        observer: Callable[[Observation], None] | None,
    ) -> None:
        super().__init__(name="pinlab-writer", daemon=True)
        self.store, self.options, self.observer = store, options, observer
        # Lists of results: one hand-over per many results keeps GIL ping-pong low.
        self.queue: queue.Queue[list[_Result] | None] = queue.Queue(maxsize=64)
        self.error: BaseException | None = None
        self.statuses: Counter[str] = Counter()
        self.snapshot: SnapshotWriter | None = None
        if options.snapshot_every is not None:
            from pinlab.store.snapshot import SnapshotWriter

            self.snapshot = SnapshotWriter(store.path, options.snapshot_every)

    def run(self) -> None:
        pending: list[_Result] = []
        deadline = time.monotonic() + self.options.flush_seconds
        done = False
        while not done:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                if item is None:
                    done = True
                else:
                    pending.extend(item)
            except queue.Empty:
                pass
            full = len(pending) >= self.options.batch_size
            if pending and (done or full or time.monotonic() >= deadline):
                self._flush(pending)
                pending = []
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.options.flush_seconds

    def _flush(self, results: list[_Result]) -> None:
        # After a failure the thread keeps draining the queue (so the loop never blocks on
        # a full queue) but writes nothing more; collect() raises the error at the end.
        if self.error is not None:
            return
        try:
            self.store.write(
                [r.observation for r in results],
                [row for r in results for row in r.certificates],
            )
            for result in results:
                self.statuses[result.observation.status] += 1
                if self.observer is not None:
                    self.observer(result.observation)
            if self.snapshot is not None:
                self.snapshot(self.store.connection)
        except BaseException as error:
            self.error = error


class _Engine:
    def __init__(
        self,
        scan: Scan,
        options: CollectOptions,
        trust_store: TrustStore,
        clock: Callable[[], datetime],
        writer: _Sink,
        validation_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.scan, self.options, self.trust_store, self.clock = scan, options, trust_store, clock
        self.validation_clock = validation_clock
        self.writer = writer
        self.context = client_context()
        self.per_ip = _PerIP(options.per_ip)
        self.rate = _RateLimiter(options.rate)
        self.parsed: OrderedDict[str, Certificate] = OrderedDict()
        self.validator = Validator(trust_store, cache_size=options.validation_cache)
        self.handshakes = 0
        self.results: list[_Result] = []
        self.resolver: Resolver | None = None
        self.slots = asyncio.Semaphore(options.concurrency)

    def _stopped(self) -> bool:
        return self.writer.error is not None or not self.writer.is_alive()

    async def run(self, targets: Iterable[Target], skip: set[tuple[object, ...]]) -> int:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(min(64, self.options.concurrency)))
        options = self.options
        self.resolver = Resolver(
            parse_resolver(options.resolver),
            concurrency=options.dns_concurrency,
            timeout=options.dns_timeout,
        )
        # Resolved targets wait here for a handshake slot: the resolver runs ahead of the
        # handshakes by at most this many names (memory stays bounded).
        ready: asyncio.Queue[_Ready | None] = asyncio.Queue(maxsize=options.concurrency)
        feeder = asyncio.create_task(self._feed(targets, skip, ready))
        # Targets admitted at once: more than the handshake slots, so that targets waiting
        # for a busy address (per_ip) or for a retry hold no slot while others could use it.
        admitted = asyncio.Semaphore(options.concurrency * _ADMITTED)
        ticker = asyncio.create_task(self._ticker())
        tasks: set[asyncio.Task[None]] = set()
        try:
            while (item := await ready.get()) is not None and not self._stopped():
                target, observed_at, resolution = item
                if resolution.status is not None:  # no address: a row, and no slot taken
                    row = self._row(target, observed_at, 1, None, resolution.status,
                                    resolution.error)  # fmt: skip
                    await self._finish(_Result(row, ()))
                    continue
                await admitted.acquire()
                task = asyncio.create_task(self._target(target, resolution.addresses))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: admitted.release())
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            feeder.cancel()
            self.resolver.close()
        # The target list's own error (a TargetError of a strict parse), raised as before.
        skipped = 0 if feeder.cancelled() or not feeder.done() else feeder.result()
        ticker.cancel()
        await self._hand_over()
        return skipped

    async def _feed(
        self,
        targets: Iterable[Target],
        skip: set[tuple[object, ...]],
        ready: asyncio.Queue[_Ready | None],
    ) -> int:
        """The resolver stage: every target not skipped goes to ``ready``, with its addresses."""
        try:
            return await self._feed_all(targets, skip, ready)
        finally:
            # The handshake stage stops at this, whatever happened here. When this task is
            # cancelled (Ctrl-C, or the handshake stage ended), no one reads ``ready`` any
            # more: a put into a full queue would never return and stall the shutdown.
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                await ready.put(None)

    async def _feed_all(
        self,
        targets: Iterable[Target],
        skip: set[tuple[object, ...]],
        ready: asyncio.Queue[_Ready | None],
    ) -> int:
        assert self.resolver is not None
        lookups: set[asyncio.Task[None]] = set()
        budget = asyncio.Semaphore(self.options.dns_concurrency)
        skipped = 0
        for target in targets:
            if target.key in skip:
                skipped += 1
                continue
            if self._stopped():
                break
            fixed = target.ip if target.ip is not None else _address(target.host)
            if fixed is not None:
                await ready.put((target, self.clock(), Resolution((fixed,))))
                continue
            await budget.acquire()
            task = asyncio.create_task(self._lookup(target, ready))
            lookups.add(task)
            task.add_done_callback(lookups.discard)
            task.add_done_callback(lambda _: budget.release())
        if lookups:
            await asyncio.gather(*lookups)
        return skipped

    async def _lookup(self, target: Target, ready: asyncio.Queue[_Ready | None]) -> None:
        assert self.resolver is not None
        observed_at = self.clock()
        resolution = await self.resolver.resolve(target.host)
        await ready.put((target, observed_at, resolution))

    async def _target(self, target: Target, addresses: tuple[str, ...]) -> None:
        # Several addresses are recorded with every try (source_extra); one alone is the
        # ip column's.
        extra = json.dumps({"addresses": list(addresses)}) if len(addresses) > 1 else None
        attempt = 0
        while True:
            attempt += 1
            ip = addresses[(attempt - 1) % len(addresses)]
            result = await self._attempt(target, attempt, ip, extra)
            status = result.observation.status
            if status not in TRANSIENT_STATUSES or attempt > self.options.retries:
                break
            delay = self.options.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            await asyncio.sleep(delay)
        await self._finish(result)

    async def _finish(self, result: _Result) -> None:
        self.results.append(result)
        if len(self.results) >= _HANDOVER:
            await self._hand_over()

    async def _hand_over(self) -> None:
        results, self.results = self.results, []
        if not results:
            return
        try:
            self.writer.queue.put_nowait(results)
        except queue.Full:  # the store is the bottleneck: wait without blocking the loop
            await asyncio.get_running_loop().run_in_executor(None, self.writer.queue.put, results)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_seconds / 2)
            await self._hand_over()

    async def _attempt(self, target: Target, attempt: int, ip: str, extra: str | None) -> _Result:
        observed_at = self.clock()
        options = self.options
        try:
            async with self.per_ip.hold(ip), self.slots:  # the address first, then a slot
                await self.rate.wait()
                observed_at = self.clock()  # the handshake starts now, after any wait
                self.handshakes += 1
                shake = await handshake_async(
                    ip, target.port, sni=target.sni, timeout=options.timeout,
                    context=self.context, connect_timeout=options.connect_timeout,
                    handshake_timeout=options.handshake_timeout,
                )  # fmt: skip
        except HandshakeError as failure:
            row = self._row(target, observed_at, attempt, failure.peer_ip or ip,
                            failure.status, failure.message, extra=extra)  # fmt: skip
            return _Result(row, ())
        timings = (shake.connect_seconds, shake.handshake_seconds)
        return self._success(
            target, observed_at, attempt, ip, shake.chain, shake.tls_version, shake.cipher,
            timings, extra,
        )  # fmt: skip

    def _success(
        self,
        target: Target,
        observed_at: datetime,
        attempt: int,
        ip: str | None,
        chain: tuple[bytes, ...],
        version: str,
        cipher: str,
        timings: tuple[float, float] | None,
        extra: str | None = None,
    ) -> _Result:
        digests, rows, parsed = [], [], []
        error: str | None = None
        for position, der in enumerate(chain):
            digest = hashlib.sha256(der).hexdigest()
            digests.append(digest)
            certificate = self.parsed.get(digest)
            if certificate is not None:
                self.parsed.move_to_end(digest)
                parsed.append(certificate)
                continue  # seen recently, so already queued for the store
            try:
                certificate = Certificate.from_der(der)
            except MalformedCertificateError as problem:
                text = f"certificate {position} of {len(chain)}: {problem}"
                error = error or text
                rows.append(CertificateRow.unparsable(digest, der, str(problem)))
                continue
            parsed.append(certificate)
            rows.append(CertificateRow.from_certificate(certificate))
            self.parsed[digest] = certificate
            if len(self.parsed) > 20_000:
                self.parsed.popitem(last=False)
        status, validation, validation_error = Status.OK, None, None
        if error is not None:
            status = Status.MALFORMED_CERTIFICATE
        else:
            at = observed_at if self.validation_clock is None else self.validation_clock()
            validation, validation_error = self.validator.validate(
                parsed, target.validation_name, at
            )
        return _Result(
            self._row(
                target, observed_at, attempt, ip, status, error, chain=tuple(digests),
                version=version, cipher=cipher, timings=timings,
                validation=validation, validation_error=validation_error, extra=extra,
            ),
            tuple(rows),
        )  # fmt: skip

    def _row(
        self,
        target: Target,
        observed_at: datetime,
        attempt: int,
        ip: str | None,
        status: str,
        error: str | None,
        *,
        chain: tuple[str, ...] = (),
        version: str | None = None,
        cipher: str | None = None,
        timings: tuple[float, float] | None = None,
        validation: str | None = None,
        validation_error: str | None = None,
        extra: str | None = None,
    ) -> Observation:
        return Observation(
            scan_id=self.scan.scan_id,
            host=target.host,
            port=target.port,
            sni=target.sni,
            ip=ip,
            target_ip=target.ip,
            observed_at=observed_at,
            status=status,
            error=error,
            tls_version=version,
            cipher=cipher,
            chain=chain,
            validation=validation,
            validation_error=validation_error,
            connect_ms=round(timings[0] * 1000, 3) if timings else None,
            handshake_ms=round(timings[1] * 1000, 3) if timings else None,
            attempts=attempt,
            source_extra=extra,
        )


def collect(
    targets: Iterable[Target],
    store: Store,
    scan: Scan,
    *,
    clock: Callable[[], datetime],
    options: CollectOptions | None = None,
    trust_store: TrustStore | None = None,
    skip: set[tuple[object, ...]] | None = None,
    observer: Callable[[Observation], None] | None = None,
    validation_clock: Callable[[], datetime] | None = None,
) -> CollectSummary:
    """Collect ``targets`` into ``store`` as observations of ``scan`` (already added).

    ``skip`` holds ``Target.key`` values already done (``store.done_keys`` when resuming).
    ``clock`` gives the UTC time of each observation; the validation column is computed at
    that time too, unless ``validation_clock`` gives another (the rotation lab records a
    virtual ``clock`` but validates Pebble's real-time-dated chains at real time).
    ``observer`` is called from the writer thread once per committed observation. The scan
    is marked finished at the end; if the run is interrupted it stays unfinished, ready for
    a resume. This is one process; :func:`pinlab.collect.collect` (``processes=N``) runs
    N of them (:mod:`pinlab.collect.processes`).
    """
    options = options or CollectOptions()
    trust_store = trust_store or TrustStore.certifi()
    writer = _Writer(store, options, observer)
    engine = _Engine(scan, options, trust_store, clock, writer, validation_clock)
    summary = CollectSummary(scan)
    started = time.perf_counter()
    writer.start()
    try:
        summary.skipped = event_loop.run(engine.run(targets, skip or set()))
    finally:
        writer.queue.put(None)
        writer.join()
    summary.handshakes = engine.handshakes
    summary.dns_lookups = engine.resolver.lookups if engine.resolver is not None else 0
    return _conclude(summary, store, writer, clock, started)


def _conclude(
    summary: CollectSummary,
    store: Store,
    writer: _Writer,
    clock: Callable[[], datetime],
    started: float,
) -> CollectSummary:
    """After the writer stopped: raise its error, or finish the scan and fill ``summary``."""
    import duckdb

    from pinlab.store import StoreError

    if isinstance(writer.error, duckdb.Error | OSError):
        raise StoreError(f"{store.path}: writing observations failed: {writer.error}")
    if writer.error is not None:
        raise writer.error  # a bug (in the observer, say): let it show
    scan = summary.scan
    summary.elapsed = time.perf_counter() - started
    summary.statuses = writer.statuses
    store.finish_scan(scan.scan_id, at=clock())
    if writer.snapshot is not None:  # the last one holds the whole campaign
        writer.snapshot(store.connection, force=True)
    row = store.connection.execute(
        "SELECT count(DISTINCT c) FROM (SELECT unnest(chain) AS c FROM observations "
        "WHERE scan_id = ?)",
        [scan.scan_id],
    ).fetchone()
    summary.distinct_certificates = int(row[0]) if row else 0
    return summary
