"""`BoundedStorage` in-process, over the real backends: a real S3 client against a black-hole socket,
a real local directory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path

import pytest
from blackhole import BlackHoleProxy

from aethera.errors import StorageUnavailable, StorageWriteFailed
from aethera.storage.base import ObjectStat
from aethera.storage.deadline import PROBE_PREFIX, BoundedStorage
from aethera.storage.local import LocalStorage
from aethera.storage.s3 import S3Storage

DEADLINE_S = 0.5
# the test's patience, not a timing of the deadline: a call to the black hole never ends by itself (the S3
# client's read timeout is 60 s), and the error's detail names the deadline that ended it
BOUND_S = 60 * DEADLINE_S


@pytest.fixture
def black_hole() -> Iterator[BlackHoleProxy]:
    # a target that is never reached: the proxy hangs before the first connection
    proxy = BlackHoleProxy("127.0.0.1", 9)
    proxy.hang()
    yield proxy
    proxy.close()


@pytest.fixture
async def hung_s3(black_hole: BlackHoleProxy) -> AsyncIterator[BoundedStorage]:
    s3 = S3Storage(
        bucket="hung", endpoint_url=black_hole.url("http"), access_key_id="testing", secret_access_key="testing"
    )
    await s3.open()
    storage = BoundedStorage(s3, DEADLINE_S)
    yield storage
    await storage.close()


async def _timed_failure(call: object) -> tuple[StorageUnavailable, float]:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        async with asyncio.timeout(BOUND_S):  # the test's own bound: a hang fails it, it never waits on
            await call  # type: ignore[misc]
    return caught.value, time.monotonic() - started


async def test_every_call_to_a_hung_s3_fails_at_the_deadline(
    hung_s3: BoundedStorage, black_hole: BlackHoleProxy
) -> None:
    calls = (
        lambda: hung_s3.read("a/b.json"),
        lambda: hung_s3.stat("a/b.json"),
        lambda: hung_s3.save("a/b.json", b"{}"),
        lambda: hung_s3.delete("a/b.json"),
        hung_s3.ping,
        lambda: hung_s3.exists("a/b.json"),
    )
    for call in calls:
        error, took_s = await _timed_failure(call())
        assert took_s >= DEADLINE_S * 0.9
        assert f"within {DEADLINE_S:g} s" in error.detail and "127.0.0.1" not in error.detail, error.detail
    assert black_hole.accepted >= 1  # the client did connect: this was a hang, not a refusal


async def test_a_stream_and_a_listing_get_the_deadline_per_read(hung_s3: BoundedStorage) -> None:
    async def first(source: AsyncIterator[object]) -> object:
        return await anext(source)

    for source in (hung_s3.stream("a/b.json"), hung_s3.list("runs/")):
        await _timed_failure(first(source))
        await source.aclose()  # type: ignore[attr-defined]


async def test_a_method_the_wrapper_does_not_name_is_bounded_too(hung_s3: BoundedStorage) -> None:
    # bucket_exists is no Protocol method; a method added to the Protocol later is handled the same way
    await _timed_failure(hung_s3.bucket_exists())


class CountingLocal(LocalStorage):
    """The real local backend, counting writes (the probe's cost is what is measured)."""

    saves = 0

    async def save(self, key: str, data: bytes | AsyncIterable[bytes]) -> ObjectStat:
        self.saves += 1
        return await super().save(key, data)


async def test_one_probe_serves_a_poll_storm(tmp_path: Path) -> None:
    local = await CountingLocal(tmp_path / "storage").open()
    storage = BoundedStorage(local, DEADLINE_S)
    try:
        await asyncio.gather(*(storage.probe_write() for _ in range(50)))
        await storage.probe_write()  # right after: the outcome is reused
        assert local.saves == 1
        assert [p for p in (tmp_path / "storage").rglob("*") if p.is_file()] == []
    finally:
        await storage.close()


async def test_the_probe_reports_a_storage_that_cannot_be_written(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    local = await LocalStorage(root).open()
    storage = BoundedStorage(local, DEADLINE_S)
    try:
        # the probe's directory is a file: its write is refused as a full disk's would be (even as root)
        (root / PROBE_PREFIX.split("/")[0]).write_bytes(b"in the way")
        await storage.ping()  # a ping still sees nothing wrong
        with pytest.raises(StorageWriteFailed):
            await storage.probe_write()
    finally:
        await storage.close()


async def test_a_streamed_write_whose_source_stalls_fails_at_the_deadline(tmp_path: Path) -> None:
    storage = BoundedStorage(await LocalStorage(tmp_path / "storage").open(), DEADLINE_S)
    gate = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        yield b"first"
        await gate.wait()  # the source stalls: the deadline runs from the last chunk taken
        yield b"second"

    try:
        with pytest.raises(StorageUnavailable):
            async with asyncio.timeout(BOUND_S):
                await storage.save("a/stalled.bin", source())
        assert not await storage.exists("a/stalled.bin")  # nothing half-written stays
        gate.set()
    finally:
        await storage.close()
