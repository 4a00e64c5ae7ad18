"""How fast ``pinlab collect`` gathers chains, against the Python and C limits, in one run.

One nginx (2 workers) serves ``hosts`` SNI virtual hosts (P-256 and RSA-2048 leaves, each
with its intermediate) on loopback. Against it, in turn:

- ``pinlab collect``: :func:`pinlab.collect.collect` into a fresh store, everything
  included (parsing, path validation against the test root, batched DuckDB writes); once
  more without the validation cache, since 200 hosts make every chain repeat (a campaign
  of distinct chains gets the uncached figure);
- ``bare threads``: the Python limit the issue names, a pool of threads with blocking
  sockets (:func:`pinlab.collect.tls.handshake`) that only captures the chain;
- ``bare asyncio``: the same loop on asyncio and memory BIOs (the collector's model);
- ``pinlab collect --processes N`` (N: the usable cores) and both bare loops run in N
  processes (:mod:`pinlab.bench.bare`), the in-flight handshakes divided among them as the
  collector divides them; process start-up is part of every figure;
- ``openssl s_time``: the C reference, one process per core, each one handshake at a time
  (``-new``; OpenSSL 3.0's s_time sends no SNI, so it gets the default host).

Targets are distinct ``ip,sni`` lines (``t17.h3.bench.test`` matches host 3's wildcard),
so every handshake is a real SNI lookup and a full handshake (no session resumption).
Client CPU is this process's user+system time plus its children's (the collector's and
the bare loops' processes; ``s_time``), per handshake. ``vs_bare_threads`` compares with the
one-process thread loop (the issue's reference); ``vs_threads_same_n``, ``vs_asyncio_same_n``
and ``cpu_vs_asyncio_same_n`` with the bare loops run in as many processes as the row.
Every client runs twice, interleaved, and its faster run is kept (the machine is shared).
Finally a 1,000,000-line target file (100,000 in quick mode) is streamed through the
target parser in a child process, whose peak RSS is reported.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pandas as pd

from pinlab.bench.bare import bare_asyncio, bare_threads, in_processes
from pinlab.bench.farm import farm_hosts, farm_targets
from pinlab.collect import CollectOptions, Target, collect
from pinlab.collect.processes import usable_cores
from pinlab.commands._campaign import now as wall_clock
from pinlab.store import Scan, Store
from pinlab.testbed.nginx import NginxFarm
from pinlab.testbed.pki import CA
from pinlab.verify import TrustStore

__all__ = ["run_collect_benchmark", "streaming_peak_rss_mb"]

DOMAIN = "bench.test"
CONCURRENCY = 50


def _cpu() -> float:
    # Children too: the collector's processes and the bare loops' (joined before we read).
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pinlab(
    targets: list[Target], root: CA, directory: Path, *, cache: bool = True, processes: int = 1
) -> int:
    store = Store.open(directory / f"{uuid.uuid4().hex}.duckdb")
    now = datetime.now(UTC)
    scan = Scan(uuid.uuid4().hex, "scan", "bench", None, "{}", now, None, "bench")
    store.add_scan(scan)
    options = CollectOptions(
        concurrency=CONCURRENCY,
        per_ip=CONCURRENCY,
        timeout=10,
        retries=0,
        validation_cache=4096 if cache else 0,
    )
    trust = TrustStore.from_certificates([root.record], name="bench root")
    # The CLI's clock: a collector process imports it by name (a lambda does not pickle).
    summary = collect(
        targets, store, scan, clock=wall_clock, options=options, trust_store=trust,
        processes=processes,
    )  # fmt: skip
    store.close()
    if summary.statuses.get("ok", 0) != len(targets):
        raise RuntimeError(f"pinlab collect failed some handshakes: {dict(summary.statuses)}")
    return summary.observations


def _s_time(port: int, seconds: int, processes: int) -> tuple[int, float, float]:
    """(handshakes, wall seconds, children CPU seconds) of parallel ``openssl s_time``."""
    command = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new"]
    command += ["-time", str(seconds)]
    cpu, started = _children_cpu(), time.perf_counter()
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(processes)
    ]
    outputs = [run.communicate()[0] for run in runs]
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    total = 0
    for output in outputs:
        match = re.search(r"(\d+) connections in [\d.]+s", output)
        if match is None:
            raise RuntimeError(f"openssl s_time printed no result: {output[-300:]}")
        total += int(match.group(1))
    return total, wall, cpu


def streaming_peak_rss_mb(lines: int) -> float:
    """Peak RSS (MB) of a child process streaming a ``lines``-line target file."""
    with tempfile.TemporaryDirectory(prefix="pinlab-bench-") as directory:
        path = Path(directory) / "targets.txt"
        with path.open("w") as handle:
            for index in range(lines):
                handle.write(f"host{index}.example{index % 97}.com:{443 + index % 3}\n")
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
        script = (
            "import re, sys\n"
            "from pinlab.collect import iter_targets\n"
            "n = sum(1 for _ in iter_targets(sys.argv[1]))\n"
            "assert n == int(sys.argv[2]), n\n"
            "status = open('/proc/self/status').read()\n"
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(path), str(lines)],
            capture_output=True,
            text=True,
            check=True,
        )
    return int(result.stdout.strip()) / 1024


def run_collect_benchmark(
    *,
    hosts: int = 200,
    quick: bool = False,
    targets: int | None = None,
    processes: int | None = None,
) -> pd.DataFrame:
    """Measure pinlab collect, the bare loops and ``openssl s_time``; one row per client.

    ``targets`` handshakes per client (default 12,000; 400 in quick mode), ``processes`` for
    the multi-process rows (default: the usable cores). Columns: ``client``, ``processes``,
    ``handshakes``, ``seconds``, ``handshakes_per_s``, ``cpu_ms_per_handshake``,
    ``vs_bare_threads`` (throughput against the one-process thread loop),
    ``vs_threads_same_n``, ``vs_asyncio_same_n`` (against the bare loops in as many
    processes), ``cpu_vs_asyncio_same_n`` and, on the streaming row, ``peak_rss_mb``.
    """
    count = targets or (400 if quick else 12_000)
    processes = processes or usable_cores()
    if quick:
        hosts = min(hosts, 20)
    root, virtual_hosts = farm_hosts(hosts, domain=DOMAIN)
    rows: dict[str, dict[str, float | str]] = {}

    def keep(row: dict[str, float | str]) -> None:
        name = str(row["client"])
        if name not in rows or float(row["handshakes_per_s"]) > float(
            rows[name]["handshakes_per_s"]
        ):
            rows[name] = row

    with NginxFarm(virtual_hosts, workers=2) as farm, tempfile.TemporaryDirectory() as scratch:
        chosen = farm_targets(count, hosts, farm.port, domain=DOMAIN)
        bare_threads(chosen[: min(200, count)], CONCURRENCY)  # warm up nginx and the client
        threads, loop = (
            partial(bare_threads, concurrency=CONCURRENCY),
            partial(bare_asyncio, concurrency=CONCURRENCY),
        )
        n = processes
        clients: dict[str, tuple[int, Callable[[], int]]] = {
            "pinlab collect": (1, lambda: _pinlab(chosen, root, Path(scratch))),
            "pinlab collect, no validation cache": (
                1,
                lambda: _pinlab(chosen, root, Path(scratch), cache=False),
            ),
            f"pinlab collect --processes {n}": (
                n,
                lambda: _pinlab(chosen, root, Path(scratch), processes=n),
            ),
            "bare threads (tls.handshake)": (1, lambda: threads(chosen)),
            "bare asyncio (memory BIOs)": (1, lambda: loop(chosen)),
            f"bare threads, {n} processes": (
                n,
                lambda: in_processes(bare_threads, chosen, n, CONCURRENCY),
            ),
            f"bare asyncio, {n} processes": (
                n,
                lambda: in_processes(bare_asyncio, chosen, n, CONCURRENCY),
            ),
        }
        for _ in range(1 if quick else 2):
            for name, (used_processes, client) in clients.items():
                cpu, started = _cpu(), time.perf_counter()
                done = client()
                wall, used = time.perf_counter() - started, _cpu() - cpu
                keep(_row(name, used_processes, done, wall, used))
            done, wall, used = _s_time(farm.port, 2 if quick else 10, 2)
            keep(_row("openssl s_time (C, 2 processes)", 2, done, wall, used))
    frame = pd.DataFrame(list(rows.values()))
    _ratios(frame)
    lines = 100_000 if quick else 1_000_000
    memory = pd.DataFrame(
        [
            {
                "client": f"stream {lines:,} target lines (parse + dedupe)",
                "handshakes": lines,
                "peak_rss_mb": streaming_peak_rss_mb(lines),
            }
        ]
    )
    return pd.concat([frame, memory], ignore_index=True)


def _ratios(frame: pd.DataFrame) -> None:
    """Add the ratio columns: against one-process bare threads, then per process count."""
    one = frame.loc[frame["client"].str.startswith("bare threads (")].iloc[0]
    frame["vs_bare_threads"] = frame["handshakes_per_s"] / one["handshakes_per_s"]
    for column in ("vs_threads_same_n", "vs_asyncio_same_n", "cpu_vs_asyncio_same_n"):
        frame[column] = float("nan")
    for _, group in frame.groupby("processes"):
        # s_time's 2 processes have no bare loop of their size when the others use more
        threads = group.loc[group["client"].str.startswith("bare threads")]
        loop = group.loc[group["client"].str.startswith("bare asyncio")]
        if not threads.empty:
            speed = threads["handshakes_per_s"].iloc[0]
            frame.loc[group.index, "vs_threads_same_n"] = group["handshakes_per_s"] / speed
        if not loop.empty:
            speed, cpu = loop[["handshakes_per_s", "cpu_ms_per_handshake"]].iloc[0]
            frame.loc[group.index, "vs_asyncio_same_n"] = group["handshakes_per_s"] / speed
            cpu_ratio = group["cpu_ms_per_handshake"] / cpu
            frame.loc[group.index, "cpu_vs_asyncio_same_n"] = cpu_ratio


def _row(name: str, processes: int, done: int, wall: float, cpu: float) -> dict[str, float | str]:
    return {
        "client": name,
        "processes": processes,
        "handshakes": done,
        "seconds": round(wall, 3),
        "handshakes_per_s": done / wall,
        "cpu_ms_per_handshake": cpu / done * 1000,
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    pd.set_option("display.width", 200)
    print(run_collect_benchmark(quick="--quick" in sys.argv))
