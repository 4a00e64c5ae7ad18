"""The baseline of ``pinlab bench internet``: the campaign as a bare asyncio loop would run it.

``python -m pinlab.bench.bareloop TARGETS OPTIONS_JSON`` prints ``{"elapsed", "statuses"}``.
One semaphore of ``concurrency`` slots; inside a slot, the name is looked up with the same
resolver pinlab uses (:class:`pinlab.collect.resolve.Resolver`: dnspython, same server,
same timeout, same cache), then connect and handshake with the standard library's
``asyncio`` TLS (no verification) under the same connect, handshake and overall timeouts,
with the same retries for timeouts and resets, and the same per-IP limit (a semaphore per
address: the same campaign is as polite). No parsing, no validation, no store.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pinlab.collect.resolve import Resolver, parse_resolver

__all__ = ["run_bare"]


def _context() -> ssl.SSLContext:
    # One context for the campaign: making one loads the CA store (tens of ms of blocking).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_CONTEXT = _context()


async def _handshake(ip: str, port: int, name: str, options: dict[str, float]) -> str:
    context = _CONTEXT
    writer = None
    try:
        async with asyncio.timeout(options["timeout"]):
            async with asyncio.timeout(options["connect_timeout"]):
                _, writer = await asyncio.open_connection(ip, port)
            async with asyncio.timeout(options["handshake_timeout"]):
                await writer.start_tls(context, server_hostname=name)
        return "ok"
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError, EOFError, ssl.SSLEOFError):
        return "reset"
    except ssl.SSLError:
        return "protocol_error"
    except OSError:
        return "unreachable"
    finally:
        if writer is not None:
            writer.close()


async def run_bare(lines: list[str], options: dict[str, Any]) -> tuple[float, Counter[str]]:
    """Run the campaign over ``name:port`` lines; its seconds and statuses."""
    resolver = Resolver(
        parse_resolver(str(options["resolver"])),
        concurrency=int(options["concurrency"]),
        timeout=float(options["dns_timeout"]),
    )
    timeouts = {k: float(options[k]) for k in ("timeout", "connect_timeout", "handshake_timeout")}
    retries, backoff = int(options["retries"]), float(options["backoff"])
    slots = asyncio.Semaphore(int(options["concurrency"]))
    per_ip: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(int(options["per_ip"]))
    )
    statuses: Counter[str] = Counter()

    async def one(line: str) -> None:
        name, _, port = line.rpartition(":")
        async with slots:
            resolution = await resolver.resolve(name)
            if resolution.status is not None:
                statuses[str(resolution.status)] += 1
                return
            for attempt in range(retries + 1):
                ip = resolution.addresses[0]
                async with per_ip[ip]:
                    status = await _handshake(ip, int(port), name, timeouts)
                if status not in ("timeout", "reset") or attempt == retries:
                    break
                await asyncio.sleep(backoff * 2**attempt * random.uniform(0.5, 1.5))
            statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(line) for line in lines))
    resolver.close()
    return time.perf_counter() - started, statuses


if __name__ == "__main__":
    targets = [line.strip() for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
    elapsed, counts = asyncio.run(run_bare(targets, json.loads(sys.argv[2])))
    print(json.dumps({"elapsed": elapsed, "statuses": dict(counts)}))
