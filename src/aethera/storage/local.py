"""Storage in a local directory, on aiofiles with a thread pool of its own.

Why a pool of its own: asyncio's default executor is shared with the streaming ZIP export, which
parks one of its threads per active download; file I/O queued behind those threads would deadlock
(see the environment notes). For the same reason files are closed with an explicit `await f.close()`
rather than `async with aiofiles.open(...)`, whose exit runs on the default executor.

Writes are atomic: the bytes go to a temp file in the target's directory, which is fsynced and then
renamed over the target (`os.replace`), and the directory is fsynced so the rename survives a crash.
A reader therefore sees the old object or the new one, never a torn one; of two concurrent writers,
the last rename wins whole.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import fcntl
import hashlib
import os
import stat as stat_mod
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiofiles
import aiofiles.os

from aethera.errors import (
    AetheraError,
    InvalidInput,
    InvalidKey,
    ObjectNotFound,
    PreconditionFailed,
    StorageUnavailable,
    StorageWriteFailed,
)
from aethera.storage.base import DEFAULT_CHUNK_BYTES, MAX_PAGE_KEYS, ObjectStat
from aethera.storage.keys import TEMP_PREFIX, split_prefix, validate_key, validate_page, validate_prefix

T = TypeVar("T")
_Entry = tuple[str, str, os.stat_result | None]  # (sort key, name, stat; None for a directory)

DEFAULT_THREADS = 8

# errno -> what the user is told; never the path, which exc.filename would carry
_WRITE_REFUSED = {
    errno.ENOSPC: "local storage is full (disk full)",
    errno.EDQUOT: "local storage quota exceeded (disk full)",
    errno.EACCES: "local storage refused the write (permission denied)",
    errno.EPERM: "local storage refused the write (permission denied)",
    errno.EROFS: "local storage is read-only (permission denied)",
    errno.EFBIG: "the object is too large for local storage (file too large)",
}
# a key whose parent is an object ("a" exists, save "a/b") or that is a prefix of others
_KEY_CONFLICT = {errno.ENOTDIR, errno.EEXIST, errno.EISDIR}
_NOT_FOUND = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def _etag(st: os.stat_result) -> str:
    # the inode changes with every atomic replace, so two writes of equal size in one tick differ
    raw = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _to_stat(key: str, st: os.stat_result) -> ObjectStat:
    return ObjectStat(key=key, size=st.st_size, etag=_etag(st), modified=st.st_mtime)


def _fsync_and_stat(fd: int) -> os.stat_result:
    os.fsync(fd)
    return os.fstat(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_follow(path: str, flags: int) -> int:
    # the path was resolved and checked; a symlink swapped in since then is refused (ELOOP), not followed
    return os.open(path, flags | os.O_NOFOLLOW)


def _check_range(chunk_size: int, start: int, end: int | None) -> None:
    if chunk_size <= 0:
        raise InvalidInput("chunk_size must be greater than 0")
    if start < 0:
        raise InvalidInput("range start must not be negative")
    if end is not None and end < start:
        raise InvalidInput("range end must not be before its start")


class LocalStorage:
    """The `Storage` Protocol over a directory: key `a/b.json` is the file `<base>/a/b.json`."""

    def __init__(
        self,
        base_path: str | os.PathLike[str],
        executor: ThreadPoolExecutor | None = None,
        *,
        max_threads: int = DEFAULT_THREADS,
    ) -> None:
        self._base = os.path.abspath(os.fspath(base_path))
        self._root: str | None = None  # the resolved base, known after the first operation
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_threads, thread_name_prefix="aethera-storage")
        self._closed = False

    # --- plumbing -------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _ready(self) -> str:
        if self._closed:
            raise StorageUnavailable("local storage is closed")
        if self._root is None:
            resolved: str = await self._run(os.path.realpath, self._base)
            self._root = resolved
            return resolved
        return self._root

    def _inside(self, root: str, real: str) -> bool:
        return real.startswith(root + os.sep) if root != os.sep else real != os.sep

    def _resolve(self, root: str, key: str) -> str:
        """The real path of a validated key; refuses keys that escape the root through a symlink.

        Files are then opened by this real path (the last component with O_NOFOLLOW). Swapping a
        directory inside the root for a symlink between this check and the open would need write
        access to the root itself, which only the service has."""
        real = os.path.realpath(os.path.join(root, *key.split("/")))
        if not self._inside(root, real):
            raise InvalidKey("key resolves outside the storage root (through a symbolic link)")
        return real

    def _resolve_link(self, root: str, key: str) -> str:
        """Like `_resolve`, but the last segment itself is not followed (delete removes a link,
        not what it points to)."""
        self._resolve(root, key)
        parent, _, name = key.rpartition("/")
        real_parent = os.path.realpath(os.path.join(root, *parent.split("/"))) if parent else root
        return os.path.join(real_parent, name)

    async def _path(self, key: str) -> str:
        root = await self._ready()
        return await self._run(self._resolve, root, key)

    @staticmethod
    def _read_error(exc: OSError, key: str) -> AetheraError:
        if exc.errno in _NOT_FOUND:
            return ObjectNotFound(f"no object stored under key {key!r}")
        if exc.errno == errno.ELOOP:
            return InvalidKey("key resolves through a symbolic-link loop")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return StorageUnavailable("local storage refused the read (permission denied)")
        return StorageUnavailable(f"local storage failed: {exc.strerror or 'I/O error'}")

    @staticmethod
    def _write_error(exc: OSError) -> AetheraError:
        if exc.errno in _WRITE_REFUSED:
            return StorageWriteFailed(_WRITE_REFUSED[exc.errno])
        if exc.errno in _KEY_CONFLICT:
            return StorageWriteFailed(
                "the key conflicts with a stored object (a parent of it is an object, "
                "or it is the prefix of other objects)"
            )
        if exc.errno == errno.ENAMETOOLONG:
            return InvalidKey("key is too long for the local file system")
        if exc.errno == errno.ELOOP:
            return InvalidKey("key resolves through a symbolic-link loop")
        return StorageUnavailable(f"local storage failed: {exc.strerror or 'I/O error'}")

    async def _discard(self, f: Any, tmp: str) -> None:
        """Close and remove a temp file after a failed or cancelled write."""
        with contextlib.suppress(OSError):
            await f.close()
        with contextlib.suppress(OSError):
            await aiofiles.os.remove(tmp, executor=self._executor)

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> LocalStorage:
        """Create the base directory if missing and check it is a writable directory."""
        if self._closed:
            raise StorageUnavailable("local storage is closed")
        try:
            await aiofiles.os.makedirs(self._base, exist_ok=True, executor=self._executor)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create the local storage root: {exc.strerror or 'I/O error'}") from None
        await self.ping()
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._own_executor:
            # threads finish the call in hand and exit; waiting here would block the loop
            self._executor.shutdown(wait=False)

    async def ping(self) -> None:
        root = await self._ready()
        await self._run(self._ping, root)

    @staticmethod
    def _ping(root: str) -> None:
        try:
            st = os.stat(root)
        except OSError:
            raise StorageUnavailable("local storage root does not exist") from None
        if not stat_mod.S_ISDIR(st.st_mode):
            raise StorageUnavailable("local storage root is not a directory")
        if not os.access(root, os.W_OK | os.X_OK):
            raise StorageUnavailable("local storage root is not writable (permission denied)")
        if os.statvfs(root).f_flag & os.ST_RDONLY:
            raise StorageUnavailable("local storage root is on a read-only file system")

    # --- objects --------------------------------------------------------------------------------

    async def save(self, key: str, data: bytes | AsyncIterable[bytes]) -> ObjectStat:
        key = validate_key(key)
        if not isinstance(data, (bytes, bytearray, memoryview)) and not hasattr(data, "__aiter__"):
            raise TypeError("data must be bytes or an async iterable of bytes")
        path = await self._path(key)
        parent = os.path.dirname(path)
        ex = self._executor
        try:
            await aiofiles.os.makedirs(parent, exist_ok=True, executor=ex)
            tmp = os.path.join(parent, TEMP_PREFIX + uuid.uuid4().hex)
            f = await aiofiles.open(tmp, "xb", executor=ex)
        except OSError as exc:
            raise self._write_error(exc) from None
        replaced = False
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                await f.write(data)
            else:
                async for chunk in data:
                    if chunk:
                        await f.write(chunk)
            await f.flush()
            st = await self._run(_fsync_and_stat, f.fileno())
            await f.close()
            await aiofiles.os.replace(tmp, path, executor=ex)
            replaced = True
            await self._run(_fsync_dir, parent)
        except BaseException as exc:
            if not replaced:
                # shielded so a second cancellation cannot leave the temp file behind
                await asyncio.shield(self._discard(f, tmp))
            if isinstance(exc, OSError):
                raise self._write_error(exc) from None
            raise
        return _to_stat(key, st)

    async def read(self, key: str) -> bytes:
        key = validate_key(key)
        path = await self._path(key)
        try:
            f = await aiofiles.open(path, "rb", opener=_no_follow, executor=self._executor)
        except OSError as exc:
            raise self._read_error(exc, key) from None
        try:
            data: bytes = await f.read()
            return data
        except OSError as exc:
            raise self._read_error(exc, key) from None
        finally:
            await asyncio.shield(f.close())

    async def read_versioned(self, key: str) -> tuple[bytes, str]:
        key = validate_key(key)
        path = await self._path(key)
        return await self._run(self._read_versioned, path, key)

    def _read_versioned(self, path: str, key: str) -> tuple[bytes, str]:
        try:
            fd = _no_follow(path, os.O_RDONLY)
        except OSError as exc:
            raise self._read_error(exc, key) from None
        try:
            # the tag of the file we opened: a replace since then swaps the inode, so it cannot match
            st = os.fstat(fd)
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
        except OSError as exc:
            raise self._read_error(exc, key) from None
        finally:
            os.close(fd)
        return data, _etag(st)

    async def save_if(self, key: str, data: bytes, expected_etag: str | None) -> ObjectStat:
        key = validate_key(key)
        path = await self._path(key)
        try:
            return await self._run(self._save_if, key, path, bytes(data), expected_etag)
        except OSError as exc:
            raise self._write_error(exc) from None

    def _save_if(self, key: str, path: str, data: bytes, expected: str | None) -> ObjectStat:
        """Compare-and-replace under an exclusive lock on a hidden sibling file.

        flock() serialises every conditional writer of this key, in this process and in any other on
        the machine (the API and the workers share a local storage root), and the replace itself is the
        usual atomic rename: the comparison and the write cannot interleave with another's."""
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        name = hashlib.blake2b(os.path.basename(path).encode(), digest_size=8).hexdigest()
        lock_fd = os.open(
            os.path.join(parent, f"{TEMP_PREFIX}lock-{name}"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
        )
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                st = os.lstat(path)
                current: str | None = _etag(st) if stat_mod.S_ISREG(st.st_mode) else None
            except FileNotFoundError:
                current = None
            if current != expected:
                what = "exists already" if expected is None else "changed since it was read"
                raise PreconditionFailed(f"the object under key {key!r} {what}")
            tmp = os.path.join(parent, TEMP_PREFIX + uuid.uuid4().hex)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                st_new = _fsync_and_stat(fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            os.close(fd)
            try:
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            _fsync_dir(parent)
            return _to_stat(key, st_new)
        finally:
            os.close(lock_fd)  # releases the lock

    def stream(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK_BYTES, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        # key and range are checked now; the file is opened lazily on first iteration
        key = validate_key(key)
        _check_range(chunk_size, start, end)
        return self._stream(key, chunk_size, start, end)

    async def _stream(self, key: str, chunk_size: int, start: int, end: int | None) -> AsyncIterator[bytes]:
        path = await self._path(key)
        try:
            f = await aiofiles.open(path, "rb", buffering=0, opener=_no_follow, executor=self._executor)
        except OSError as exc:
            raise self._read_error(exc, key) from None
        try:
            if start:
                await f.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                want = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = await f.read(want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        except OSError as exc:
            raise self._read_error(exc, key) from None
        finally:
            # runs on exhaustion, error, aclose() and cancellation alike
            await asyncio.shield(f.close())

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    async def stat(self, key: str) -> ObjectStat:
        key = validate_key(key)
        path = await self._path(key)
        try:
            st = await aiofiles.os.stat(path, executor=self._executor)
        except OSError as exc:
            raise self._read_error(exc, key) from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"no object stored under key {key!r}")
        return _to_stat(key, st)

    async def delete(self, key: str) -> None:
        key = validate_key(key)
        root = await self._ready()
        path = await self._run(self._resolve_link, root, key)
        try:
            await aiofiles.os.remove(path, executor=self._executor)
        except OSError as exc:
            if exc.errno in _NOT_FOUND:  # already gone, or a "directory" that is no object
                return
            raise self._write_error(exc) from None

    def list(self, prefix: str = "") -> AsyncIterator[ObjectStat]:
        prefix = validate_prefix(prefix)
        return self._list(prefix)

    async def _list(self, prefix: str) -> AsyncIterator[ObjectStat]:
        root = await self._ready()
        directory, partial = split_prefix(prefix)
        start = await self._run(self._resolve_dir, root, directory)
        if start is None:
            return
        rel = directory + "/" if directory else ""
        first = [e for e in await self._run(self._scan, root, start) if e[1].startswith(partial)]
        # depth-first over directories sorted by `name/` (files by `name`) yields keys in exactly
        # the order a sort of the full keys would give, without holding the whole tree
        stack: builtins.list[tuple[str, str, Iterator[_Entry]]] = [(rel, start, iter(first))]
        while stack:
            rel, dirpath, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            _, name, st = entry
            if st is None:
                sub = os.path.join(dirpath, name)
                stack.append((rel + name + "/", sub, iter(await self._run(self._scan, root, sub))))
                continue
            key = rel + name
            try:
                validate_key(key)
            except InvalidKey:
                continue  # a file put there by hand that no key can name
            yield _to_stat(key, st)

    async def list_page(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = MAX_PAGE_KEYS
    ) -> builtins.list[ObjectStat]:
        prefix = validate_prefix(prefix)
        start_after = validate_page(start_after, limit, MAX_PAGE_KEYS)
        root = await self._ready()
        # one thread hop for the whole page: a page walks few directories, but one of them may be big
        return await self._run(self._page, root, prefix, start_after, limit)

    def _page(self, root: str, prefix: str, start_after: str | None, limit: int) -> builtins.list[ObjectStat]:
        """The keys `list_page` answers, by a depth-first walk in key order that skips every directory
        sorting wholly before `start_after` and stats only the files it returns (an index directory
        holds one marker per record: statting each would make a page cost O(index))."""
        directory, partial = split_prefix(prefix)
        start = self._resolve_dir(root, directory)
        if start is None:
            return []
        after = start_after or ""
        out: builtins.list[ObjectStat] = []

        def walk(rel: str, dirpath: str, first: bool) -> bool:  # True once the page is full
            for _, name, is_dir in self._names(dirpath):
                if first and not name.startswith(partial):
                    continue
                key = rel + name
                if is_dir:
                    sub = key + "/"
                    if sub < after and not after.startswith(sub):
                        continue  # every key below sorts before start_after
                    if walk(sub, os.path.join(dirpath, name), False):
                        return True
                    continue
                if key <= after:
                    continue
                stat = self._page_stat(root, os.path.join(dirpath, name), key)
                if stat is not None:
                    out.append(stat)
                    if len(out) >= limit:
                        return True
            return False

        walk(directory + "/" if directory else "", start, True)
        return out

    @staticmethod
    def _names(dirpath: str) -> builtins.list[tuple[str, str, bool]]:
        """One directory's entries as (sort key, name, is a directory), sorted, without a stat each:
        links and files count as files here, and `_page_stat` checks them when they are returned."""
        out: builtins.list[tuple[str, str, bool]] = []
        try:
            with os.scandir(dirpath) as it:
                for e in it:
                    if e.name.startswith(TEMP_PREFIX):
                        continue
                    try:
                        is_dir = e.is_dir(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    out.append((e.name + "/" if is_dir else e.name, e.name, is_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageUnavailable(f"local storage failed: {exc.strerror or 'I/O error'}") from None
        out.sort(key=lambda entry: entry[0])
        return out

    def _page_stat(self, root: str, path: str, key: str) -> ObjectStat | None:
        """The stat of one listed file, or None for what `list` would skip (gone, a link out of the root,
        not a regular file, a name no key can have)."""
        try:
            validate_key(key)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if not self._inside(root, real):
                    return None
                st = os.stat(real)
            else:
                st = os.stat(path, follow_symlinks=False)
        except (InvalidKey, FileNotFoundError):
            return None
        except OSError as exc:
            raise StorageUnavailable(f"local storage failed: {exc.strerror or 'I/O error'}") from None
        return _to_stat(key, st) if stat_mod.S_ISREG(st.st_mode) else None

    def _resolve_dir(self, root: str, directory: str) -> str | None:
        if not directory:
            return root
        real = os.path.realpath(os.path.join(root, *directory.split("/")))
        if not self._inside(root, real):
            raise InvalidKey("prefix resolves outside the storage root (through a symbolic link)")
        return real if os.path.isdir(real) else None

    def _scan(self, root: str, dirpath: str) -> builtins.list[_Entry]:
        """One directory's entries as (sort key, name, stat or None for a directory), sorted."""
        out: builtins.list[_Entry] = []
        try:
            with os.scandir(dirpath) as it:
                for e in it:
                    if e.name.startswith(TEMP_PREFIX):
                        continue  # a write in progress, or left by a crash
                    try:
                        if e.is_symlink():
                            # followed only to files inside the root; directory links could loop
                            real = os.path.realpath(e.path)
                            if not self._inside(root, real):
                                continue
                            st = os.stat(real)
                            if stat_mod.S_ISREG(st.st_mode):
                                out.append((e.name, e.name, st))
                        elif e.is_dir(follow_symlinks=False):
                            out.append((e.name + "/", e.name, None))
                        elif e.is_file(follow_symlinks=False):
                            out.append((e.name, e.name, e.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue  # deleted while we listed
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageUnavailable(f"local storage failed: {exc.strerror or 'I/O error'}") from None
        out.sort(key=lambda entry: entry[0])
        return out

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        validate_key(key)
        return None  # a local directory has no URL a client could use
