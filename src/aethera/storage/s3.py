"""Storage in an S3 bucket (AWS or any S3-compatible endpoint), on aioboto3.

One client per process: `await S3Storage(...).open()` creates it (the API does so in its cleanup_ctx,
the worker at start-up) and `close()` releases its connection pool. Every botocore failure is mapped
to the storage errors of `aethera.errors`; messages carry the operation and S3's error code, never
credentials, the endpoint's address or botocore's own text.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from aethera.errors import (
    AetheraError,
    ConfigError,
    InvalidInput,
    InvalidKey,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
    StorageWriteFailed,
)
from aethera.settings import Settings
from aethera.storage.base import DEFAULT_CHUNK_BYTES, MAX_PAGE_KEYS, ObjectStat
from aethera.storage.keys import validate_key, validate_page, validate_prefix

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_BYTES = 5 * MIB  # S3 refuses smaller parts (except the last)
DEFAULT_PART_BYTES = 8 * MIB
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 limit
MAX_PUT_BYTES = 5 * 1024 * MIB  # S3's limit on a single PUT

# what can go wrong talking to S3; CancelledError is deliberately not among them
_FAILURES = (ClientError, BotoCoreError, aiohttp.ClientError, OSError, asyncio.TimeoutError)
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_WRITE_REFUSED = {"EntityTooLarge", "QuotaExceeded", "InvalidStorageClass"}
# 4xx answers that are worth asking again (S3 sends RequestTimeout as a 400); every other 4xx is final
_TRANSIENT_STATUS = {408, 409, 429}
_TRANSIENT_CODES = {
    "RequestTimeout",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "OperationAborted",
    "ConditionalRequestConflict",
}


def _etag(raw: str | None) -> str | None:
    return raw.strip('"') if raw else None


def _object_stat(obj: dict[str, Any]) -> ObjectStat | None:
    """One entry of a ListObjectsV2 answer; None for a key put there by another tool that no operation
    here could name."""
    key = obj["Key"]
    try:
        validate_key(key)
    except InvalidKey:
        return None
    modified = obj.get("LastModified")
    return ObjectStat(
        key=key,
        size=int(obj["Size"]),
        etag=_etag(obj.get("ETag")),
        modified=modified.timestamp() if modified is not None else None,
    )


def _error_code(exc: ClientError) -> tuple[str, int | None]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


async def _slices(view: memoryview, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])


class S3Storage:
    """The `Storage` Protocol over one bucket; keys are object keys unchanged."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str = "us-east-1",
        part_size: int = DEFAULT_PART_BYTES,
        multipart_threshold: int | None = None,
        max_pool_connections: int = 128,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 2,
    ) -> None:
        if not bucket:
            raise ConfigError("S3_BUCKET is required for S3 storage")
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together")
        if part_size < MIN_PART_BYTES:
            raise ConfigError(f"S3 multipart part size must be at least {MIN_PART_BYTES} bytes")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        # a stream longer than this goes up in parts; shorter ones in one PUT
        self.multipart_threshold = multipart_threshold if multipart_threshold is not None else part_size
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._config = AioConfig(
            s3={"addressing_style": "path"},  # works with local endpoints without wildcard DNS
            # one quick retry for a reset or a 5xx; longer outages are the caller's to retry (the worker
            # backs off per run), so an API request answers 503 within seconds instead of hanging
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # an export download holds a connection for as long as its client reads; the API bounds
            # every call, waiting for a free connection included (storage/deadline.py), so the pool is
            # sized for many concurrent downloads (connections open only when needed)
            max_pool_connections=max_pool_connections,
            signature_version="s3v4",
            # S3-compatible servers differ in their support of the newer default checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> S3Storage:
        options: dict[str, Any] = {
            "bucket": settings.s3_bucket or "",
            "endpoint_url": settings.s3_endpoint_url,
            "access_key_id": settings.s3_access_key_id,
            "secret_access_key": settings.s3_secret_access_key,
            "region": settings.s3_region,
        }
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:  # credentials never reach a log line
        return f"S3Storage(bucket={self.bucket!r}, region={self.region!r})"

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> S3Storage:
        """Create the process's client (its connection pool). Idempotent."""
        if self._client is not None:
            return self
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                self._session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
            )
        except _FAILURES as exc:
            await stack.aclose()
            raise self._map(exc, "client set-up") from None
        self._stack = stack
        return self

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> S3Storage:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _need(self) -> Any:
        if self._client is None:
            raise StorageUnavailable("S3 storage is not open")
        return self._client

    async def ping(self) -> None:
        client = self._need()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except _FAILURES as exc:
            raise self._map(exc, "HeadBucket") from None

    async def bucket_exists(self) -> bool:
        """False when the bucket is missing; other failures raise as `ping` does."""
        client = self._need()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code, status = _error_code(exc)
            if code in ("NoSuchBucket", "404", "NotFound") or status == 404:
                return False
            raise self._map(exc, "HeadBucket") from None
        except _FAILURES as exc:
            raise self._map(exc, "HeadBucket") from None
        return True

    # --- errors ---------------------------------------------------------------------------------

    def _map(self, exc: BaseException, op: str, key: str | None = None, *, writing: bool = False) -> AetheraError:
        if isinstance(exc, ClientError):
            code, status = _error_code(exc)
            if code == "NoSuchBucket" or (key is None and (code in _NOT_FOUND or status == 404)):
                return StorageUnavailable(f"S3 bucket {self.bucket!r} does not exist")
            if code in _NOT_FOUND or status == 404:
                return ObjectNotFound(f"no object stored under key {key!r}")
            if code in _DENIED or status == 403:
                if writing:
                    return StorageWriteFailed(f"S3 refused the write (permission denied, {op})")
                return StorageUnavailable(f"S3 refused the request (permission denied, {op})")
            if code in _WRITE_REFUSED:
                return StorageWriteFailed(f"S3 refused the write ({code})")
            if code == "KeyTooLongError":
                return InvalidKey("key is too long for S3")
            if (
                isinstance(status, int)
                and 400 <= status < 500
                and status not in _TRANSIENT_STATUS
                and code not in _TRANSIENT_CODES
            ):
                # the request itself was refused: sending it again gets the same answer
                if writing:
                    return StorageWriteFailed(f"S3 refused the write ({code or status}, {op})")
                return StorageError(f"S3 refused the request ({code or status}, {op})")
            return StorageUnavailable(f"S3 {op} failed ({code or status or 'unknown error'})")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageUnavailable("S3 credentials are missing or incomplete")
        return StorageUnavailable(f"S3 endpoint unreachable or not responding ({op})")

    # --- objects --------------------------------------------------------------------------------

    async def save(self, key: str, data: bytes | bytearray | memoryview | AsyncIterable[bytes]) -> ObjectStat:
        key = validate_key(key)
        client = self._need()
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) <= MAX_PUT_BYTES:
                return await self._put(client, key, bytes(data) if isinstance(data, memoryview) else data)
            data = _slices(memoryview(data), self.part_size)  # too big for one PUT
        if not hasattr(data, "__aiter__"):
            raise TypeError("data must be bytes or an async iterable of bytes")
        iterator = data.__aiter__()
        buf = bytearray()
        while len(buf) < self.multipart_threshold:
            chunk = await anext(iterator, None)
            if chunk is None:
                return await self._put(client, key, bytes(buf))  # small stream: one PUT
            buf += chunk
        return await self._multipart(client, key, buf, iterator)

    async def _put(self, client: Any, key: str, body: bytes | bytearray) -> ObjectStat:
        try:
            resp = await client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except _FAILURES as exc:
            raise self._map(exc, "PutObject", key, writing=True) from None
        return ObjectStat(key=key, size=len(body), etag=_etag(resp.get("ETag")))

    async def _multipart(self, client: Any, key: str, buf: bytearray, iterator: AsyncIterator[bytes]) -> ObjectStat:
        try:
            created = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        except _FAILURES as exc:
            raise self._map(exc, "CreateMultipartUpload", key, writing=True) from None
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        size = 0

        async def send(payload: bytes) -> None:
            number = len(parts) + 1
            resp = await client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=payload
            )
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})

        try:
            while True:
                while len(buf) >= self.part_size:
                    payload = bytes(buf[: self.part_size])
                    del buf[: self.part_size]
                    size += len(payload)
                    await send(payload)
                chunk = await anext(iterator, None)
                if chunk is None:
                    break
                buf += chunk
            if buf or not parts:  # the last part may be smaller than the minimum
                size += len(buf)
                await send(bytes(buf))
            resp = await client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:
            # nothing half-written may stay behind, whether S3, the source stream or a cancel failed
            await asyncio.shield(self._abort(client, key, upload_id))
            if isinstance(exc, _FAILURES):
                raise self._map(exc, "multipart upload", key, writing=True) from None
            raise
        return ObjectStat(key=key, size=size, etag=_etag(resp.get("ETag")))

    async def _abort(self, client: Any, key: str, upload_id: str) -> None:
        try:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except _FAILURES as exc:
            code = _error_code(exc)[0] if isinstance(exc, ClientError) else type(exc).__name__
            log.warning(
                "could not abort the multipart upload of %r (%s); a bucket lifecycle rule "
                "for incomplete uploads will remove it",
                key,
                code,
            )

    async def read(self, key: str) -> bytes:
        return (await self.read_versioned(key))[0]

    async def read_versioned(self, key: str) -> tuple[bytes, str]:
        key = validate_key(key)
        client = self._need()
        try:
            resp = await client.get_object(Bucket=self.bucket, Key=key)
            body = resp["Body"]
            async with body:
                data: bytes = await body.read()
        except _FAILURES as exc:
            raise self._map(exc, "GetObject", key) from None
        return data, _etag(resp.get("ETag")) or ""

    async def save_if(self, key: str, data: bytes, expected_etag: str | None) -> ObjectStat:
        key = validate_key(key)
        client = self._need()
        condition = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": f'"{expected_etag}"'}
        try:
            resp = await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), **condition)
        except ClientError as exc:
            code, status = _error_code(exc)
            # 412: the condition failed; 409: a concurrent conditional write won; 404: If-Match on an
            # object deleted meanwhile. Each means "not the version you read": read again.
            if (
                status in (409, 412)
                or code in ("PreconditionFailed", "ConditionalRequestConflict")
                or (expected_etag is not None and (code in _NOT_FOUND or status == 404))
            ):
                what = "exists already" if expected_etag is None else "changed since it was read"
                raise PreconditionFailed(f"the object under key {key!r} {what}") from None
            raise self._map(exc, "PutObject", key, writing=True) from None
        except _FAILURES as exc:
            raise self._map(exc, "PutObject", key, writing=True) from None
        return ObjectStat(key=key, size=len(data), etag=_etag(resp.get("ETag")))

    def stream(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK_BYTES, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        key = validate_key(key)
        if chunk_size <= 0:
            raise InvalidInput("chunk_size must be greater than 0")
        if start < 0:
            raise InvalidInput("range start must not be negative")
        if end is not None and end < start:
            raise InvalidInput("range end must not be before its start")
        return self._stream(key, chunk_size, start, end)

    async def _stream(self, key: str, chunk_size: int, start: int, end: int | None) -> AsyncIterator[bytes]:
        client = self._need()
        if end is not None and end == start:
            await self.stat(key)  # an empty range still needs the object to exist
            return
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            resp = await client.get_object(**params)
        except ClientError as exc:
            if _error_code(exc)[0] == "InvalidRange":
                return  # the range starts at or past the end of the object: no bytes
            raise self._map(exc, "GetObject", key) from None
        except _FAILURES as exc:
            raise self._map(exc, "GetObject", key) from None
        body = resp["Body"]
        try:
            # leaving this block (exhausted, aclose(), error, cancel) releases the connection;
            # an unread remainder makes aiohttp close it instead of reusing it
            async with body:
                async for chunk in body.iter_chunks(chunk_size):
                    yield chunk
        except _FAILURES as exc:
            raise self._map(exc, "GetObject", key) from None

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    async def stat(self, key: str) -> ObjectStat:
        key = validate_key(key)
        client = self._need()
        try:
            resp = await client.head_object(Bucket=self.bucket, Key=key)
        except _FAILURES as exc:
            raise self._map(exc, "HeadObject", key) from None
        modified = resp.get("LastModified")
        return ObjectStat(
            key=key,
            size=int(resp["ContentLength"]),
            etag=_etag(resp.get("ETag")),
            modified=modified.timestamp() if modified is not None else None,
        )

    async def delete(self, key: str) -> None:
        key = validate_key(key)
        client = self._need()
        try:
            await client.delete_object(Bucket=self.bucket, Key=key)  # S3 deletes are idempotent
        except _FAILURES as exc:
            raise self._map(exc, "DeleteObject", key, writing=True) from None

    def list(self, prefix: str = "") -> AsyncIterator[ObjectStat]:
        prefix = validate_prefix(prefix)
        return self._list(prefix)

    async def _list(self, prefix: str) -> AsyncIterator[ObjectStat]:
        client = self._need()
        paginator = client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix).__aiter__()
        while True:
            try:
                page = await anext(pages, None)
            except _FAILURES as exc:
                raise self._map(exc, "ListObjectsV2") from None
            if page is None:
                return
            for obj in page.get("Contents", ()):
                stat = _object_stat(obj)
                if stat is not None:
                    yield stat

    async def list_page(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = MAX_PAGE_KEYS
    ) -> builtins.list[ObjectStat]:
        prefix = validate_prefix(prefix)
        start_after = validate_page(start_after, limit, MAX_PAGE_KEYS)
        client = self._need()
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if start_after:
            args["StartAfter"] = start_after
        try:
            page = await client.list_objects_v2(**args)
        except _FAILURES as exc:
            raise self._map(exc, "ListObjectsV2") from None
        return [stat for obj in page.get("Contents", ()) if (stat := _object_stat(obj)) is not None]

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        key = validate_key(key)
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise InvalidInput(f"expires_s must be between 1 and {MAX_PRESIGN_S}")
        client = self._need()
        try:
            url: str = await client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            )
        except _FAILURES as exc:
            raise self._map(exc, "presign") from None
        return url
