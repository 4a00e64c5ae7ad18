"""``pinlab bench internet``: a campaign against the simulated internet, beside its bound.

The simulated internet (:mod:`pinlab.testbed.internet`) plants a known mix of outcomes,
latencies and timeouts, so the time a campaign *must* take is known before it starts:
:func:`wait_bound` plays out the ideal schedule of every target (a DNS slot, then a
handshake slot and a slot of its address per try) with no CPU cost. pinlab's campaign runs through
``pinlab collect --processes 1`` (a child process: its peak memory is its own; one
collector process, as the bare loop is one process) and the same campaign
through a bare asyncio loop (:mod:`pinlab.bench.bareloop`: the same resolver, timeouts,
retries and per-IP limit; no store, no parsing, DNS inside the handshake slot as a naive
loop does it).
The 1M projection scales the measured time per target to a million names: a campaign's
time grows linearly once its slots are full.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pinlab.bench.farm import farm_hosts
from pinlab.bench.schedule import Job, makespan
from pinlab.collect import CollectOptions
from pinlab.testbed.internet import (
    EXPECTED_STATUS,
    Plan,
    Scenario,
    SimulatedInternet,
    plan_internet,
)
from pinlab.testbed.nginx import NginxFarm
from pinlab.testbed.pki import CA

__all__ = [
    "DEFAULT_SCENARIO",
    "Simulation",
    "campaign_options",
    "run_internet_benchmark",
    "sim_name",
    "simulated_internet",
    "wait_bound",
]

DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "data" / "internet" / "default.toml"
DOMAIN = "sim.test"
FARM_HOSTS = 8
FLIGHT_BYTES = 3_000
"""What a dripping server sends before the client can finish (a 2-certificate chain and
the TLS 1.3 server flight around it), for the bound."""


def sim_name(index: int) -> str:
    """The ``index``-th simulated name, served by a wildcard host of the nginx farm."""
    return f"n{index}.h{index % FARM_HOSTS}.{DOMAIN}"


@dataclass(frozen=True, slots=True)
class Simulation:
    """A running simulated internet: its plan, its servers, the root its chains chain to."""

    plan: Plan
    internet: SimulatedInternet
    root: CA

    def targets(self) -> list[str]:
        """Target-file lines, ``name:port``, in plan order."""
        return [f"{n.name}:{self.internet.port}" for n in self.plan.names]


@contextlib.contextmanager
def simulated_internet(scenario: Scenario, count: int, *, seed: int = 22) -> Iterator[Simulation]:
    """nginx (one worker) behind ``count`` names shaped by ``scenario``, on loopback."""
    root, hosts = farm_hosts(FARM_HOSTS, domain=DOMAIN, name="Internet")
    plan = plan_internet(scenario, count, name=sim_name, seed=seed)
    with (
        NginxFarm(hosts, workers=1) as nginx,
        SimulatedInternet(plan, (nginx.address, nginx.port)) as internet,
    ):
        yield Simulation(plan, internet, root)


def campaign_options(resolver: str, *, quick: bool = False) -> CollectOptions:
    """The settings the benchmark campaigns use (the README's campaign advice, scaled down)."""
    return CollectOptions(
        concurrency=100 if quick else 300,
        per_ip=2,
        timeout=10.0,
        connect_timeout=1.0 if quick else 3.0,
        handshake_timeout=1.5 if quick else 5.0,
        retries=1,
        backoff=0.5,
        dns_concurrency=500,
        dns_timeout=1.0 if quick else 2.0,
        resolver=resolver,
    )


def _tries(
    outcome: str, rtt: float, options: CollectOptions, scenario: Scenario
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Seconds each try of a target of ``outcome`` holds its slots, and the backoffs
    between tries (no tries: it never takes a handshake slot)."""
    retried = tuple(options.backoff * 2.0**k for k in range(options.retries))  # mean jitter 1
    tries = options.retries + 1
    connect = float(options.connect_timeout or options.timeout)
    handshake = float(options.handshake_timeout or options.timeout)
    if outcome == "ok":
        return (2 * rtt,), ()
    if outcome == "drip":
        chunks = -(-FLIGHT_BYTES // scenario.drip_bytes)
        return (2 * rtt + (chunks - 1) * scenario.drip_interval_ms / 1000,), ()
    if outcome == "blackhole":
        return (connect,) * tries, retried
    if outcome == "stall":
        return (handshake,) * tries, retried
    if outcome == "reset":
        return (1.5 * rtt,) * tries, retried
    if outcome == "refused":
        return (0.0,), ()  # loopback speed
    return (), ()  # DNS failures take no handshake slot


def wait_bound(plan: Plan, options: CollectOptions, scenario: Scenario) -> dict[str, float]:
    """The time waiting alone forces on a campaign over ``plan`` with ``options``.

    ``bound`` is the ideal schedule's makespan (:func:`pinlab.bench.schedule.makespan`):
    lookups in file order on ``dns_concurrency`` slots, then every try on a handshake slot
    and a slot of its address, retries after their backoff. The simpler terms it can never
    beat are reported beside it: handshake-slot seconds over ``concurrency``, DNS seconds
    over ``dns_concurrency``, the busiest address's seconds over ``per_ip``, the longest
    single target. CPU is free in this bound.
    """
    slots, dns, longest = 0.0, 0.0, 0.0
    per_ip: defaultdict[str, float] = defaultdict(float)
    lookups = [0.0] * min(options.dns_concurrency, len(plan.names))  # when each DNS slot frees
    jobs = []
    for planned in plan.names:
        lookup = options.dns_timeout if planned.outcome == "dns_timeout" else planned.dns_delay
        done = heapq.heappop(lookups) + lookup
        heapq.heappush(lookups, done)
        rtt = plan.by_ip[planned.ip].rtt if planned.ip else 0.0
        tries, backoffs = _tries(planned.outcome, rtt, options, scenario)
        slots += sum(tries)
        dns += lookup
        if planned.ip and tries:
            per_ip[planned.ip] += sum(tries)
            jobs.append(Job(done, planned.ip, tries, backoffs))
        longest = max(longest, lookup + sum(tries) + sum(backoffs))
    parts = {
        "slots": slots / options.concurrency,
        "dns": dns / options.dns_concurrency,
        "per_ip": max(per_ip.values(), default=0.0) / options.per_ip,
        "longest": longest,
    }
    schedule = makespan(jobs, concurrency=options.concurrency, per_ip=options.per_ip)
    return {**parts, "bound": max(schedule, *parts.values())}


def _run_child(command: list[str], *, timeout: float) -> tuple[float, int, float, str]:
    """Run ``command``; its wall seconds, peak RSS (kB), CPU seconds and stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"{command[:3]} ran over {timeout:.0f} s")
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {process.returncode}: {text[-2000:]}")
    return elapsed, int(usage.ru_maxrss), usage.ru_utime + usage.ru_stime, text


def _option_args(options: CollectOptions) -> list[str]:
    return [
        "--concurrency", str(options.concurrency), "--per-ip", str(options.per_ip),
        "--timeout", str(options.timeout), "--connect-timeout", str(options.connect_timeout),
        "--handshake-timeout", str(options.handshake_timeout), "--retries", str(options.retries),
        "--dns-concurrency", str(options.dns_concurrency),
        "--dns-timeout", str(options.dns_timeout), "--resolver", options.resolver,
        # one collector process, as the bare loop is one: the bench compares schedules
        "--processes", "1",
    ]  # fmt: skip


def run_internet_benchmark(
    *,
    targets: int,
    quick: bool = False,
    scenario_path: Path = DEFAULT_SCENARIO,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Both campaigns over ``targets`` names; one row each, beside the scenario's bound."""
    from pinlab.store import Store

    say = progress or (lambda _: None)
    scenario = Scenario.from_toml(scenario_path)
    pinlab = str(Path(sys.executable).with_name("pinlab"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="pinlab-bench-internet-") as scratch:
        directory = Path(scratch)
        with simulated_internet(scenario, targets) as sim:
            options = campaign_options(sim.internet.resolver, quick=quick)
            bound = wait_bound(sim.plan, options, scenario)
            target_file = directory / "targets.txt"
            target_file.write_text("\n".join(sim.targets()) + "\n")
            (directory / "root.pem").write_bytes(sim.root.cert_pem)
            expected = Counter(EXPECTED_STATUS[n.outcome] for n in sim.plan.names)
            say(f"{targets} names, wait bound {bound['bound']:.1f} s; pinlab collect")
            db = directory / "store.duckdb"
            anchors = str(directory / "root.pem")
            command = [pinlab, "collect", str(target_file), "--db", str(db),
                       "--ca-file", anchors, *_option_args(options)]  # fmt: skip
            wall, rss, cpu, _ = _run_child(command, timeout=bound["bound"] * 10 + 120)
            with Store.open(db, read_only=True) as store:
                scans = store.scans_df()
                got = Counter(
                    dict(
                        store.connection.execute(
                            "SELECT status, count(*) FROM observations GROUP BY 1"
                        ).fetchall()
                    )
                )
            scan = scans.iloc[0]
            elapsed = (scan["finished_at"] - scan["started_at"]).total_seconds()
            rows.append(
                _row("pinlab collect", targets, elapsed, (wall, cpu), rss, bound, got, expected)
            )
            say("bare asyncio loop")
            bare = [sys.executable, "-m", "pinlab.bench.bareloop", str(target_file),
                    json.dumps(_bare_options(options))]  # fmt: skip
            wall, rss, cpu, text = _run_child(bare, timeout=bound["bound"] * 10 + 120)
            result = json.loads(text)
            rows.append(
                _row("bare asyncio loop", targets, result["elapsed"], (wall, cpu), rss, bound,
                     Counter(result["statuses"]), expected)
            )  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["x_bare"] = frame["seconds"] / frame["seconds"].iloc[-1]
    frame["concurrency"] = options.concurrency
    frame["scenario"] = scenario.name
    return frame


def _bare_options(options: CollectOptions) -> dict[str, object]:
    return {
        "concurrency": options.concurrency, "per_ip": options.per_ip,
        "connect_timeout": options.connect_timeout,
        "handshake_timeout": options.handshake_timeout, "timeout": options.timeout,
        "retries": options.retries, "backoff": options.backoff,
        "dns_timeout": options.dns_timeout, "resolver": options.resolver,
    }  # fmt: skip


def _row(
    name: str,
    targets: int,
    elapsed: float,
    wall_cpu: tuple[float, float],
    rss_kb: int,
    bound: dict[str, float],
    got: Counter[str],
    expected: Counter[str],
) -> dict[str, object]:
    return {
        "campaign": name,
        "targets": targets,
        "seconds": round(elapsed, 2),
        "wall_seconds": round(wall_cpu[0], 2),
        "cpu_seconds": round(wall_cpu[1], 2),
        "bound_terms": json.dumps({k: round(v, 2) for k, v in bound.items()}),
        "bound_seconds": round(bound["bound"], 2),
        "x_bound": round(elapsed / bound["bound"], 3),
        "targets_per_s": round(targets / elapsed, 1),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "projected_1m_hours": round(elapsed / targets * 1_000_000 / 3600, 2),
        "statuses_as_planted": dict(got) == dict(expected),
        "statuses": json.dumps(dict(sorted(got.items()))),
    }
