"""The ideal schedule of a campaign: what its slots allow when CPU costs nothing.

A campaign's lower bound is not just "slot-seconds over slots": targets share addresses
(``per_ip``), arrive in file order after their DNS lookup, and retry after a backoff that
holds no slot. :func:`makespan` plays that out exactly, as a list scheduler with perfect
knowledge of every duration and no CPU cost would: each try starts at the earliest moment
a handshake slot and a slot of its address are both free, first come first served, and
a retry comes back after its backoff. The finish time of the last try is the bound
``pinlab bench internet`` holds a campaign to.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Job", "makespan"]


@dataclass(frozen=True, slots=True)
class Job:
    """One target: ready at ``release`` (its lookup done), then ``tries`` on ``ip``."""

    release: float
    ip: str
    tries: tuple[float, ...]
    """Seconds each try holds its slots."""
    backoffs: tuple[float, ...] = ()
    """Seconds between try k and k + 1 (holding no slot)."""


def makespan(jobs: Sequence[Job], *, concurrency: int, per_ip: int) -> float:
    """When the last try of ``jobs`` ends, on ``concurrency`` slots and ``per_ip`` per address."""
    # Tries not yet ready: (ready time, sequence, job index, try index).
    pending = [(job.release, index, index, 0) for index, job in enumerate(jobs)]
    heapq.heapify(pending)
    running: list[tuple[float, int, int]] = []  # (end, job index, try index)
    busy: Counter[str] = Counter()
    queues: dict[str, deque[tuple[int, int, int]]] = defaultdict(deque)  # ready, per address
    # Addresses that may start a try, by their oldest ready try (entries may be stale).
    eligible: list[tuple[int, str]] = []
    now = end = 0.0
    sequence = len(jobs)

    def offer(ip: str) -> None:
        if queues[ip] and busy[ip] < per_ip:
            heapq.heappush(eligible, (queues[ip][0][0], ip))

    while pending or running or eligible:
        while pending and pending[0][0] <= now:
            _, order, index, attempt = heapq.heappop(pending)
            ip = jobs[index].ip
            queues[ip].append((order, index, attempt))
            if len(queues[ip]) == 1:
                offer(ip)
        while eligible and len(running) < concurrency:
            order, ip = heapq.heappop(eligible)
            queue = queues[ip]
            if not queue or queue[0][0] != order or busy[ip] >= per_ip:
                continue  # stale: the address was offered again when it changed
            _, index, attempt = queue.popleft()
            busy[ip] += 1
            heapq.heappush(running, (now + jobs[index].tries[attempt], index, attempt))
            offer(ip)
        upcoming = [heap[0][0] for heap in (running, pending) if heap]
        if not upcoming:
            break
        now = min(upcoming)
        while running and running[0][0] <= now:
            finished, index, attempt = heapq.heappop(running)
            job = jobs[index]
            busy[job.ip] -= 1
            end = max(end, finished)
            offer(job.ip)
            if attempt + 1 < len(job.tries):
                sequence += 1
                retry = (finished + job.backoffs[attempt], sequence, index, attempt + 1)
                heapq.heappush(pending, retry)
    return end
