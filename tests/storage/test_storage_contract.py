"""The storage contract, run against both backends (local directory and moto's S3 server)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from aethera.errors import InvalidInput, InvalidKey, ObjectNotFound, PreconditionFailed, StorageUnavailable
from aethera.storage.base import ObjectStat, Storage

MIB = 1024 * 1024


async def chunks_of(data: bytes, sizes: tuple[int, ...] = (MIB, 100_003, 7)) -> AsyncIterator[bytes]:
    """`data` as an async stream of uneven chunks, yielding to the loop between them."""
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1
        await asyncio.sleep(0)


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def keys_of(storage: Storage, prefix: str = "") -> list[str]:
    return [o.key async for o in storage.list(prefix)]


# --- round trips ---------------------------------------------------------------------------------


async def test_empty_object(storage: Storage) -> None:
    saved = await storage.save("runs/empty.bin", b"")
    assert saved == ObjectStat(key="runs/empty.bin", size=0, etag=saved.etag, modified=saved.modified)
    assert await storage.read("runs/empty.bin") == b""
    assert await collect(storage.stream("runs/empty.bin")) == b""
    assert await storage.exists("runs/empty.bin")
    assert (await storage.stat("runs/empty.bin")).size == 0
    assert [(o.key, o.size) async for o in storage.list("runs/")] == [("runs/empty.bin", 0)]


async def test_empty_stream_saves_an_empty_object(storage: Storage) -> None:
    await storage.save("e", chunks_of(b""))
    assert await storage.read("e") == b""


async def test_12_mib_streamed_in_and_out(storage: Storage) -> None:
    data = os.urandom(12 * MIB + 12_345)
    saved = await storage.save("big/object.bin", chunks_of(data))
    assert saved.size == len(data)

    digest, total, largest = hashlib.sha256(), 0, 0
    async for chunk in storage.stream("big/object.bin", chunk_size=MIB):
        digest.update(chunk)
        total += len(chunk)
        largest = max(largest, len(chunk))
    assert total == len(data)
    assert largest <= MIB
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()

    stat = await storage.stat("big/object.bin")
    assert stat.size == len(data)
    assert stat.etag
    assert stat.modified is not None and stat.modified > 0


async def test_bytes_round_trip_and_overwrite(storage: Storage) -> None:
    first = await storage.save("p/a.json", b'{"v": 1}')
    second = await storage.save("p/a.json", b'{"v": 2}')
    assert await storage.read("p/a.json") == b'{"v": 2}'
    # same size, new content: the etag must still change
    assert first.etag != second.etag
    assert (await storage.stat("p/a.json")).etag == second.etag


async def test_memoryview_and_bytearray_are_accepted(storage: Storage) -> None:
    await storage.save("m", memoryview(b"abcdef")[1:4])
    await storage.save("b", bytearray(b"xyz"))
    assert await storage.read("m") == b"bcd"
    assert await storage.read("b") == b"xyz"


async def test_unicode_and_space_keys(storage: Storage) -> None:
    key = "runs/é ü/日本 data.json"
    await storage.save(key, b"{}")
    assert await storage.read(key) == b"{}"
    assert await keys_of(storage, "runs/é") == [key]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (0, 1),
        (10, 20),
        (0, 1000),
        (999, None),
        (999, 1000),
        (500, 5000),
        (3, 3),
        (1000, None),
        (2000, None),
        (2000, 3000),
    ],
)
async def test_ranged_stream(storage: Storage, start: int, end: int | None) -> None:
    data = bytes(range(256)) * 3 + os.urandom(232)  # 1000 bytes
    await storage.save("r.bin", data)
    got = await collect(storage.stream("r.bin", chunk_size=7, start=start, end=end))
    assert got == data[start:end]


async def test_bad_ranges_are_refused(storage: Storage) -> None:
    await storage.save("r", b"abc")
    with pytest.raises(InvalidInput):
        storage.stream("r", start=-1)
    with pytest.raises(InvalidInput):
        storage.stream("r", start=5, end=4)
    with pytest.raises(InvalidInput):
        storage.stream("r", chunk_size=0)


# --- listing -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_list_1500_keys_across_pages(storage: Storage) -> None:
    expected = [f"many/{i:05d}.json" for i in range(1500)]
    others = ["many-not/x", "man", "other/many/x"]
    gate = asyncio.Semaphore(32)

    async def put(key: str) -> None:
        async with gate:
            await storage.save(key, key.encode())

    # saved in shuffled order so that order on listing is the backend's doing
    await asyncio.gather(*(put(k) for k in expected[::-1] + others))

    listed = [o async for o in storage.list("many/")]
    assert [o.key for o in listed] == expected  # S3 answers 1000 per page: two pages here
    assert all(o.size == len(o.key) for o in listed)
    assert await keys_of(storage, "many") == ["many-not/x", *expected]  # "-" sorts before "/"
    everything = await keys_of(storage)
    assert everything == sorted(expected + others)
    assert await keys_of(storage, "many/0149") == [f"many/{i:05d}.json" for i in range(1490, 1500)]
    assert await keys_of(storage, "nothing/") == []


async def test_list_is_in_key_order_with_tricky_names(storage: Storage) -> None:
    # '-' < '/' < '0' < 'b': a directory "a" sorts between "a-b" and "a0"
    keys = ["x/ab", "x/a0", "x/a/b", "x/a-b", "x/a/a/z", "x/Z", "x/é"]
    for key in keys:
        await storage.save(key, b".")
    assert await keys_of(storage, "x/") == sorted(keys)
    assert await keys_of(storage, "x/a") == sorted(k for k in keys if k.startswith("x/a"))


async def test_listing_a_hostile_prefix_is_refused(storage: Storage) -> None:
    for prefix in ("../", "/etc", "a/../..", "a\\b", "a\x00", "C:/"):
        with pytest.raises(InvalidKey):
            storage.list(prefix)


async def test_list_page_is_one_slice_of_the_listing(storage: Storage) -> None:
    # the same tricky order as above, plus a directory that sorts wholly before the start
    keys = ["p/ab", "p/a0", "p/a/b", "p/a-b", "p/a/a/z", "p/Z", "p/é", "p/0/0", "p/0/1", "pq"]
    for key in keys:
        await storage.save(key, b"..")
    every = sorted(k for k in keys if k.startswith("p/"))
    assert [o.key for o in await storage.list_page("p/")] == every
    assert all(o.size == 2 for o in await storage.list_page("p/"))
    for i, after in enumerate(every):
        for limit in (1, 2, 100):
            page = await storage.list_page("p/", start_after=after, limit=limit)
            assert [o.key for o in page] == every[i + 1 : i + 1 + limit], (after, limit)
    # a start that names no key, inside and outside a "directory", and before the prefix
    assert [o.key for o in await storage.list_page("p/", start_after="p/a/a")] == every[every.index("p/a/a/z") :]
    assert [o.key for o in await storage.list_page("p/", start_after="p/a/c", limit=2)] == ["p/a0", "p/ab"]
    assert [o.key for o in await storage.list_page("p/", start_after="a", limit=1)] == every[:1]
    assert await storage.list_page("p/", start_after="q") == []
    assert [o.key for o in await storage.list_page("p/a", limit=3)] == ["p/a-b", "p/a/a/z", "p/a/b"]
    assert await storage.list_page("nothing/") == []


async def test_list_page_checks_its_arguments(storage: Storage) -> None:
    for limit in (0, -1, 1001, True, 2.0):
        with pytest.raises(InvalidKey):
            await storage.list_page("p/", limit=limit)  # type: ignore[arg-type]
    for bad in ("a\x00", 7):
        with pytest.raises(InvalidKey):
            await storage.list_page("p/", start_after=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await storage.list_page("../")


# --- missing objects and deletes -----------------------------------------------------------------


async def test_not_found(storage: Storage) -> None:
    await storage.save("present/x", b"1")
    for key in ("absent", "present/y", "present/x/deeper", "present"):
        with pytest.raises(ObjectNotFound):
            await storage.read(key)
        with pytest.raises(ObjectNotFound):
            await storage.stat(key)
        with pytest.raises(ObjectNotFound):
            await collect(storage.stream(key))
        with pytest.raises(ObjectNotFound):
            await collect(storage.stream(key, start=1, end=1))
        assert not await storage.exists(key)


async def test_delete_is_idempotent(storage: Storage) -> None:
    await storage.save("d/k", b"1")
    await storage.save("d/keep", b"2")
    await storage.delete("d/k")
    await storage.delete("d/k")
    await storage.delete("never/was")
    assert not await storage.exists("d/k")
    with pytest.raises(ObjectNotFound):
        await storage.read("d/k")
    assert await keys_of(storage, "d/") == ["d/keep"]


# --- hostile keys --------------------------------------------------------------------------------

HOSTILE_KEYS = [
    "../x",
    "a/../../x",
    "..",
    "a/..",
    ".",
    "./a",
    "a/./b",  # traversal and dot segments
    "/etc/passwd",
    "/x",
    "/",  # absolute
    "C:\\x",
    "C:/x",
    "c:x",  # drive letters
    "a\\b",
    "..\\..\\x",  # backslashes
    "a\x00b",
    "\x00",  # NUL
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "a\x85b",  # control characters
    "",
    "a//b",
    "a/",
    "//x",  # empty segments, trailing slash
    "x" * 1025,
    "a/" + "b" * 256,
    "é" * 513,  # overlong key or segment (bytes, not characters)
    ".aethera-tmp.0123",
    "a/.aethera-tmp.x",  # the local backend's temp-file names
    "\ud800",  # not encodable as UTF-8
    None,
    b"bytes",  # not text at all
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=[repr(k)[:24] for k in HOSTILE_KEYS])
async def test_hostile_key_is_refused(storage: Storage, backend: str, key: object, tmp_path: object) -> None:
    hostile: str = key  # type: ignore[assignment]
    errors = []
    for call in (
        lambda: storage.save(hostile, b"pwned"),
        lambda: storage.save(hostile, chunks_of(b"pwned")),
        lambda: storage.read(hostile),
        lambda: storage.stat(hostile),
        lambda: storage.exists(hostile),
        lambda: storage.delete(hostile),
        lambda: collect(storage.stream(hostile)),
        lambda: storage.presigned_url(hostile),
    ):
        with pytest.raises(InvalidKey) as info:
            await call()
        errors.append(info.value)
    assert all(e.code == "invalid_key" for e in errors)
    assert all(str(tmp_path) not in e.detail for e in errors)  # no server path in any message
    assert await keys_of(storage) == []  # nothing was written anywhere we can see
    if backend == "local":
        # ...nor anywhere outside the root
        assert sorted(os.listdir(str(tmp_path))) == ["root"]


# --- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_writers_leave_one_whole_version(storage: Storage) -> None:
    old = b"o" * (MIB + 1)
    a = os.urandom(8 * MIB)
    b = os.urandom(8 * MIB)
    await storage.save("same/key", old)
    allowed = {hashlib.sha256(v).hexdigest() for v in (old, a, b)}
    seen: list[str] = []
    writing = True

    async def reader() -> None:
        while writing:
            seen.append(hashlib.sha256(await storage.read("same/key")).hexdigest())
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader()) for _ in range(2)]
    try:
        # chunks interleave on the loop: both writes are in flight at once
        await asyncio.gather(
            storage.save("same/key", chunks_of(a, (256 * 1024,))),
            storage.save("same/key", chunks_of(b, (300_000,))),
        )
    finally:
        writing = False
        await asyncio.gather(*readers)

    final = await storage.read("same/key")
    assert final in (a, b)
    assert set(seen) <= allowed  # no reader ever saw a torn or mixed object
    assert await keys_of(storage, "same/") == ["same/key"]  # no temp file or part left visible


# --- streams, URLs, lifecycle --------------------------------------------------------------------


async def test_early_close_of_a_stream_leaves_the_backend_usable(storage: Storage) -> None:
    data = os.urandom(3 * MIB)
    await storage.save("s", data)
    for _ in range(12):
        stream = storage.stream("s", chunk_size=64 * 1024)
        first = await anext(stream)  # chunks are at most chunk_size, S3's may be shorter
        assert first and data.startswith(first)
        await stream.aclose()
    assert await storage.read("s") == data


async def test_presigned_url(storage: Storage, backend: str) -> None:
    data = os.urandom(300_000)
    await storage.save("share/report.html", data)
    url = await storage.presigned_url("share/report.html", expires_s=600)
    if backend == "local":
        assert url is None
        return
    assert url is not None and url.startswith("http")
    # no credentials: the URL carries the grant
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == data


async def test_ping(storage: Storage) -> None:
    await storage.ping()


async def test_closed_storage_refuses_work(storage: Storage) -> None:
    await storage.save("k", b"1")
    await storage.close()
    with pytest.raises(StorageUnavailable):
        await storage.read("k")
    with pytest.raises(StorageUnavailable):
        await storage.save("k", b"2")
    await storage.close()  # closing twice is harmless


# --- conditional writes (the basis of fenced run records) ----------------------------------------


async def test_create_only_write_refuses_an_existing_object(storage: Storage) -> None:
    first = await storage.save_if("runs/r/run.json", b"one", None)
    with pytest.raises(PreconditionFailed):
        await storage.save_if("runs/r/run.json", b"two", None)
    data, etag = await storage.read_versioned("runs/r/run.json")
    assert data == b"one" and etag == first.etag


async def test_write_if_match_refuses_a_stale_version(storage: Storage) -> None:
    await storage.save_if("k.json", b"v1", None)
    _, seen = await storage.read_versioned("k.json")
    newer = await storage.save_if("k.json", b"v2", seen)
    with pytest.raises(PreconditionFailed):
        await storage.save_if("k.json", b"v3 from a stale reader", seen)
    data, etag = await storage.read_versioned("k.json")
    assert data == b"v2" and etag == newer.etag != seen
    # a plain overwrite (not conditional) also moves the version on (S3's tag is the content's MD5, so
    # the same bytes again would keep it: run records never repeat, their updated_at changes)
    await storage.save("k.json", b"v2, rewritten")
    with pytest.raises(PreconditionFailed):
        await storage.save_if("k.json", b"v4", etag)


async def test_write_if_match_on_a_deleted_object_is_refused(storage: Storage) -> None:
    stat = await storage.save_if("gone.json", b"x", None)
    await storage.delete("gone.json")
    with pytest.raises(PreconditionFailed):
        await storage.save_if("gone.json", b"y", stat.etag)
    with pytest.raises(ObjectNotFound):
        await storage.read_versioned("gone.json")


async def test_of_concurrent_conditional_writers_exactly_one_wins(storage: Storage) -> None:
    """Twenty writers read the same version and race to replace it: one succeeds, nineteen are refused,
    and the object holds the winner's bytes (seeded, repeated over several rounds)."""
    import random

    rng = random.Random(11)
    await storage.save_if("race.json", b"start", None)
    for round_no in range(5):
        _, etag = await storage.read_versioned("race.json")
        writers = list(range(20))
        rng.shuffle(writers)

        async def write(n: int) -> int | None:
            try:
                await storage.save_if("race.json", f"round {round_no} writer {n}".encode(), etag)
                return n
            except PreconditionFailed:
                return None

        results = await asyncio.gather(*(write(n) for n in writers))
        winners = [n for n in results if n is not None]
        assert len(winners) == 1, results
        assert await storage.read("race.json") == f"round {round_no} writer {winners[0]}".encode()


async def test_conditional_writes_check_keys(storage: Storage) -> None:
    for bad in ("../escape", "/abs", "a//b"):
        with pytest.raises(InvalidKey):
            await storage.save_if(bad, b"x", None)
        with pytest.raises(InvalidKey):
            await storage.read_versioned(bad)
