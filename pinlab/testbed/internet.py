"""A simulated internet on loopback: a scenario's mix of names, resolvers and servers.

A :class:`Scenario` (TOML, ``data/internet/default.toml``) gives the share of names per
outcome and the latencies. :func:`plan_internet` turns it into a deterministic plan: each
name's outcome and DNS delay, and the endpoints (:mod:`pinlab.testbed.latency`) the names
resolve to, ``names_per_ip`` names per address. :class:`SimulatedInternet` runs the plan
in a child process (its own core and GIL, as the internet has): the DNS server of
:mod:`pinlab.testbed.dns` on ``127.0.0.1`` and every endpoint on its ``127.1.x.y`` address,
proxying to an nginx farm the caller runs.

Every outcome has the status a collector must record for it (:data:`EXPECTED_STATUS`), so a
test can hold a campaign to the plan name by name.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

from pinlab.errors import PinlabError
from pinlab.testbed.dns import Answer, NameBehaviour
from pinlab.testbed.latency import Behaviour, Endpoint

__all__ = [
    "EXPECTED_STATUS",
    "Plan",
    "PlannedName",
    "Scenario",
    "ScenarioError",
    "SimulatedInternet",
    "plan_internet",
]

DNS_OUTCOMES = {
    "nxdomain": Answer.NXDOMAIN,
    "servfail": Answer.SERVFAIL,
    "dns_timeout": Answer.SILENT,
}
EXPECTED_STATUS = {
    "ok": "ok",
    "drip": "ok",
    "nxdomain": "nxdomain",
    "servfail": "servfail",
    "dns_timeout": "dns_timeout",
    "blackhole": "timeout",
    "stall": "timeout",
    "reset": "reset",
    "refused": "refused",
}
"""Outcome planted -> the observation status it must produce."""


class ScenarioError(PinlabError, ValueError):
    """A scenario file that cannot be read or does not add up; the message says where."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """Shares of outcomes and the latencies of a simulated internet."""

    name: str
    mix: dict[str, float]
    """Outcome (a key of :data:`EXPECTED_STATUS`) -> share of names; the shares sum to 1."""
    rtt_ms: tuple[float, float] = (20.0, 300.0)
    dns_ms: tuple[float, float] = (1.0, 120.0)
    names_per_ip: int = 10
    drip_bytes: int = 256
    drip_interval_ms: float = 20.0
    source: str = ""

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        """Read and check a scenario file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
            latency, servers = data.get("latency", {}), data.get("servers", {})
            scenario = cls(
                name=str(data["name"]),
                mix={str(k): float(v) for k, v in data["mix"].items()},
                rtt_ms=_range(latency.get("rtt_ms", [20, 300])),
                dns_ms=_range(latency.get("dns_ms", [1, 120])),
                names_per_ip=int(servers.get("names_per_ip", 10)),
                drip_bytes=int(servers.get("drip_bytes", 256)),
                drip_interval_ms=float(servers.get("drip_interval_ms", 20)),
                source=str(data.get("source", "")),
            )
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
            raise ScenarioError(f"{path}: not a scenario file: {error}") from None
        unknown = set(scenario.mix) - set(EXPECTED_STATUS)
        if unknown:
            raise ScenarioError(f"{path}: unknown outcomes {sorted(unknown)}")
        if abs(sum(scenario.mix.values()) - 1) > 1e-6 or min(scenario.mix.values()) < 0:
            raise ScenarioError(f"{path}: the [mix] shares must be >= 0 and sum to 1")
        return scenario


def _range(value: object) -> tuple[float, float]:
    low, high = (float(v) for v in value)  # type: ignore[attr-defined]
    if not 0 <= low <= high:
        raise ValueError(f"range {value!r} must be [low, high] with 0 <= low <= high")
    return low, high


@dataclass(frozen=True, slots=True)
class PlannedName:
    """One name of the plan: what happens to it, where it points, how slowly it resolves."""

    name: str
    outcome: str
    ip: str | None
    dns_delay: float


@dataclass(slots=True)
class Plan:
    """Names and endpoints of one simulated internet."""

    names: list[PlannedName]
    endpoints: list[Endpoint]
    by_ip: dict[str, Endpoint] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_ip = {endpoint.ip: endpoint for endpoint in self.endpoints}

    def dns_records(self) -> dict[str, NameBehaviour]:
        """What the DNS server answers for each name."""
        records = {}
        for planned in self.names:
            answer = DNS_OUTCOMES.get(planned.outcome, Answer.ADDRESSES)
            addresses = (planned.ip,) if planned.ip else ()
            records[planned.name] = NameBehaviour(answer, addresses, planned.dns_delay)
        return records


def _address(index: int) -> str:
    return f"127.1.{index // 250}.{index % 250 + 1}"


def plan_internet(
    scenario: Scenario, count: int, *, name: Callable[[int], str], seed: int = 22
) -> Plan:
    """``count`` names shaped by ``scenario``; ``name(j)`` spells the j-th (deterministic)."""
    rng = random.Random(seed)
    shares = sorted(scenario.mix.items())
    counts = {outcome: math.floor(share * count) for outcome, share in shares}
    # Largest remainders get the names rounding left over, so the counts sum to count.
    left = count - sum(counts.values())
    for outcome, _ in sorted(shares, key=lambda kv: -(kv[1] * count % 1))[:left]:
        counts[outcome] += 1
    outcomes = [outcome for outcome, n in counts.items() for _ in range(n)]
    rng.shuffle(outcomes)
    endpoints: list[Endpoint] = []
    current: dict[str, tuple[Endpoint, int]] = {}
    names = []
    low, high = scenario.rtt_ms
    for index, outcome in enumerate(outcomes):
        ip = None
        if outcome not in DNS_OUTCOMES:
            endpoint, used = current.get(outcome, (None, scenario.names_per_ip))
            if endpoint is None or used >= scenario.names_per_ip:
                endpoint = Endpoint(
                    _address(len(endpoints)), Behaviour(outcome), rng.uniform(low, high) / 1000,
                    scenario.drip_bytes, scenario.drip_interval_ms / 1000,
                )  # fmt: skip
                endpoints.append(endpoint)
                used = 0
            current[outcome] = (endpoint, used + 1)
            ip = endpoint.ip
        delay = rng.uniform(*scenario.dns_ms) / 1000
        names.append(PlannedName(name(index), outcome, ip, delay))
    return Plan(names, endpoints)


class SimulatedInternet:
    """Context manager: the plan's DNS server and endpoints, in a child process.

    ``resolver`` is the ``--resolver`` value, ``port`` the TCP port every endpoint uses.
    """

    def __init__(self, plan: Plan, upstream: tuple[str, int]) -> None:
        self.plan, self.upstream = plan, upstream
        self.port = 0
        self.resolver = ""
        self._process: subprocess.Popen[str] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> SimulatedInternet:
        self._directory = tempfile.TemporaryDirectory(prefix="pinlab-internet-")
        spec = Path(self._directory.name) / "plan.json"
        records = {name: asdict(b) for name, b in self.plan.dns_records().items()}
        endpoints = [asdict(e) for e in self.plan.endpoints]
        spec.write_text(
            json.dumps({"records": records, "endpoints": endpoints, "upstream": self.upstream})
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pinlab.testbed.internet", str(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if len(line) != 3 or line[0] != "ready":
            self.__exit__(None, None, None)
            raise PinlabError("the simulated internet did not start (see its stderr)")
        self.resolver, self.port = f"127.0.0.1:{line[1]}", int(line[2])
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()  # the child exits when its stdin closes
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
        if self._directory is not None:
            self._directory.cleanup()


async def _serve(spec: Path) -> None:
    from pinlab.testbed.dns import serve
    from pinlab.testbed.latency import start_endpoints

    data = json.loads(spec.read_text())
    records = {
        name: NameBehaviour(Answer(b["answer"]), tuple(b["addresses"]), b["delay"])
        for name, b in data["records"].items()
    }
    endpoints = [
        Endpoint(e["ip"], Behaviour(e["behaviour"]), e["rtt"], e["drip_bytes"], e["drip_interval"])
        for e in data["endpoints"]
    ]
    transport, _ = await serve(records)
    port = _free_port(endpoints[0].ip if endpoints else "127.1.0.1")
    alive = await start_endpoints(endpoints, port, tuple(data["upstream"]))
    print("ready", transport.get_extra_info("sockname")[1], port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    del alive


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((ip, 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1])))
