"""What only the S3 backend can get wrong: multipart uploads, connections, endpoint errors, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from aethera.embedded_redis import free_port
from aethera.errors import ConfigError, InvalidInput, ObjectNotFound, StorageUnavailable
from aethera.storage.s3 import S3Storage

MIB = 1024 * 1024
SECRET = "s3cr3t-DO-NOT-LEAK-0123456789"
ACCESS_KEY = "AKIA-DO-NOT-LEAK"


async def pending_uploads(admin: Any, bucket: str) -> list[str]:
    resp = await admin.list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in resp.get("Uploads", [])]


async def test_large_stream_goes_up_in_parts_small_in_one_put(
    s3_storage: S3Storage, s3_admin: Any, bucket: str
) -> None:
    big = os.urandom(12 * MIB)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), MIB):
            yield data[i : i + MIB]

    saved = await s3_storage.save("big", chunks(big))
    # a multipart object's ETag is "<md5 of part md5s>-<number of parts>": 5 + 5 + 2 MiB
    assert saved.etag is not None and saved.etag.endswith("-3")
    assert (await s3_storage.stat("big")).etag == saved.etag
    small = await s3_storage.save("small", chunks(os.urandom(2 * MIB)))
    assert small.etag is not None and "-" not in small.etag
    assert await pending_uploads(s3_admin, bucket) == []
    assert await s3_storage.read("big") == big


async def test_failing_source_aborts_the_multipart_upload(s3_storage: S3Storage, s3_admin: Any, bucket: str) -> None:
    await s3_storage.save("k", b"previous")

    async def broken() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b"x" * MIB  # two parts are up before the source fails
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        await s3_storage.save("k", broken())
    assert await pending_uploads(s3_admin, bucket) == []
    assert await s3_storage.read("k") == b"previous"


async def test_cancelled_upload_is_aborted(s3_storage: S3Storage, s3_admin: Any, bucket: str) -> None:
    halfway = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(7):
            yield b"y" * MIB
        halfway.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(s3_storage.save("k", stalls()))
    await halfway.wait()
    assert await pending_uploads(s3_admin, bucket) == ["k"]  # the upload really had begun
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending_uploads(s3_admin, bucket) == []
    assert not await s3_storage.exists("k")


async def test_early_close_releases_the_connection(s3_factory: Callable[..., S3Storage], bucket: str) -> None:
    """With a pool of two connections, a stream that kept its connection after aclose() would make
    the third request wait for ever."""
    storage = await s3_factory(bucket, max_pool_connections=2).open()
    try:
        data = os.urandom(4 * MIB)
        await storage.save("s", data)
        async with asyncio.timeout(60):  # a hang guard, not a speed assertion
            for _ in range(8):
                stream = storage.stream("s", chunk_size=64 * 1024)
                assert data.startswith(await anext(stream))
                await stream.aclose()
            for _ in range(4):
                async with contextlib.aclosing(storage.stream("s", start=MIB)) as stream:
                    async for _chunk in stream:
                        break
            assert await storage.read("s") == data
    finally:
        await storage.close()


async def test_missing_bucket_is_named(s3_factory: Callable[..., S3Storage]) -> None:
    storage = await s3_factory("no-such-bucket-here").open()
    try:
        with pytest.raises(StorageUnavailable, match="no-such-bucket-here"):
            await storage.ping()
        with pytest.raises(StorageUnavailable, match="no-such-bucket-here"):
            await storage.read("k")
        assert not await storage.bucket_exists()
    finally:
        await storage.close()


async def test_unreachable_endpoint_is_unavailable_and_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    storage = S3Storage(
        bucket="b",
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET,
        max_attempts=2,
        connect_timeout_s=1.0,
    )
    caplog.set_level(logging.DEBUG, logger="aethera")
    await storage.open()
    try:
        failures = []
        for call in (
            storage.ping,
            lambda: storage.read("k"),
            lambda: storage.save("k", b"1"),
            lambda: storage.stat("k"),
            lambda: storage.delete("k"),
        ):
            with pytest.raises(StorageUnavailable) as info:
                await call()
            failures.append(info.value)
        with pytest.raises(StorageUnavailable):
            [o async for o in storage.list()]
    finally:
        await storage.close()
    for text in [e.detail for e in failures] + [repr(e.to_dict()) for e in failures] + [caplog.text]:
        assert SECRET not in text
        assert ACCESS_KEY not in text
        assert endpoint not in text
    assert SECRET not in repr(storage) and ACCESS_KEY not in repr(storage)


async def test_unopened_storage_refuses_work() -> None:
    storage = S3Storage(bucket="b", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageUnavailable, match="not open"):
        await storage.read("k")


def test_construction_checks_its_options() -> None:
    with pytest.raises(ConfigError):
        S3Storage(bucket="")
    with pytest.raises(ConfigError):
        S3Storage(bucket="b", access_key_id="only-the-id")
    with pytest.raises(ConfigError):
        S3Storage(bucket="b", part_size=MIB)


async def test_presigned_url_checks_expiry(s3_storage: S3Storage) -> None:
    with pytest.raises(InvalidInput):
        await s3_storage.presigned_url("k", expires_s=0)
    with pytest.raises(InvalidInput):
        await s3_storage.presigned_url("k", expires_s=8 * 24 * 3600)


async def test_list_skips_keys_no_operation_could_name(s3_storage: S3Storage, s3_admin: Any, bucket: str) -> None:
    await s3_admin.put_object(Bucket=bucket, Key="p/../escape", Body=b"1")
    await s3_admin.put_object(Bucket=bucket, Key="p/a\\b", Body=b"1")
    await s3_storage.save("p/ok", b"1")
    assert [o.key async for o in s3_storage.list("p/")] == ["p/ok"]


async def test_stream_of_a_missing_key_raises_on_first_iteration(s3_storage: S3Storage) -> None:
    stream = s3_storage.stream("missing")  # nothing is requested yet
    with pytest.raises(ObjectNotFound):
        await anext(stream)
