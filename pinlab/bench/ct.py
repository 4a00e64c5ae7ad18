"""How fast a CT backfill parses and stores entries, and whether its memory stays flat.

A synthetic RFC 6962 log runs in a child process on loopback: entry ``i`` is made on the
fly from two templates (a precertificate entry and an ``x509_entry``, 70/30 as in today's
logs) with a unique name ``h<i>.bench.test`` and serial patched in and the issuer's
signature made again, so no certificate repeats, every chain verifies as in a real log,
and the server holds only a signature per entry. Against it, :func:`pinlab.ct.backfill_log`
runs exactly as ``pinlab ct log`` does (four fetches in flight, batches of 1,000, DuckDB
store in a temporary directory), in three modes:

- ``filtered``: a watch list of 1 % of the names (the usual backfill of some domains);
- ``all``: no filter, every entry parsed into certificate rows and stored, parsed in a
  pool of worker processes (:mod:`pinlab.ct.prepare`, as many as ``pinlab ct log`` starts);
- ``all, in process``: the same with parsing in the backfill's own process (the path
  before the pool), over the first ``BASELINE_ENTRIES`` entries: the baseline of the run;
- ``parse only``: the same entries parsed from memory (no HTTP, no store) on one core:
  the limit of one core;
- ``signature checks only``: each entry's one new signature checked, nothing else, on one
  core: the floor. Every logged certificate is new, so no backfill that checks chains
  spends less CPU on an entry.

Rows report entries/s, CPU per entry, and the process's RSS at 10 %, 50 % and 100 % of
the run: flat memory means the last two differ by little whatever the length of the log.
The backfills also split their CPU by where it is spent: the backfill's own process (fetch
threads, merging, the store), the parse workers, and the synthetic log's server, which
shares the machine. The backfill's process is one whatever the cores (it alone writes the
store), so ``writer_ceiling_per_s``, a million over its CPU per entry, is the most entries
a second this design stores with every other stage on cores of its own. Every row also
gives ``cores_ceiling_per_s``: the machine's usable cores over the row's CPU per entry (the
log server's left out), the most entries a second this machine could do at that cost; on
the floor row, the most any backfill checking every chain could store here.
The store's DuckDB connection gets ``memory_limit = 512MB``: by default DuckDB caches
table blocks up to 80 % of RAM, which grows with the store whatever the backfill does.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from pinlab.children import usable_cores
from pinlab.ct import BackfillOptions, DomainFilter, backfill_log
from pinlab.ct.entries import encode_extra_data, encode_leaf, parse_entry
from pinlab.ct.ingest import IssuanceWriter
from pinlab.ct.merkle import CompactRange, leaf_hash
from pinlab.ct.prepare import default_parse_workers
from pinlab.ct.rows import POISON_OID, strip_extension, tbs_of, tlv
from pinlab.ct.sth import LogKey, SignedTreeHead
from pinlab.der import read_element
from pinlab.store import Scan, Store
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.pki import CA

__all__ = ["MODES", "SyntheticLog", "run_ct_benchmark", "shown_columns"]

_NAME = b"h0000000"
DUCKDB_MEMORY_LIMIT = "512MB"
_T0 = 1_600_000_000_000
BASELINE_ENTRIES = 100_000


def _spans(data: bytes, needle: bytes) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(needle), data)]


class SyntheticLog:
    """``size`` distinct entries generated from templates; only the tree root and each
    entry's signature are kept."""

    def __init__(self, size: int) -> None:
        root = CA.root("Bench CT Root")
        issuer = root.child_ca("Bench CT CA")
        log = LocalLog()
        issued = log.issue(issuer, "h0000000.bench.test", timestamp=_T0, serial=1 << 120 | 7)
        plain = issuer.issue_leaf("h0000000.bench.test")
        self.chain = (issuer.der, root.der)
        if not isinstance(issuer.private_key, ec.EllipticCurvePrivateKey):
            raise TypeError("the bench's issuing CA signs with ECDSA")
        self.issuer_key: ec.EllipticCurvePrivateKey = issuer.private_key
        self.private_key = log.private_key
        self.key = log.key
        self.precert = issued.precert
        self.precert_tbs = strip_extension(tbs_of(issued.precert), POISON_OID)
        self.issuer_key_hash = log.stored[0].entry.issuer_key_hash
        self.plain = plain.der
        self.serial_precert = (1 << 120 | 7).to_bytes(16, "big")
        self.serial_plain = plain.certificate.serial_number.to_bytes(20, "big").lstrip(b"\0")
        self.extra_plain = encode_extra_data(self.chain)
        self.size = size
        # Each entry's certificate is patched from a template, so its signature is made
        # again: every chain verifies, as in a real log, and the chain check costs what it
        # costs there (a failing check would also store an error text with every entry).
        # Signed once here, not while serving: signing is the log's work, not the
        # backfill's, and the server shares the machine with the backfill it measures.
        self.signatures = [self._sign(self._tbs_of_entry(index)) for index in range(size)]
        compact = CompactRange()
        for index in range(size):
            compact.append(leaf_hash(self.entry(index)[0]))
        self.root = compact.root()

    @staticmethod
    def _patch(template: bytes, serial: bytes, index: int) -> bytes:
        data = bytearray(template)
        name = b"h%07d" % index
        for at in _spans(template, _NAME):
            data[at : at + len(_NAME)] = name
        for at in _spans(template, serial):
            end = at + len(serial)
            data[end - 4 : end] = index.to_bytes(4, "big")
        return bytes(data)

    @staticmethod
    def _is_precert(index: int) -> bool:
        return index % 10 < 7  # 70 % precertificates

    def _template(self, index: int) -> tuple[bytes, bytes]:
        """(certificate template, its serial) of entry ``index``."""
        if self._is_precert(index):
            return self.precert, self.serial_precert
        return self.plain, self.serial_plain

    def _tbs_of_entry(self, index: int) -> bytes:
        return tbs_of(self._patch(*self._template(index), index))

    def _sign(self, tbs: bytes) -> bytes:
        signature = self.issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        return tlv(0x03, b"\0" + signature)  # BIT STRING, no unused bits

    def certificate(self, index: int) -> bytes:
        """Entry ``index``'s certificate: its template patched, signed by the issuer."""
        patched = self._patch(*self._template(index), index)
        outer = read_element(patched, 0, len(patched))
        tbs = read_element(patched, outer.content, outer.end)
        algorithm = read_element(patched, tbs.end, outer.end)
        return tlv(0x30, patched[tbs.start : algorithm.end] + self.signatures[index])

    def entry(self, index: int) -> tuple[bytes, bytes]:
        """(leaf_input, extra_data) of entry ``index``."""
        timestamp = _T0 + index
        certificate = self.certificate(index)
        if self._is_precert(index):
            tbs = self._patch(self.precert_tbs, self.serial_precert, index)
            leaf = encode_leaf(
                timestamp, certificate, tbs=tbs, issuer_key_hash=self.issuer_key_hash
            )
            return leaf, encode_extra_data(self.chain, precertificate=certificate)
        return encode_leaf(timestamp, certificate), self.extra_plain

    def sth(self) -> SignedTreeHead:
        """The signed tree head of the whole log."""
        return SignedTreeHead.sign(
            self.private_key, tree_size=self.size, timestamp=_T0 + self.size, root_hash=self.root
        )


def _serve(size: int, pipe: multiprocessing.connection.Connection) -> None:
    """Child process: build the log, serve get-sth and get-entries until terminated."""
    log = SyntheticLog(size)
    sth = json.dumps(log.sth().to_json()).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            if parsed.path == "/ct/v1/get-sth":
                body = sth
            else:
                start = int(query["start"])
                end = min(int(query["end"]), size - 1, start + 999)
                items = []
                for index in range(start, end + 1):
                    leaf, extra = log.entry(index)
                    items.append(
                        f'{{"leaf_input":"{base64.b64encode(leaf).decode()}",'
                        f'"extra_data":"{base64.b64encode(extra).decode()}"}}'
                    )
                body = ('{"entries":[' + ",".join(items) + "]}").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    pipe.send((server.server_address[1], log.key.spki))
    server.serve_forever()


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    """CPU of the child processes waited for (the parse pool's workers, once shut down;
    the log server is never waited for, so it is not counted)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    """CPU seconds of a process that is still running (``/proc/PID/stat``), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime and stime: fields 14 and 15 of proc(5), 12 and 13 after the name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _row(
    mode: str, entries: int, stored: int, wall: float, cpu: float, rss: dict[int, float]
) -> dict[str, Any]:
    return {
        "mode": mode,
        "entries": entries,
        "observations": stored,
        "seconds": round(wall, 2),
        "entries_per_s": entries / wall,
        "cpu_us_per_entry": cpu / entries * 1e6,
        "rss_mb_10pct": rss.get(10),
        "rss_mb_50pct": rss.get(50),
        "rss_mb_end": rss.get(100),
    }


def _backfill(
    url: str,
    key: LogKey,
    size: int,
    domains: DomainFilter | None,
    directory: Path,
    *,
    parse_workers: int,
    mode: str,
    server_pid: int,
) -> dict[str, Any]:
    samples: dict[int, float] = {}
    cached: dict[int, float] = {}

    with Store.open(directory / f"{uuid.uuid4().hex}.duckdb") as store:

        def progress(done: int, total: int) -> None:
            for mark in (10, 50, 100):
                if mark not in samples and done * 100 >= total * mark:
                    samples[mark] = round(_rss_mb(), 1)
                    # what DuckDB itself holds (its block cache, bounded by memory_limit),
                    # so that the rest of the RSS is the backfill's own
                    (held,) = store.connection.execute(
                        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()"
                    ).fetchone() or (0,)
                    cached[mark] = round(int(held) / 2**20, 1)

        # DuckDB otherwise keeps table blocks cached up to 80 % of RAM: memory that grows
        # with the store, not with the backfill. A bound shows what the backfill holds.
        store.connection.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")

        def cpu_now() -> tuple[float, float, float]:
            return _cpu(), _children_cpu(), _process_cpu(server_pid)

        before, started = cpu_now(), time.perf_counter()
        result = backfill_log(
            store,
            url,
            key=key,
            domains=domains,
            options=BackfillOptions(workers=4, end=size, parse_workers=parse_workers),
            clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
            progress=progress,
        )
        wall = time.perf_counter() - started
        own, pool, server = (now - then for now, then in zip(cpu_now(), before, strict=True))
    entries = result.stats.entries
    row = _row(mode, entries, result.stats.observations, wall, own + pool, samples)
    return {
        **row,
        "duckdb_mb_50pct": cached.get(50),
        "duckdb_mb_end": cached.get(100),
        "backfill_process_cpu_us_per_entry": own / entries * 1e6,
        "parse_workers_cpu_us_per_entry": pool / entries * 1e6,
        "log_server_cpu_us_per_entry": server / entries * 1e6,
        "writer_ceiling_per_s": entries / own if own > 0 else float("nan"),
    }


def _parse_only(log: SyntheticLog, directory: Path) -> dict[str, Any]:
    """Parse the log's entries, held in memory, into rows (no HTTP, no commit): the limit
    of one core."""
    entries = [log.entry(i) for i in range(log.size)]
    with Store.open(directory / "parse.duckdb") as store:
        scan = Scan(
            uuid.uuid4().hex,
            "ct",
            None,
            None,
            "{}",
            datetime(2026, 1, 1, tzinfo=UTC),
            None,
            "bench",
        )
        writer = IssuanceWriter(store, scan=scan, log="bench", domains=None)
        cpu, started = _cpu(), time.perf_counter()
        for index, (leaf, extra) in enumerate(entries):
            writer.prepare(parse_entry(index, leaf, extra))
        wall, used = time.perf_counter() - started, _cpu() - cpu
    return _row("parse only (in memory, no store)", log.size, 0, wall, used, {})


def _signatures_only(log: SyntheticLog) -> dict[str, Any]:
    """Check each entry's one new signature (its certificate's, by the issuer, whose key
    is loaded once) and nothing else, on one core: the least CPU an entry costs a backfill
    that checks chains, since every logged certificate is new and its signature with it."""
    certificates = [x509.load_der_x509_certificate(log.certificate(i)) for i in range(log.size)]
    key, algorithm = log.issuer_key.public_key(), ec.ECDSA(hashes.SHA256())
    cpu, started = _cpu(), time.perf_counter()
    for certificate in certificates:
        key.verify(certificate.signature, certificate.tbs_certificate_bytes, algorithm)
    wall, used = time.perf_counter() - started, _cpu() - cpu
    return _row("signature checks only (the floor)", log.size, 0, wall, used, {})


MODES = ("filtered", "all", "all-1", "parse", "signatures")
IN_MEMORY_ENTRIES = 20_000
"""Entries of the in-memory rows (parse only, signatures only)."""


def run_ct_benchmark(*, entries: int, quick: bool, modes: Sequence[str] = MODES) -> pd.DataFrame:
    """Backfill ``entries`` entries (quick: at most 3,000) from a local synthetic log.

    One row per mode (see the module docstring): ``mode``, ``entries``, ``observations``,
    ``seconds``, ``entries_per_s``, ``cpu_us_per_entry`` (the parse workers' CPU
    included), ``rss_mb_10pct``, ``rss_mb_50pct``, ``rss_mb_end`` (of the backfill's
    process), ``duckdb_mb_50pct`` and ``duckdb_mb_end`` (what DuckDB accounts for itself,
    mostly its block cache, bounded by ``memory_limit``), ``vs_in_process`` (entries/s
    over the in-process row's) when both ran, and for the backfills the CPU per entry of
    the backfill's process, of the parse workers and of the log server, and
    ``writer_ceiling_per_s``; on every row ``cores`` and ``cores_ceiling_per_s`` (see the
    module's documentation).
    """
    size = min(entries, 3_000) if quick else entries
    if size < 100:
        raise ValueError("the CT benchmark needs at least 100 entries")
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve, args=(size, child), daemon=True)
    server.start()
    rows = []
    try:
        if not parent.poll(600):
            raise RuntimeError("the synthetic CT log did not start")
        port, spki = parent.recv()
        url, key = f"http://127.0.0.1:{port}/", LogKey.from_der(spki)
        pid = server.pid or 0
        watched = DomainFilter(f"h{i:07d}.bench.test" for i in range(0, size, 100))
        with tempfile.TemporaryDirectory(prefix="pinlab-bench-ct-") as scratch:
            directory = Path(scratch)
            cores = default_parse_workers()
            if "filtered" in modes:
                rows.append(
                    _backfill(
                        url,
                        key,
                        size,
                        watched,
                        directory,
                        parse_workers=cores,
                        mode="filtered (1% of names)",
                        server_pid=pid,
                    )
                )
            if "all" in modes:
                rows.append(
                    _backfill(
                        url,
                        key,
                        size,
                        None,
                        directory,
                        parse_workers=cores,
                        mode=f"all entries stored ({cores} parse process{'es' * (cores > 1)})",
                        server_pid=pid,
                    )
                )
            if "all-1" in modes:
                rows.append(
                    _backfill(
                        url,
                        key,
                        min(size, BASELINE_ENTRIES),
                        None,
                        directory,
                        parse_workers=0,  # 0, not 1: one is a pool of one worker
                        mode="all entries stored (in process)",
                        server_pid=pid,
                    )
                )
            if "parse" in modes or "signatures" in modes:
                in_memory = SyntheticLog(min(size, IN_MEMORY_ENTRIES))
                if "parse" in modes:
                    rows.append(_parse_only(in_memory, directory))
                if "signatures" in modes:
                    rows.append(_signatures_only(in_memory))
    finally:
        server.terminate()
        server.join(10)
    frame = pd.DataFrame(rows)
    # what this machine's cores could do at each row's CPU per entry with nothing else
    # running (the log server left out): for the floor row, the most entries a second any
    # backfill checking every chain can store here
    frame["cores"] = usable_cores()
    frame["cores_ceiling_per_s"] = frame["cores"] * 1e6 / frame["cpu_us_per_entry"]
    if "all-1" in modes and "all" in modes:
        # the pool against the in-process path, both measured in this run
        baseline = frame.loc[frame["mode"].str.endswith("(in process)"), "entries_per_s"]
        frame["vs_in_process"] = frame["entries_per_s"] / baseline.iloc[0]
    return frame


def _slashed(*values: float | None) -> str:
    """``285 / 297 / 297``, a dash for a figure the row has none of."""
    return " / ".join("-" if v is None or v != v else f"{v:,.0f}" for v in values)


_CPU_SPLIT = [
    "backfill_process_cpu_us_per_entry",
    "parse_workers_cpu_us_per_entry",
    "log_server_cpu_us_per_entry",
]
_RSS = ["rss_mb_10pct", "rss_mb_50pct", "rss_mb_end"]


def shown_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`run_ct_benchmark` narrowed for a terminal (the JSON keeps all)."""
    # the parse-only row has none of the backfills' columns: reindex gives it NaN, shown "-"
    columns = frame.reindex(
        columns=[*_CPU_SPLIT, *_RSS, "writer_ceiling_per_s", "cores_ceiling_per_s", "duckdb_mb_end"]
    )
    return pd.DataFrame(
        {
            "mode": frame["mode"],
            "entries": frame["entries"].map("{:,}".format),
            "entries/s": frame["entries_per_s"].map("{:,.0f}".format),
            "CPU µs/entry": frame["cpu_us_per_entry"].map("{:,.0f}".format),
            "backfill / workers / log server µs": [
                _slashed(*row) for row in columns[_CPU_SPLIT].itertuples(index=False)
            ],
            "writer ceiling/s": [_slashed(v) for v in columns["writer_ceiling_per_s"]],
            "cores ceiling/s": [_slashed(v) for v in columns["cores_ceiling_per_s"]],
            "RSS MB 10/50/100 %": [_slashed(*row) for row in columns[_RSS].itertuples(index=False)],
            "DuckDB MB": [_slashed(v) for v in columns["duckdb_mb_end"]],
        }
    )


if __name__ == "__main__":  # pragma: no cover - manual runs
    pd.set_option("display.width", 200)
    count = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 100_000
    print(run_ct_benchmark(entries=count, quick="--quick" in sys.argv))
