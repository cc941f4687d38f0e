"""The priority gate in front of scrypt: its bound, its order, and cancelled waiters."""

from __future__ import annotations

import asyncio

import pytest

from aethera.security.keycheck import PriorityGate


async def test_waiters_are_served_by_priority_then_arrival() -> None:
    gate = PriorityGate(1)
    served: list[str] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(0):
            holding.set()
            await release.wait()

    async def waiter(name: str, priority: float) -> None:
        async with gate.slot(priority):
            served.append(name)

    first = asyncio.create_task(holder())
    await holding.wait()
    tasks = [
        asyncio.create_task(waiter(name, prio))
        for name, prio in (("guess-a", 0), ("guess-b", 0), ("fresh", -19), ("guess-c", -3))
    ]
    while gate.waiting < len(tasks):  # every waiter queued (each queues at its first step)
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *tasks)
    assert served == ["fresh", "guess-c", "guess-a", "guess-b"]


async def test_the_gate_never_runs_more_than_its_slots() -> None:
    gate = PriorityGate(2)
    running = peak = 0

    async def work(i: int) -> None:
        nonlocal running, peak
        async with gate.slot(i % 3):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1

    await asyncio.gather(*(work(i) for i in range(50)))
    assert peak == 2


async def test_a_cancelled_waiter_gives_up_its_place_without_losing_a_slot() -> None:
    gate = PriorityGate(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(0):
            await release.wait()

    async def waiter() -> None:
        async with gate.slot(0):
            pass

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(waiter())
    kept = asyncio.create_task(waiter())
    while gate.waiting < 2:
        await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release.set()
    await asyncio.gather(held, kept)
    # the slot is free again: a new caller gets it (a lost slot would hang here; the timeout only turns
    # that hang into a failure)
    async with asyncio.timeout(30):
        async with gate.slot(0):
            assert gate.waiting == 0


def test_a_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        PriorityGate(0)
