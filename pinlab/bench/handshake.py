"""End to end on loopback: a TLS handshake to ``openssl s_server``, without and with pins.

Both variants run against the same server in one interleaved loop (A B, then B A, ...), so
that whatever else the machine is doing slows both alike; the overhead of pinning is then
read as a percentage of the handshake measured in the same moments. Each call is timed on
its own (no loop to amortise), which is what p50 and p99 need.

The handshake is :func:`pinlab.collect.tls.handshake` (pyOpenSSL, non-blocking, TLS 1.3 with
OpenSSL's defaults) and includes the TCP connect. "With pins" adds what a pinning client
does after it: parse the presented DER, validate the path, check the pin set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pinlab.bench.cases import check_with_pins, pin_set
from pinlab.bench.chains import HOSTNAME, BenchChain
from pinlab.bench.timer import Measurement, summarise
from pinlab.collect.tls import handshake
from pinlab.testbed.loopback import HOST, openssl_server

__all__ = ["IMPL_BARE", "IMPL_PINNED", "HandshakeSample", "measure_handshakes"]

IMPL_BARE = "handshake only (pyOpenSSL)"
IMPL_PINNED = "handshake + parse + verify + check"
PIN_SET_SIZE = 2


@dataclass(frozen=True, slots=True)
class HandshakeSample:
    """Per-call times of the bare and the pinned handshake, gathered interleaved."""

    bare: Measurement
    pinned: Measurement


def measure_handshakes(chain: BenchChain, *, calls: int, warmups: int = 5) -> HandshakeSample:
    """Run ``calls`` handshakes of each variant against an ``openssl s_server`` of ``chain``."""
    leaf = chain.leaf
    validate_and_pin = check_with_pins(chain, pin_set(chain.verified[-1], PIN_SET_SIZE))
    clock = time.perf_counter_ns
    bare: list[float] = []
    pinned: list[float] = []

    with openssl_server(leaf.cert_pem, leaf.key_pem, chain_pem=leaf.chain_pem) as port:

        def one_bare() -> float:
            started = clock()
            handshake(HOST, port, sni=HOSTNAME)
            return float(clock() - started)

        def one_pinned() -> float:
            started = clock()
            result = handshake(HOST, port, sni=HOSTNAME)
            accepted = validate_and_pin(result.chain)
            elapsed = float(clock() - started)
            if not accepted:
                raise RuntimeError(f"loopback chain {chain.label}/{chain.length} failed its pins")
            return elapsed

        for _ in range(warmups):
            one_bare()
            one_pinned()
        for index in range(calls):
            if index % 2:
                pinned.append(one_pinned())
                bare.append(one_bare())
            else:
                bare.append(one_bare())
                pinned.append(one_pinned())
    return HandshakeSample(summarise(bare), summarise(pinned))
