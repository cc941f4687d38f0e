"""What only the local backend can get wrong: symlinks, file handles, write failures, its executor.

The tests run as root, which ignores file modes; write failures are therefore produced by means that
bind root too: a file where a directory must be, the file-size limit (EFBIG), a full tmpfs (ENOSPC)
and the immutable attribute (EPERM). The last two need mount/chattr and are skipped where missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import shutil
import signal
import subprocess
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aethera.errors import InvalidKey, ObjectNotFound, StorageUnavailable, StorageWriteFailed
from aethera.storage.keys import TEMP_PREFIX
from aethera.storage.local import LocalStorage

MIB = 1024 * 1024


def open_fds_to(path: Path) -> int:
    """How many of this process's file descriptors point at `path` (read from /proc/self/fd)."""
    target = str(path.resolve())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
    return count


@contextlib.contextmanager
def no_unclosed_files() -> Iterator[None]:
    """Fails when a file is released by garbage collection rather than closed (CPython would
    otherwise hide a missing close: the dropped generator frame frees the descriptor)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, [str(w.message) for w in unclosed]


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


# --- symlinks ------------------------------------------------------------------------------------


@pytest.fixture
def escape_links(tmp_path: Path, local_storage: LocalStorage) -> Path:
    """root/out -> a directory outside the root; root/secret -> a file outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not read")
    root = tmp_path / "root"
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "secret").symlink_to(outside / "secret.txt")
    (root / "d").mkdir()
    (root / "d" / "up").symlink_to("../../outside", target_is_directory=True)
    (root / "self").symlink_to(root, target_is_directory=True)  # resolves to the root itself
    return outside


@pytest.mark.parametrize("key", ["out/secret.txt", "out/new.txt", "secret", "d/up/secret.txt", "self"])
async def test_symlink_escaping_the_root_is_refused(
    local_storage: LocalStorage, escape_links: Path, tmp_path: Path, key: str
) -> None:
    before = sorted(os.listdir(escape_links))
    for call in (
        lambda: local_storage.read(key),
        lambda: local_storage.stat(key),
        lambda: local_storage.exists(key),
        lambda: local_storage.save(key, b"pwned"),
        lambda: local_storage.delete(key),
        lambda: collect(local_storage.stream(key)),
    ):
        with pytest.raises(InvalidKey) as info:
            await call()
        assert str(tmp_path) not in info.value.detail
    assert sorted(os.listdir(escape_links)) == before
    assert (escape_links / "secret.txt").read_bytes() == b"do not read"


async def test_listing_never_follows_links_out_of_the_root(local_storage: LocalStorage, escape_links: Path) -> None:
    await local_storage.save("d/real.txt", b"1")
    assert [o.key async for o in local_storage.list()] == ["d/real.txt"]
    with pytest.raises(InvalidKey):
        [o async for o in local_storage.list("out/")]


async def test_symlinks_inside_the_root_work(local_storage: LocalStorage, tmp_path: Path) -> None:
    root = tmp_path / "root"
    await local_storage.save("real/data.json", b"{}")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "link.json").symlink_to(root / "real" / "data.json")
    assert await local_storage.read("alias/data.json") == b"{}"
    assert await local_storage.read("link.json") == b"{}"
    # deleting a link removes the link, not what it points to
    await local_storage.delete("link.json")
    assert not (root / "link.json").is_symlink()
    assert await local_storage.read("real/data.json") == b"{}"


async def test_temp_files_and_foreign_files_are_not_listed(local_storage: LocalStorage, tmp_path: Path) -> None:
    root = tmp_path / "root"
    await local_storage.save("runs/a.json", b"1")
    (root / "runs" / f"{TEMP_PREFIX}deadbeef").write_bytes(b"half written")
    (root / "runs" / "back\\slash").write_bytes(b"no key can name this")
    os.mkfifo(root / "runs" / "fifo")
    assert [o.key async for o in local_storage.list()] == ["runs/a.json"]


# --- file handles --------------------------------------------------------------------------------


async def test_aclose_releases_the_file(local_storage: LocalStorage, tmp_path: Path) -> None:
    await local_storage.save("f.bin", os.urandom(2 * MIB))
    path = tmp_path / "root" / "f.bin"
    with no_unclosed_files():
        stream = local_storage.stream("f.bin", chunk_size=64 * 1024)
        await anext(stream)
        assert open_fds_to(path) == 1
        await stream.aclose()
        assert open_fds_to(path) == 0


async def test_breaking_out_under_aclosing_releases_the_file(local_storage: LocalStorage, tmp_path: Path) -> None:
    await local_storage.save("f.bin", os.urandom(MIB))
    path = tmp_path / "root" / "f.bin"
    with no_unclosed_files():
        async with contextlib.aclosing(local_storage.stream("f.bin", chunk_size=4096)) as stream:
            async for _ in stream:
                assert open_fds_to(path) == 1
                break
        assert open_fds_to(path) == 0


async def test_cancelled_reader_releases_the_file(local_storage: LocalStorage, tmp_path: Path) -> None:
    await local_storage.save("f.bin", os.urandom(MIB))
    path = tmp_path / "root" / "f.bin"
    started = asyncio.Event()

    async def slow_consumer() -> None:
        async with contextlib.aclosing(local_storage.stream("f.bin", chunk_size=4096)) as stream:
            async for _ in stream:
                started.set()
                await asyncio.Event().wait()  # stalls, as a slow client would

    with no_unclosed_files():
        task = asyncio.create_task(slow_consumer())
        await started.wait()
        assert open_fds_to(path) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_fds_to(path) == 0


async def test_reads_and_writes_do_not_leak_descriptors(local_storage: LocalStorage) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for i in range(50):
        await local_storage.save(f"k/{i}", b"x" * 1000)
        await local_storage.read(f"k/{i}")
        await collect(local_storage.stream(f"k/{i}", chunk_size=100))
        with pytest.raises(ObjectNotFound):
            await local_storage.read(f"missing/{i}")
    assert len(os.listdir("/proc/self/fd")) <= before + 2  # slack for other threads of the session


# --- write failures ------------------------------------------------------------------------------


async def test_parent_that_is_an_object_fails_the_write(local_storage: LocalStorage, tmp_path: Path) -> None:
    await local_storage.save("a", b"previous")
    with pytest.raises(StorageWriteFailed) as info:
        await local_storage.save("a/b", b"new")
    assert str(tmp_path) not in info.value.detail
    assert await local_storage.read("a") == b"previous"
    with pytest.raises(ObjectNotFound):
        await local_storage.read("a/b")


async def test_key_that_is_a_prefix_of_objects_fails_the_write(local_storage: LocalStorage, tmp_path: Path) -> None:
    await local_storage.save("dir/child", b"kept")
    with pytest.raises(StorageWriteFailed):
        await local_storage.save("dir", b"new")
    assert await local_storage.read("dir/child") == b"kept"
    assert leftovers(tmp_path / "root") == []


@contextlib.contextmanager
def file_size_limit(limit_bytes: int) -> Iterator[None]:
    """RLIMIT_FSIZE binds root too; writes past it fail with EFBIG (SIGXFSZ ignored meanwhile)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.parametrize("as_stream", [False, True])
async def test_failed_write_keeps_the_previous_version(
    local_storage: LocalStorage, tmp_path: Path, as_stream: bool
) -> None:
    previous = os.urandom(100_000)
    await local_storage.save("runs/r/results.json", previous)
    new = os.urandom(3 * MIB)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(new), 256 * 1024):
            yield new[i : i + 256 * 1024]

    with file_size_limit(MIB), pytest.raises(StorageWriteFailed) as info:
        await local_storage.save("runs/r/results.json", chunks() if as_stream else new)
    assert "file too large" in info.value.detail
    assert str(tmp_path) not in info.value.detail
    assert await local_storage.read("runs/r/results.json") == previous
    assert leftovers(tmp_path / "root" / "runs" / "r") == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real full disk (ENOSPC)."""
    mount_point = tmp_path / "root"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_disk_full_fails_the_write_and_keeps_the_previous_version(tiny_tmpfs: Path) -> None:
    storage = await LocalStorage(tiny_tmpfs).open()
    try:
        await storage.save("k", b"previous")
        with pytest.raises(StorageWriteFailed) as info:
            await storage.save("k", os.urandom(2 * MIB))
        assert "disk full" in info.value.detail
        assert str(tiny_tmpfs) not in info.value.detail
        assert await storage.read("k") == b"previous"
        assert leftovers(tiny_tmpfs) == []
        await storage.save("k", b"fits again")  # the failed write freed its space
        assert await storage.read("k") == b"fits again"
    finally:
        await storage.close()


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory with the immutable attribute: not even root may create files in it."""
    directory = tmp_path / "root" / "locked"
    directory.mkdir(parents=True)
    (directory / "k").write_bytes(b"previous")
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0
    ):
        pytest.skip("chattr +i is not supported here")
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=False)


async def test_permission_denied_fails_the_write(
    local_storage: LocalStorage, immutable_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(StorageWriteFailed) as info:
        await local_storage.save("locked/k", b"new")
    assert "permission denied" in info.value.detail
    assert str(tmp_path) not in info.value.detail
    assert await local_storage.read("locked/k") == b"previous"
    with pytest.raises(StorageWriteFailed):
        await local_storage.delete("locked/k")


async def test_failing_source_stream_leaves_nothing_behind(local_storage: LocalStorage, tmp_path: Path) -> None:
    await local_storage.save("s/k", b"previous")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * MIB
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        await local_storage.save("s/k", broken())
    assert await local_storage.read("s/k") == b"previous"
    assert leftovers(tmp_path / "root" / "s") == []


async def test_cancelled_write_leaves_nothing_behind(local_storage: LocalStorage, tmp_path: Path) -> None:
    await local_storage.save("s/k", b"previous")
    halfway = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"x" * MIB
        halfway.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(local_storage.save("s/k", stalls()))
    await halfway.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await local_storage.read("s/k") == b"previous"
    assert leftovers(tmp_path / "root" / "s") == []


# --- the executor --------------------------------------------------------------------------------


async def test_works_while_the_default_executor_is_saturated(local_storage: LocalStorage) -> None:
    """The streaming export parks default-executor threads; storage must not need one."""
    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(2)
    loop.set_default_executor(default)
    release = threading.Event()
    parked = [loop.run_in_executor(None, release.wait) for _ in range(2)]
    try:
        async with asyncio.timeout(30):  # a hang guard, not a speed assertion
            await local_storage.save("x/a", b"1" * 100_000)
            await local_storage.save("x/b", (c async for c in _chunks(b"2" * 300_000)))
            assert await local_storage.read("x/a") == b"1" * 100_000
            assert await collect(local_storage.stream("x/b", chunk_size=4096)) == b"2" * 300_000
            stream = local_storage.stream("x/b", chunk_size=4096)
            await anext(stream)
            await stream.aclose()
            assert [o.key async for o in local_storage.list("x/")] == ["x/a", "x/b"]
            await local_storage.delete("x/a")
            await local_storage.ping()
    finally:
        release.set()
        await asyncio.gather(*parked)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def test_a_given_executor_is_used_and_left_running(tmp_path: Path) -> None:
    executor = ThreadPoolExecutor(1, thread_name_prefix="given")
    names: list[str] = []
    storage = await LocalStorage(tmp_path / "root", executor=executor).open()
    await storage.save("k", b"1")
    await storage.close()
    executor.submit(lambda: names.append(threading.current_thread().name)).result()
    assert names and names[0].startswith("given")  # still usable after the storage closed
    executor.shutdown()


# --- ping and open -------------------------------------------------------------------------------


async def test_ping_reports_a_missing_or_unusable_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    storage = await LocalStorage(root).open()
    try:
        shutil.rmtree(root)
        with pytest.raises(StorageUnavailable) as info:
            await storage.ping()
        assert str(tmp_path) not in info.value.detail
        root.write_bytes(b"a file where the root should be")
        with pytest.raises(StorageUnavailable):
            await storage.ping()
    finally:
        await storage.close()


async def test_open_creates_the_root(tmp_path: Path) -> None:
    storage = await LocalStorage(tmp_path / "a" / "b" / "root").open()
    await storage.save("k", b"1")
    assert (tmp_path / "a" / "b" / "root" / "k").read_bytes() == b"1"
    await storage.close()


async def test_many_more_open_streams_than_threads(tmp_path: Path) -> None:
    """An open stream holds a file, not a thread: 40 interleaved downloads on a 2-thread pool."""
    storage = await LocalStorage(tmp_path / "root", max_threads=2).open()
    try:
        data = os.urandom(256 * 1024)
        await storage.save("shared.bin", data)

        async def download() -> bytes:
            parts = []
            async for chunk in storage.stream("shared.bin", chunk_size=8192):
                parts.append(chunk)
                await asyncio.sleep(0)  # a slow client: every stream stays open across the others
            return b"".join(parts)

        async with asyncio.timeout(60):  # a hang guard, not a speed assertion
            results = await asyncio.gather(*(download() for _ in range(40)))
        assert all(r == data for r in results)
    finally:
        await storage.close()
