"""The async storage Protocol every backend implements.

Keys are forward-slash relative paths such as `runs/3f2a…/results.json`. Both backends raise the same
errors (`aethera.errors`): `ObjectNotFound`, `InvalidKey`, `StorageUnavailable`, `StorageWriteFailed`.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec

DEFAULT_CHUNK_BYTES = 256 * 1024
MAX_PAGE_KEYS = 1000  # S3 answers at most 1,000 keys per ListObjectsV2 request


class ObjectStat(msgspec.Struct, frozen=True):
    """What a backend knows about one stored object."""

    key: str
    size: int
    etag: str | None = None
    modified: float | None = None  # seconds since the epoch, UTC


@runtime_checkable
class Storage(Protocol):
    """Async object storage over relative keys."""

    async def save(self, key: str, data: bytes | AsyncIterable[bytes]) -> ObjectStat:
        """Store `data` under `key` atomically: a reader sees the old object or the new one, never a mix."""
        ...

    async def read(self, key: str) -> bytes:
        """The whole object."""
        ...

    async def read_versioned(self, key: str) -> tuple[bytes, str]:
        """The whole object and its version tag (the ETag): what `save_if` compares against."""
        ...

    async def save_if(self, key: str, data: bytes, expected_etag: str | None) -> ObjectStat:
        """Store `data` only if the object is still the version the caller read (`expected_etag`), or,
        with `expected_etag=None`, only if no object exists yet. Raises `PreconditionFailed` otherwise.

        The comparison and the write are one atomic step (S3 conditional PUT: `If-Match` /
        `If-None-Match: *`; locally a compare-and-replace under an exclusive file lock), so of two
        writers that read the same version exactly one succeeds: the basis of fenced run records.
        """
        ...

    def stream(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK_BYTES, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The object's bytes `start` (inclusive) to `end` (exclusive; None = to the end), in chunks.

        Raises `ObjectNotFound` on first iteration when the key does not exist. Closing the iterator
        early (`aclose()`) releases every file handle or connection it holds.
        """
        ...

    async def exists(self, key: str) -> bool: ...

    async def stat(self, key: str) -> ObjectStat: ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectStat]:
        """Every object whose key starts with `prefix`, in key order, paginated underneath."""
        ...

    async def list_page(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = MAX_PAGE_KEYS
    ) -> builtins.list[ObjectStat]:
        """At most `limit` (1 to `MAX_PAGE_KEYS`) objects whose key starts with `prefix` and sorts after
        `start_after`, in key order: one request to the backend (S3 `ListObjectsV2` with `StartAfter` and
        `MaxKeys`), so a listing page costs the same however many keys follow it."""
        ...

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A URL a client can GET the object from without credentials, or None where unsupported."""
        ...

    async def ping(self) -> None:
        """Raise `StorageUnavailable` when the backend cannot be reached."""
        ...

    async def close(self) -> None:
        """Release pools, clients and threads."""
        ...
