"""A DNS server on loopback with a behaviour per name: the simulated internet's resolver.

::

    names = {"a.sim.test": NameBehaviour(addresses=("127.1.0.1",), delay=0.05),
             "gone.sim.test": NameBehaviour(Answer.NXDOMAIN)}
    with LoopbackDns(names) as server:
        Resolver(server.address)   # pinlab.collect.resolve, --resolver 127.0.0.1:PORT

A small asyncio UDP server built on dnspython's message codec (no resolver logic of our
own: it answers A and AAAA for the names it is given, as an authoritative server would).
Each name answers after its ``delay`` with addresses, NXDOMAIN or SERVFAIL, or never
(``SILENT``: the client's timeout). Names it does not know are NXDOMAIN. Delays are timers
on the event loop, so thousands of slow answers cost no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["Answer", "DnsProtocol", "LoopbackDns", "NameBehaviour"]

HOST = "127.0.0.1"
_RECEIVE_BUFFER = 16 * 1024 * 1024


class Answer(enum.StrEnum):
    """How a name answers."""

    ADDRESSES = "addresses"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    SILENT = "silent"


@dataclass(frozen=True, slots=True)
class NameBehaviour:
    """What the server does when asked about one name."""

    answer: Answer = Answer.ADDRESSES
    addresses: tuple[str, ...] = ()
    """IPv4 addresses answer A queries, IPv6 ones AAAA (a family without any: NOERROR, empty)."""
    delay: float = 0.0
    """Seconds before the reply leaves (both queries of a lookup wait it)."""


class DnsProtocol(asyncio.DatagramProtocol):
    """The server's protocol: one reply per query, after the name's delay."""

    def __init__(self, names: Mapping[str, NameBehaviour], *, ttl: int = 300) -> None:
        self.names, self.ttl = names, ttl
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the socket to reply on."""
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """Answer a query (garbage is dropped, as a server under attack would)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        if not query.question:
            return
        self.queries += 1
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        behaviour = self.names.get(name, NameBehaviour(Answer.NXDOMAIN))
        if behaviour.answer is Answer.SILENT:
            return
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if behaviour.answer is Answer.NXDOMAIN:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif behaviour.answer is Answer.SERVFAIL:
            reply.set_rcode(dns.rcode.SERVFAIL)
        else:
            version = 4 if question.rdtype == dns.rdatatype.A else 6
            wanted = [a for a in behaviour.addresses if ipaddress.ip_address(a).version == version]
            if question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and wanted:
                reply.answer.append(
                    dns.rrset.from_text_list(question.name, self.ttl, "IN", question.rdtype, wanted)
                )
        wire = reply.to_wire()
        assert self.transport is not None
        if behaviour.delay > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(behaviour.delay, self.transport.sendto, wire, addr)
        else:
            self.transport.sendto(wire, addr)


async def serve(
    names: Mapping[str, NameBehaviour], host: str = HOST, port: int = 0
) -> tuple[asyncio.DatagramTransport, DnsProtocol]:
    """Start the server on the running loop; ``transport.get_extra_info('sockname')``."""
    loop = asyncio.get_running_loop()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # A campaign sends a burst of queries (two per name in flight): with the default
    # receive buffer (~200 kB) the kernel drops some of them and the names "time out".
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is not None:
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, option, _RECEIVE_BUFFER)
                break
    udp.bind((host, port))
    transport, protocol = await loop.create_datagram_endpoint(lambda: DnsProtocol(names), sock=udp)
    return transport, protocol


class LoopbackDns:
    """Context manager: the server on ``127.0.0.1`` (a free port), in a thread of its own."""

    def __init__(self, names: Mapping[str, NameBehaviour]) -> None:
        self.names = names
        self.address: tuple[str, int] = (HOST, 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def spec(self) -> str:
        """``HOST:PORT``, as ``--resolver`` takes it."""
        return f"{self.address[0]}:{self.address[1]}"

    def __enter__(self) -> LoopbackDns:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(serve(self.names), self._loop)
        self._transport, _ = future.result(timeout=10)
        sockname = self._transport.get_extra_info("sockname")
        self.address = (str(sockname[0]), int(sockname[1]))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            self._loop.call_soon_threadsafe(self._transport.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
