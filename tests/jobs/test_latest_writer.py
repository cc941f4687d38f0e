"""The progress writer stops for certain: a lost cancellation must not keep an attempt from committing."""

from __future__ import annotations

import asyncio

from aethera.jobs.latest_writer import LatestWriter


async def test_latest_value_wins_and_nothing_is_published_after_close() -> None:
    published: list[int] = []
    state = {"value": 0}
    gate = asyncio.Event()
    in_flight = asyncio.Event()

    async def publish() -> None:
        value = state["value"]  # what a publish reads when it starts
        in_flight.set()
        await gate.wait()
        published.append(value)

    writer = LatestWriter(publish)
    writer.start()
    state["value"] = 1
    writer.mark()
    await in_flight.wait()  # the writer took the news and waits at the gate
    for value in (2, 3, 4):  # three more reports while the first is in flight: one write follows
        state["value"] = value
        writer.mark()
    gate.set()
    while len(published) < 2:
        await asyncio.sleep(0)
    assert published == [1, 4]
    assert await writer.close() is True
    writer.mark()
    await asyncio.sleep(0)
    assert published == [1, 4]


async def test_close_ends_a_writer_whose_publish_swallows_the_cancellation() -> None:
    """A Redis call's own timeout firing as the cancellation arrives surfaces as an error the publish step
    logs and survives: the cancellation is lost. The writer still ends, by its flag."""
    entered = asyncio.Event()
    calls = 0

    async def publish() -> None:
        nonlocal calls
        calls += 1
        entered.set()
        try:
            await asyncio.Event().wait()  # a Redis write that never answers
        except asyncio.CancelledError:
            return  # swallowed, as `except (RedisError, OSError)` swallows a TimeoutError

    writer = LatestWriter(publish)
    writer.start()
    writer.mark()
    await entered.wait()
    assert await writer.close(timeout_s=60.0) is True  # without the flag the loop waits for news forever
    assert calls == 1


async def test_close_is_bounded_when_a_publish_never_returns() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def publish() -> None:
        entered.set()
        while not release.is_set():  # ignores every cancellation
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    writer = LatestWriter(publish)
    writer.start()
    writer.mark()
    await entered.wait()
    assert await writer.close(timeout_s=0.05) is False  # the attempt goes on to commit regardless
    release.set()
    await asyncio.sleep(0)


async def test_close_before_start_and_twice() -> None:
    async def publish() -> None:
        raise AssertionError("never called")

    writer = LatestWriter(publish)
    assert await writer.close() is True
    writer.start()  # closed: does not start
    writer.mark()
    assert await writer.close() is True
