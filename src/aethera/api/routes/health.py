"""`GET /health`: 200 when Redis answers and storage takes a write, 503 (with which one failed and why)
when one does not. Each check is bounded by `AETHERA_BACKEND_DEADLINE_S`. It also reports the workers
whose heartbeat reached Redis lately: informative only (no worker is no reason to call the API down;
`aethera_workers_alive` in `/metrics` is what to alert on)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from aethera import __version__
from aethera.api.keys import QUEUE, REDIS, SETTINGS, STORAGE
from aethera.errors import AetheraError, StorageWriteFailed
from aethera.observability.heartbeat import worker_ages
from aethera.storage.base import Storage
from aethera.storage.deadline import BoundedStorage


class Check(msgspec.Struct):
    ok: bool
    detail: str | None = None


class Workers(msgspec.Struct, kw_only=True):
    """Workers whose heartbeat reached Redis within `window_s` (the run lease); `alive` is null with a
    `detail` when Redis cannot be read."""

    ok: bool
    alive: int | None
    window_s: float
    detail: str | None = None


class Health(msgspec.Struct):
    status: str  # "ok" or "unavailable"
    version: str
    redis: Check
    storage: Check
    workers: Workers


def storage_probe(storage: Storage) -> Awaitable[None]:
    """Storage is healthy when it takes a write (a full or read-only disk still answers a ping)."""
    if isinstance(storage, BoundedStorage):
        return storage.probe_write()
    return storage.ping()


def fault(what: str, exc: BaseException) -> str:
    """Why a dependency failed its check, fit for a client: our errors' details carry no path, host or
    secret by contract; a client library's message can carry host names and URLs, so only its class."""
    if isinstance(exc, StorageWriteFailed):
        return f"{what} cannot be written: {exc.detail}"
    if isinstance(exc, AetheraError):
        return f"{what} unreachable: {exc.detail}"
    return f"{what} unreachable ({type(exc).__name__})"


async def probe(what: str, probe: Awaitable[object], timeout_s: float) -> Check:
    try:
        async with asyncio.timeout(timeout_s):
            await probe
    except TimeoutError:
        return Check(ok=False, detail=f"{what} did not answer within {timeout_s:g} s")
    except (RedisError, OSError, AetheraError) as exc:
        return Check(ok=False, detail=fault(what, exc))
    return Check(ok=True)


async def _workers(request: web.Request, window_s: float, timeout_s: float) -> Workers:
    try:
        async with asyncio.timeout(timeout_s):
            ages = await worker_ages(request.app[REDIS], max_age_s=window_s)
    except (TimeoutError, RedisError, OSError):
        return Workers(
            ok=False, alive=None, window_s=window_s, detail="worker heartbeats cannot be read: Redis is unreachable"
        )
    if not ages:
        return Workers(
            ok=False,
            alive=0,
            window_s=window_s,
            detail=f"no worker heartbeat in the last {window_s:g} s: runs are queued but not "
            "executed; start `aethera worker` (systemd: aethera-worker@1) pointing at this Redis",
        )
    return Workers(ok=True, alive=len(ages), window_s=window_s)


async def health(request: web.Request) -> web.Response:
    deadline_s = request.app[SETTINGS].backend_deadline_s
    window_s = request.app[SETTINGS].run_lease_s
    redis, storage, workers = await asyncio.gather(
        probe("redis", request.app[QUEUE].ping(), deadline_s),
        probe("storage", storage_probe(request.app[STORAGE]), deadline_s),
        _workers(request, window_s, deadline_s),
    )
    ok = redis.ok and storage.ok
    body = Health(
        status="ok" if ok else "unavailable", version=__version__, redis=redis, storage=storage, workers=workers
    )
    return web.Response(status=200 if ok else 503, body=msgspec.json.encode(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health, name="health")
