"""Names to addresses for the collector: asynchronous DNS with its own budget and a cache.

Two back ends, chosen by ``--resolver``:

- ``system`` (the default): ``getaddrinfo`` on a thread pool of its own (``dns_concurrency``
  threads, at most 256), so ``/etc/hosts``, ``nsswitch.conf`` and ``resolv.conf`` apply as
  for any program. Kept as the default because small campaigns and the tests name hosts
  that only ``/etc/hosts`` knows. The C library cannot say SERVFAIL from a timeout
  (both are ``EAI_AGAIN``), so those are ``dns_error`` here.
- ``resolv.conf`` or ``HOST[:PORT]``: dnspython's asyncio stub resolver, to the name servers
  of ``/etc/resolv.conf`` or to that one server (a local caching unbound for a campaign).
  Thousands of lookups share the event loop, no thread each, and answers are told apart:
  ``nxdomain``, ``servfail`` (every server failed), ``dns_timeout``.

Each name is asked for A and AAAA at once. **All addresses are kept** (A first, then AAAA,
in answer order) and the collector records them in the observation's ``source_extra``
(``{"addresses": [...]}``), but makes **one observation per target**, connecting to the
first address (a retry moves to the next one). One row per target keeps ``--resume`` and
"one row per target of a campaign" intact; a study of every address of a name lists them
as ``ip,sni`` targets.

Answers and failures are cached for the campaign (a bounded LRU, no TTLs: a campaign is
a snapshot), and concurrent lookups of one name share one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pinlab.collect.endpoint import parse_endpoint
from pinlab.collect.tls import HandshakeError
from pinlab.errors import TargetError
from pinlab.store.records import Status

__all__ = ["SYSTEM", "Resolution", "Resolver", "parse_resolver"]

SYSTEM = "system"
RESOLV_CONF = "resolv.conf"
_CACHE = 200_000


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a lookup gave: addresses (A first, then AAAA), or a failure's status and text."""

    addresses: tuple[str, ...] = ()
    status: Status | None = None
    error: str | None = None

    def raise_failure(self) -> None:
        """Raise the failure as the collector's :class:`HandshakeError` (no-op if resolved)."""
        if self.status is not None:
            raise HandshakeError(self.status, self.error or self.status)


def parse_resolver(text: str) -> tuple[str, int] | str:
    """``system``, ``resolv.conf``, or ``HOST[:PORT]`` (an IP address; port 53 by default)."""
    value = text.strip()
    if value in (SYSTEM, RESOLV_CONF):
        return value
    try:
        host, port = parse_endpoint(value, default_port=53)
        ipaddress.ip_address(host)
    except (TargetError, ValueError):
        raise TargetError(
            f"--resolver {text!r}: expected 'system', 'resolv.conf' or an address HOST[:PORT]"
        ) from None
    return host, port


class Resolver:
    """Resolve names for one campaign: at most ``concurrency`` lookups at once, each within
    ``timeout`` seconds, through ``server`` (see :func:`parse_resolver`)."""

    def __init__(
        self,
        server: tuple[str, int] | str = SYSTEM,
        *,
        concurrency: int = 500,
        timeout: float = 5.0,
    ) -> None:
        if concurrency < 1 or not timeout > 0:
            raise ValueError("DNS concurrency and timeout must be positive")
        self.server, self.timeout = server, timeout
        self.slots = asyncio.Semaphore(concurrency)
        self.cache: OrderedDict[str, Resolution] = OrderedDict()
        self.pending: dict[str, asyncio.Future[Resolution]] = {}
        self.lookups = 0
        """Lookups sent (cache misses)."""
        self.executor: ThreadPoolExecutor | None = None
        self.stub: object | None = None
        if server == SYSTEM:
            self.executor = ThreadPoolExecutor(min(concurrency, 256), "pinlab-dns")
        else:
            import dns.asyncresolver  # only campaigns that ask for it pay for the import

            stub = dns.asyncresolver.Resolver(configure=server == RESOLV_CONF)
            if isinstance(server, tuple):
                stub.nameservers = [server[0]]
                stub.port = server[1]
            # One try with the whole budget: a resend would drop the first query's late
            # answer (a new query id), so any answer within ``timeout`` counts. A local
            # caching resolver (unbound) resends upstream on our behalf.
            stub.timeout, stub.lifetime = timeout, timeout
            self.stub = stub

    def close(self) -> None:
        """Stop the thread pool of the ``system`` back end."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def resolve(self, name: str) -> Resolution:
        """The addresses of ``name`` (an IP literal is its own answer), or why there are none."""
        with contextlib.suppress(ValueError):
            return Resolution((str(ipaddress.ip_address(name)),))
        cached = self.cache.get(name)
        if cached is not None:
            self.cache.move_to_end(name)
            return cached
        waiting = self.pending.get(name)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[Resolution] = asyncio.get_running_loop().create_future()
        self.pending[name] = future
        try:
            async with self.slots:
                self.lookups += 1
                result = await (self._system(name) if self.stub is None else self._stub(name))
        except BaseException as error:
            future.cancel()
            raise error
        finally:
            del self.pending[name]
        future.set_result(result)
        self.cache[name] = result
        if len(self.cache) > _CACHE:
            self.cache.popitem(last=False)
        return result

    async def _system(self, name: str) -> Resolution:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self.executor, socket.getaddrinfo, name, None, 0, socket.SOCK_STREAM
        )
        try:
            async with asyncio.timeout(self.timeout):
                infos = await call
        except TimeoutError:
            return Resolution(status=Status.DNS_TIMEOUT, error=f"resolving {name} timed out")
        except socket.gaierror as error:
            status = Status.NXDOMAIN if error.errno == socket.EAI_NONAME else Status.DNS_ERROR
            return Resolution(status=status, error=f"cannot resolve {name}: {error.strerror}")
        except (OSError, UnicodeError) as error:
            return Resolution(status=Status.DNS_ERROR, error=f"cannot resolve {name}: {error}")
        v4 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET]
        v6 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET6]
        addresses = tuple(dict.fromkeys(v4 + v6))
        if not addresses:
            return Resolution(status=Status.DNS_ERROR, error=f"{name} has no address")
        return Resolution(addresses)

    async def _stub(self, name: str) -> Resolution:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        stub = self.stub
        assert isinstance(stub, dns.asyncresolver.Resolver)
        queries = [stub.resolve(name, kind, search=False) for kind in ("A", "AAAA")]
        answers = await asyncio.gather(*queries, return_exceptions=True)
        addresses: list[str] = []
        failures: list[BaseException] = []
        for answer in answers:
            if isinstance(answer, dns.resolver.NoAnswer):
                continue  # the name exists, without addresses of this family
            if isinstance(answer, BaseException):
                failures.append(answer)
                continue
            addresses.extend(str(record) for record in answer)
        if addresses:  # a family that failed does not spoil the other's answer
            return Resolution(tuple(dict.fromkeys(addresses)))
        for failure in failures:
            if isinstance(failure, dns.resolver.NXDOMAIN):
                return Resolution(status=Status.NXDOMAIN, error=f"{name}: no such domain")
        for failure in failures:
            if isinstance(failure, dns.resolver.NoNameservers):
                return Resolution(
                    status=Status.SERVFAIL, error=f"{name}: server failure ({failure})"
                )
        for failure in failures:
            if isinstance(failure, dns.exception.Timeout):
                return Resolution(
                    status=Status.DNS_TIMEOUT,
                    error=f"resolving {name} timed out after {self.timeout:g} s",
                )
        if failures:
            if not isinstance(failures[0], dns.exception.DNSException | OSError):
                raise failures[0]  # a bug, not an answer
            return Resolution(status=Status.DNS_ERROR, error=f"{name}: {failures[0]}")
        return Resolution(status=Status.DNS_ERROR, error=f"{name} has no address")
