"""TLS endpoints at internet distance on loopback: a delaying TCP proxy and its misbehaviours.

The kernel here has no netem qdisc, so delays are added in user space. Each endpoint is
one loopback address (``127.1.x.y``: all of 127/8 is loopback on Linux, so every simulated
server has an address of its own and per-IP limits act as on the internet) and behaves one
way:

- ``ok``: an asyncio proxy to the nginx farm that holds every chunk ``rtt / 2`` in each
  direction, plus one more ``rtt`` on the first client chunk: the TCP handshake with the
  proxy completes at loopback speed, so its round trip is charged to the first flight
  instead (the client sees it inside its handshake time, not its connect time).
- ``drip``: as ``ok``, but the server's bytes trickle out ``drip_bytes`` every
  ``drip_interval`` (a slow or overloaded server that still finishes).
- ``blackhole``: SYNs dropped. A listening socket with ``listen(0)`` whose accept queue is
  filled by connections nobody accepts: Linux then drops every further SYN
  (``tcp_abort_on_overflow`` = 0), so the client retransmits until its connect timeout, as
  against a firewall that drops.
- ``stall``: accepts and reads the ClientHello, never answers (a middlebox, a dead backend).
- ``reset``: accepts, reads the ClientHello and answers with a TCP RST after ``rtt / 2``.
- ``refused``: nothing listens: the kernel answers the SYN with an RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Behaviour", "Endpoint", "start_endpoints"]


class Behaviour(enum.StrEnum):
    """How one simulated server treats a connection."""

    OK = "ok"
    DRIP = "drip"
    BLACKHOLE = "blackhole"
    STALL = "stall"
    RESET = "reset"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One simulated server: its loopback address, behaviour and round-trip time."""

    ip: str
    behaviour: Behaviour
    rtt: float = 0.1
    """Seconds of round trip (``ok``, ``drip``, ``reset``)."""
    drip_bytes: int = 256
    drip_interval: float = 0.02


class _Line:
    """One direction of a connection: bytes leave in order, each ``delay`` after arriving."""

    def __init__(
        self,
        write: Callable[[bytes | None], None],
        delay: float,
        *,
        chunk: int = 0,
        interval: float = 0.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.write, self.delay, self.chunk, self.interval = write, delay, chunk, interval
        self.items: deque[tuple[float, bytes | None]] = deque()
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def send(self, data: bytes | None, extra: float = 0.0) -> None:
        """Queue ``data`` (``None``: close after what is queued)."""
        due = max(self.loop.time() + self.delay + extra, self.last)
        if data and self.chunk:
            for start in range(0, len(data), self.chunk):
                self.items.append((due, data[start : start + self.chunk]))
                self.last = due
                due += self.interval
        else:
            self.items.append((due, data))
            self.last = due
        if self.timer is None:
            self.timer = self.loop.call_at(self.items[0][0], self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.items and self.items[0][0] <= now:
            self.write(self.items.popleft()[1])
        if self.items:
            self.timer = self.loop.call_at(self.items[0][0], self._fire)

    def cancel(self) -> None:
        """Drop what is queued."""
        if self.timer is not None:
            self.timer.cancel()
        self.items.clear()


def _writer(transport: asyncio.Transport) -> Callable[[bytes | None], None]:
    def write(data: bytes | None) -> None:
        if transport.is_closing():
            return
        if data is None:
            transport.close()
        else:
            transport.write(data)

    return write


class _Upstream(asyncio.Protocol):
    def __init__(self, proxy: _Proxy) -> None:
        self.proxy = proxy

    def data_received(self, data: bytes) -> None:
        if self.proxy.to_client is not None:
            self.proxy.to_client.send(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.proxy.to_client is not None:
            self.proxy.to_client.send(None)


class _Proxy(asyncio.Protocol):
    """The server side of one client connection (``ok``, ``drip``, ``stall``, ``reset``)."""

    def __init__(self, endpoint: Endpoint, upstream: tuple[str, int]) -> None:
        self.endpoint, self.upstream = endpoint, upstream
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.to_client: _Line | None = None
        self.to_server: _Line | None = None
        self.held: list[bytes | None] = []
        self.first = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        kind = self.endpoint.behaviour
        if kind in (Behaviour.OK, Behaviour.DRIP):
            drip = kind is Behaviour.DRIP
            self.to_client = _Line(
                _writer(transport),
                self.endpoint.rtt / 2,
                chunk=self.endpoint.drip_bytes if drip else 0,
                interval=self.endpoint.drip_interval if drip else 0.0,
            )
            self.to_server = _Line(self._to_server, self.endpoint.rtt / 2)
            asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            server, _ = await loop.create_connection(lambda: _Upstream(self), *self.upstream)
        except OSError:
            if self.client is not None:
                self.client.abort()
            return
        assert isinstance(server, asyncio.Transport)
        self.server = server
        for data in self.held:
            self._to_server(data)
        self.held = []

    def _to_server(self, data: bytes | None) -> None:
        if self.server is None:
            self.held.append(data)
        elif not self.server.is_closing():
            self.server.write(data) if data is not None else self.server.close()

    def data_received(self, data: bytes) -> None:
        kind = self.endpoint.behaviour
        if kind is Behaviour.RESET and self.first:
            asyncio.get_running_loop().call_later(self.endpoint.rtt / 2, self._reset)
        elif self.to_server is not None:
            self.to_server.send(data, extra=self.endpoint.rtt if self.first else 0.0)
        self.first = False  # stall: read and never answer

    def _reset(self) -> None:
        if self.client is None or self.client.is_closing():
            return
        raw = self.client.get_extra_info("socket")
        if raw is not None:  # linger 0: close() sends an RST, not a FIN
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.to_server is not None:
            self.to_server.send(None)
        elif self.server is not None:
            self.server.close()
        if self.to_client is not None and exc is not None:
            self.to_client.cancel()


def _blackhole(ip: str, port: int) -> list[socket.socket]:
    """A listener whose accept queue is full: further SYNs are dropped by the kernel."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((ip, port))
    listener.listen(0)
    held = [listener]
    for _ in range(2):  # backlog 0 admits one; the second fills the SYN side for good
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((ip, port))
        held.append(filler)
    return held


async def start_endpoints(
    endpoints: list[Endpoint], port: int, upstream: tuple[str, int]
) -> list[object]:
    """Listen for every endpoint on ``ip:port`` (``refused`` ones: nothing listens).

    Returns what must stay referenced for the endpoints to live (servers and sockets).
    """
    loop = asyncio.get_running_loop()
    alive: list[object] = []
    for endpoint in endpoints:
        if endpoint.behaviour is Behaviour.REFUSED:
            continue
        if endpoint.behaviour is Behaviour.BLACKHOLE:
            alive.extend(_blackhole(endpoint.ip, port))
            continue

        def factory(endpoint: Endpoint = endpoint) -> _Proxy:
            return _Proxy(endpoint, upstream)

        alive.append(
            await loop.create_server(factory, endpoint.ip, port, reuse_address=True, backlog=4096)
        )
    return alive
