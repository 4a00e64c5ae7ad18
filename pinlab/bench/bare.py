"""The bare loops the collector is measured against: handshakes that only capture the chain.

- :func:`bare_threads`: a pool of threads with blocking sockets
  (:func:`pinlab.collect.tls.handshake`), the Python limit the issue names;
- :func:`bare_asyncio`: the same on asyncio and memory BIOs, the collector's model;
- :func:`in_processes`: either one over ``processes`` spawned processes, the targets dealt
  round-robin and the handshakes in flight divided among them, as ``pinlab collect
  --processes N`` divides them. Process start-up is part of the time, as it is for the
  collector.

This module imports no pandas or DuckDB, so that the processes it spawns start quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from OpenSSL import SSL

from pinlab.collect.targets import Target
from pinlab.collect.tls import client_context, handshake

__all__ = ["bare_asyncio", "bare_threads", "in_processes"]


def bare_threads(targets: list[Target], concurrency: int) -> int:
    """Handshake with every target on ``concurrency`` threads; how many completed."""
    context = client_context()

    def one(target: Target) -> int:
        return len(handshake("127.0.0.1", target.port, sni=target.sni, context=context).chain)

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(1 for _ in pool.map(one, targets))


async def _one_asyncio(context: SSL.Context, target: Target) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    try:
        connection = SSL.Connection(context, None)
        connection.set_tlsext_host_name((target.sni or "").encode("ascii"))
        connection.set_connect_state()
        while True:
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                pass
            with contextlib.suppress(SSL.WantReadError):
                writer.write(connection.bio_read(65536))
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("closed during handshake")
            connection.bio_write(data)
        return len(connection.get_peer_cert_chain() or ())
    finally:
        writer.close()


def bare_asyncio(targets: list[Target], concurrency: int) -> int:
    """Handshake with every target, ``concurrency`` at once on one event loop."""

    async def main() -> int:
        context = client_context()
        slots = asyncio.Semaphore(concurrency)

        async def bounded(target: Target) -> int:
            async with slots:
                return await _one_asyncio(context, target)

        return len(await asyncio.gather(*(bounded(target) for target in targets)))

    return asyncio.run(main())


def in_processes(
    client: Callable[[list[Target], int], int],
    targets: list[Target],
    processes: int,
    concurrency: int,
) -> int:
    """Run ``client`` in ``processes`` spawned processes over a share of the targets each."""
    shares = [targets[index::processes] for index in range(processes)]
    each = max(1, concurrency // processes)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        return sum(pool.map(client, shares, [each] * processes))
