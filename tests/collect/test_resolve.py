"""The resolver stage against a real DNS server on loopback: answers, failures, the cache."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pinlab.collect import Target, collect
from pinlab.collect.resolve import Resolution, Resolver, parse_resolver
from pinlab.errors import TargetError
from pinlab.store import Scan, Store
from pinlab.testbed.dns import Answer, LoopbackDns, NameBehaviour

NAMES = {
    "dual.sim.test": NameBehaviour(addresses=("127.1.0.1", "127.1.0.2", "::1")),
    "slow.sim.test": NameBehaviour(addresses=("127.1.0.3",), delay=0.3),
    "gone.sim.test": NameBehaviour(Answer.NXDOMAIN),
    "broken.sim.test": NameBehaviour(Answer.SERVFAIL),
    "silent.sim.test": NameBehaviour(Answer.SILENT),
    "empty.sim.test": NameBehaviour(addresses=()),
}


def _resolve_all(resolver: Resolver, names: list[str]) -> list[Resolution]:
    async def run() -> list[Resolution]:
        try:
            return list(await asyncio.gather(*(resolver.resolve(n) for n in names)))
        finally:
            resolver.close()

    return asyncio.run(run())


def test_every_answer_becomes_its_status() -> None:
    with LoopbackDns(NAMES) as server:
        resolver = Resolver(server.address, concurrency=10, timeout=0.6)
        names = [*NAMES, "unknown.sim.test", "192.0.2.9"]
        results = dict(zip(names, _resolve_all(resolver, names), strict=True))
    dual = results["dual.sim.test"].addresses  # A answers first (an RRset has no order)
    assert set(dual[:2]) == {"127.1.0.1", "127.1.0.2"}
    assert dual[2:] == ("::1",)
    assert results["slow.sim.test"].addresses == ("127.1.0.3",)
    assert results["gone.sim.test"].status == "nxdomain"
    assert results["unknown.sim.test"].status == "nxdomain"
    assert results["broken.sim.test"].status == "servfail"
    assert results["silent.sim.test"].status == "dns_timeout"
    assert results["empty.sim.test"].status == "dns_error"
    assert results["192.0.2.9"] == Resolution(("192.0.2.9",))  # an address asks nobody
    assert resolver.lookups == len(NAMES) + 1


def test_lookups_run_concurrently_and_are_cached() -> None:
    slow = NameBehaviour(addresses=("127.1.0.9",), delay=0.3)
    names = {f"n{i}.sim.test": slow for i in range(50)}
    with LoopbackDns(names) as server:
        resolver = Resolver(server.address, concurrency=50, timeout=3)
        started = time.perf_counter()
        first = _resolve_all(resolver, [*names, *names])  # each name twice, at once
        elapsed = time.perf_counter() - started
        assert resolver.lookups == 50  # the second asks share the first's query
        again = Resolver(server.address, concurrency=50, timeout=3)
        again.cache.update(resolver.cache)
        _resolve_all(again, list(names))
    assert {r.addresses for r in first} == {("127.1.0.9",)}
    assert elapsed < 50 * 0.3 / 2  # not one after the other
    assert again.lookups == 0


def test_system_resolver_reads_etc_hosts() -> None:
    (result,) = _resolve_all(Resolver("system", concurrency=2, timeout=5), ["localhost"])
    assert result.status is None
    assert "127.0.0.1" in result.addresses or "::1" in result.addresses


@pytest.mark.parametrize("text", ["dns.example:53", "1.2.3.4:70000", "", "system:53"])
def test_bad_resolver_is_refused(text: str) -> None:
    with pytest.raises(TargetError, match="--resolver"):
        parse_resolver(text)


def test_resolver_forms() -> None:
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:53") == ("::1", 53)
    assert parse_resolver("9.9.9.9") == ("9.9.9.9", 53)
    assert parse_resolver("resolv.conf") == "resolv.conf"


def test_an_error_of_the_target_list_stops_the_campaign(tmp_path: Path) -> None:
    """The resolver stage runs the target iterator: its error still reaches the caller."""
    with socket.socket() as probe:  # a port nothing listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def targets() -> Iterator[Target]:
        yield Target("a.test", port, "a.test", "127.0.0.1")
        raise TargetError("targets.txt line 2: bad")

    scan = Scan("s", "scan", None, None, "{}", datetime.now(UTC), None, "test")
    with Store.open(tmp_path / "s.duckdb") as store:
        store.add_scan(scan)
        with pytest.raises(TargetError, match="line 2"):
            collect(targets(), store, scan, clock=lambda: datetime.now(UTC))
