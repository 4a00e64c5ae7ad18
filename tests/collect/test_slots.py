"""Handshake slots granted in file order (pinlab.collect.slots), on a real event loop."""

from __future__ import annotations

import asyncio

import pytest

from pinlab.collect.slots import RankedSlots


def test_a_freed_slot_goes_to_the_lowest_rank_not_the_first_to_ask() -> None:
    async def run() -> list[int]:
        slots = RankedSlots(1)
        served: list[int] = []
        await slots.acquire(0)  # the one slot is taken

        async def target(rank: int) -> None:
            async with slots.hold(rank):
                served.append(rank)

        # Ranks 9, 5, 7 ask in that order (the order targets got their address's slot).
        waiting = [asyncio.create_task(target(rank)) for rank in (9, 5, 7)]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*waiting)
        assert slots.free == 1
        return served

    assert asyncio.run(run()) == [5, 7, 9]


def test_equal_ranks_are_served_first_come_first_served() -> None:
    async def run() -> list[str]:
        slots = RankedSlots(1)
        served: list[str] = []
        await slots.acquire(0)

        async def target(name: str) -> None:
            async with slots.hold(3):
                served.append(name)

        waiting = [asyncio.create_task(target(name)) for name in "abc"]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*waiting)
        return served

    assert asyncio.run(run()) == ["a", "b", "c"]


def test_never_more_holders_than_slots_and_every_slot_comes_back() -> None:
    async def run() -> int:
        slots = RankedSlots(3)
        inside = peak = 0

        async def target(rank: int) -> None:
            nonlocal inside, peak
            async with slots.hold(rank):
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.001 * (rank % 4))
                inside -= 1

        await asyncio.gather(*(target(rank) for rank in range(200)))
        assert slots.free == 3
        return peak

    assert asyncio.run(run()) == 3


def test_a_waiter_cancelled_by_its_timeout_loses_no_slot() -> None:
    """A target whose timeout fires while it waits (or just after it was granted a slot)
    must neither keep a slot nor strand the waiters behind it."""

    async def run() -> None:
        slots = RankedSlots(1)
        await slots.acquire(0)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await slots.acquire(1)  # cancelled while waiting
        behind = asyncio.create_task(slots.acquire(2))
        granted_then_cancelled = asyncio.create_task(slots.acquire(1))
        await asyncio.sleep(0)
        slots.release()  # rank 1 is granted the slot ...
        granted_then_cancelled.cancel()  # ... and cancelled before it ran: pass it on
        with pytest.raises(asyncio.CancelledError):
            await granted_then_cancelled
        async with asyncio.timeout(1):
            await behind
        slots.release()
        assert slots.free == 1

    asyncio.run(run())


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RankedSlots(0)
