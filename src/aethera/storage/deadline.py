"""Deadlines on the storage calls of API requests, and the write probe of `/health` and `/ready`.

`BoundedStorage` wraps a backend so that no request waits on storage longer than the deadline
(`AETHERA_BACKEND_DEADLINE_S`): a call that has not finished by then raises `StorageUnavailable`, which
the API answers 503 `backend_unavailable`. Clients' own timeouts cannot give that bound: botocore's
connect and read timeouts hold per attempt and per socket read, so a hung endpoint (connections
accepted, never answered) held a request for read timeout x attempts; a hung local disk has no timeout
at all. The deadline is total for a call (across the client's retries) and applies the same to both
backends, so the adapters keep their own configuration.

Streams differ: an export may stream for minutes to a slow client, so `stream` and `list` get an idle
deadline instead, on each chunk or page the backend is asked for (time the consumer spends between two
reads does not count). Writing bytes allows the deadline plus the time the bytes need at
`MIN_TRANSFER_BYTES_PER_S`; writing a stream restarts the deadline at each chunk it takes.

The write probe stores and deletes a few bytes under `.health/probe-<random>`: a full or read-only disk,
or a bucket that refuses writes, looks healthy to a ping (the directory exists, the bucket answers) but
fails here. One probe serves every caller for `PROBE_TTL_S`, so a storm of health polls writes at most
one object a second or two. Should the delete after a timed-out write fail, a probe object stays under
`.health/`, which no route lists.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import inspect
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from typing import Any, TypeVar

from aethera.errors import StorageUnavailable
from aethera.storage.base import DEFAULT_CHUNK_BYTES, MAX_PAGE_KEYS, ObjectStat, Storage

T = TypeVar("T")

PROBE_PREFIX = ".health/probe-"
PROBE_BYTES = b"aethera write probe\n"
PROBE_TTL_S = 2.0
# the slowest link a write to storage is expected to run at (a 20 MB upload gets 20 s more)
MIN_TRANSFER_BYTES_PER_S = 1024 * 1024


class BoundedStorage:
    """The `Storage` Protocol of `inner`, every call bounded by `deadline_s` (see the module doc)."""

    def __init__(self, inner: Storage, deadline_s: float) -> None:
        if deadline_s <= 0:
            raise ValueError("deadline_s must be greater than 0")
        self.inner = inner
        self.deadline_s = deadline_s
        self._probe: asyncio.Task[None] | None = None
        self._probe_done_at = 0.0

    def __repr__(self) -> str:
        return f"BoundedStorage({self.inner!r}, deadline_s={self.deadline_s:g})"

    # --- plumbing -------------------------------------------------------------------------------

    def _late(self, op: str, deadline_s: float) -> StorageUnavailable:
        return StorageUnavailable(f"storage did not answer within {round(deadline_s, 1):g} s ({op})")

    async def _bounded(self, op: str, call: Awaitable[T], deadline_s: float | None = None) -> T:
        limit = self.deadline_s if deadline_s is None else deadline_s
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            raise self._late(op, limit) from None

    async def _idle(self, op: str, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """`source`'s items, each of which must arrive within the deadline of asking for it."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self.deadline_s):
                        item = await anext(source)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._late(op, self.deadline_s) from None
                yield item
        finally:
            # the backend's stream holds a file or a connection until closed (early exit, error, cancel)
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def __getattr__(self, name: str) -> Any:
        """Any other coroutine method of the backend, bounded the same way (so a method added to the
        Protocol later is never unbounded at the API)."""
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            return await self._bounded(name, attr(*args, **kwargs))

        return bounded

    # --- the Protocol ---------------------------------------------------------------------------

    async def save(self, key: str, data: bytes | AsyncIterable[bytes]) -> ObjectStat:
        if isinstance(data, (bytes, bytearray, memoryview)):
            allowance_s = self.deadline_s + len(data) / MIN_TRANSFER_BYTES_PER_S
            return await self._bounded("write", self.inner.save(key, data), allowance_s)
        return await self._save_stream(key, data)

    async def _save_stream(self, key: str, data: AsyncIterable[bytes]) -> ObjectStat:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.deadline_s) as window:

                async def fed() -> AsyncIterator[bytes]:
                    async for chunk in data:
                        window.reschedule(loop.time() + self.deadline_s)  # progress: the deadline restarts
                        yield chunk

                return await self.inner.save(key, fed())
        except TimeoutError:
            raise self._late("write", self.deadline_s) from None

    async def read(self, key: str) -> bytes:
        return await self._bounded("read", self.inner.read(key))

    def stream(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK_BYTES, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        return self._idle("read", self.inner.stream(key, chunk_size=chunk_size, start=start, end=end))

    async def exists(self, key: str) -> bool:
        return await self._bounded("stat", self.inner.exists(key))

    async def stat(self, key: str) -> ObjectStat:
        return await self._bounded("stat", self.inner.stat(key))

    async def delete(self, key: str) -> None:
        await self._bounded("delete", self.inner.delete(key))

    def list(self, prefix: str = "") -> AsyncIterator[ObjectStat]:
        return self._idle("list", self.inner.list(prefix))

    async def list_page(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = MAX_PAGE_KEYS
    ) -> builtins.list[ObjectStat]:
        return await self._bounded("list", self.inner.list_page(prefix, start_after=start_after, limit=limit))

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        return await self._bounded("presign", self.inner.presigned_url(key, expires_s))

    async def ping(self) -> None:
        await self._bounded("ping", self.inner.ping())

    async def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
        await self.inner.close()

    # --- health ---------------------------------------------------------------------------------

    async def probe_write(self) -> None:
        """Raise (`StorageUnavailable`, `StorageWriteFailed`) unless storage answers and takes a write.

        Within `PROBE_TTL_S` of the last probe's end its outcome is reused; callers arriving while a
        probe runs wait for that one. Bounded by the deadline (ping, write and delete together)."""
        loop = asyncio.get_running_loop()
        probe = self._probe
        fresh = probe is not None and (not probe.done() or loop.time() - self._probe_done_at < PROBE_TTL_S)
        if probe is None or not fresh:
            probe = self._probe = loop.create_task(self._write_probe())
            probe.add_done_callback(self._probe_finished)
        # shielded: a health request that gives up must not cancel the probe others wait on
        await asyncio.shield(probe)

    def _probe_finished(self, probe: asyncio.Task[None]) -> None:
        self._probe_done_at = asyncio.get_running_loop().time()
        if not probe.cancelled():
            probe.exception()  # retrieved here: a failed probe nobody awaited any more is no "lost" error

    async def _write_probe(self) -> None:
        async def probe() -> None:
            await self.inner.ping()
            key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
            try:
                await self.inner.save(key, PROBE_BYTES)
            except Exception:
                # a write that failed part-way may have left the object; not on a cancel (the deadline),
                # when storage that hung on the write would hang on the delete too
                with contextlib.suppress(Exception):
                    await self.inner.delete(key)
                raise
            await self.inner.delete(key)

        await self._bounded("write probe", probe())
