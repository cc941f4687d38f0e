"""A background task that publishes the latest state, and stops for certain when told to.

An attempt's progress is published to Redis by one task, so a slow Redis sees fewer writes, never
out-of-order ones. Stopping it must be certain: the attempt's final state is written only after the
writer has stopped, so that no progress copy lands after (and overwrites) it. Cancellation alone is
not certain: a Redis call whose own read timeout fires at the moment the cancellation arrives can
surface as a `TimeoutError`, which the publish step logs and survives; the writer then went back to
waiting for news that never came, and the attempt waited for the writer forever while its heartbeat
kept the lease alive (a run stuck in PROCESSING with all its outputs written). So the loop also checks
a flag, and the wait for it to end is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

STOP_WAIT_S = 15.0  # longer than one bounded Redis call (5 s read timeout) with margin


class LatestWriter:
    """Calls `publish` whenever `mark` was called since its last call; `close` ends it for good."""

    def __init__(self, publish: Callable[[], Awaitable[object]], *, name: str = "latest-writer") -> None:
        self._publish = publish
        self._name = name
        self._dirty = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._loop(), name=self._name)

    def mark(self) -> None:
        """There is news: publish the current state (once, however often this is called meanwhile)."""
        if not self._closed:
            self._dirty.set()

    async def _loop(self) -> None:
        while not self.is_closed():
            await self._dirty.wait()
            self._dirty.clear()
            if self.is_closed():  # woken by close(): publish nothing more
                return
            await self._publish()

    def is_closed(self) -> bool:
        return self._closed

    async def close(self, timeout_s: float = STOP_WAIT_S) -> bool:
        """Stop publishing; True once the task has ended (False: it did not end within `timeout_s`,
        logged; it still publishes nothing new, since the flag is checked before every publish)."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return True
        self._dirty.set()  # a writer waiting for news wakes, sees the flag and returns
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            log.error("%s did not stop within %.0f s; it publishes nothing more", self._name, timeout_s)
            return False
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s ended with %s", self._name, type(task.exception()).__name__)
        return True
