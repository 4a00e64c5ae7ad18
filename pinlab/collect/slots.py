"""Handshake slots handed out in file order, not in the order targets ask for them.

A target takes its address's slot first (``per_ip``), then a handshake slot. With a plain
FIFO semaphore, a target that waited its turn behind a silent address with many names then
queues again behind every target admitted after it, once per try: on the simulated
internet's default scenario, the addresses that stall after the ClientHello (ten names,
two tries of 5 s each, two at a time) finished 10-15 s after everything else, the tail of
the campaign. :class:`RankedSlots` grants a freed slot to the waiting target that comes
first in the target file (a retry keeps its target's rank), which is the order the ideal
schedule of :mod:`pinlab.bench.schedule` serves addresses in: a target that waited for its
address is not made to wait again behind later targets.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType

__all__ = ["RankedSlots"]


class RankedSlots:
    """``slots`` slots; a freed one goes to the waiter of lowest rank (ties: first come)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be positive")
        self._free = slots
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    def _drop_abandoned(self) -> None:
        # Waiters cancelled while waiting (a timeout, Ctrl-C) leave done futures behind.
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)

    async def acquire(self, rank: int) -> None:
        """Wait for a slot; lower ``rank`` is served first."""
        self._drop_abandoned()
        # Invariant: a live waiter exists only while no slot is free (release hands a freed
        # slot to a live waiter before counting it free), so this never jumps the queue.
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, next(self._arrivals), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted, then cancelled before running: pass it on
            raise

    def release(self) -> None:
        """Give the slot to the best waiter, or count it free."""
        while self._waiters:
            _, _, granted = heapq.heappop(self._waiters)
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1

    def hold(self, rank: int) -> _Held:
        """``async with slots.hold(rank):`` acquire, then release on leaving."""
        return _Held(self, rank)

    @property
    def free(self) -> int:
        """Slots neither held nor promised to a waiter."""
        return self._free


class _Held:
    __slots__ = ("_rank", "_slots")

    def __init__(self, slots: RankedSlots, rank: int) -> None:
        self._slots, self._rank = slots, rank

    async def __aenter__(self) -> None:
        await self._slots.acquire(self._rank)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._slots.release()
