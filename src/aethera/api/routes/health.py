"""`GET /health`: 200 when Redis and storage answer, 503 (with which one failed) when one does not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from aethera import __version__
from aethera.api.keys import QUEUE, STORAGE
from aethera.errors import AetheraError

CHECK_TIMEOUT_S = 3.0


class Check(msgspec.Struct):
    ok: bool
    detail: str | None = None


class Health(msgspec.Struct):
    status: str  # "ok" or "unavailable"
    version: str
    redis: Check
    storage: Check


async def _check(what: str, probe: Awaitable[object]) -> Check:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
    except asyncio.TimeoutError:
        return Check(ok=False, detail=f"{what} did not answer within {CHECK_TIMEOUT_S:g} s")
    except (RedisError, OSError, AetheraError) as exc:
        # the class name only: messages of client libraries can carry host names and URLs
        return Check(ok=False, detail=f"{what} unreachable ({type(exc).__name__})")
    return Check(ok=True)


async def health(request: web.Request) -> web.Response:
    redis, storage = await asyncio.gather(
        _check("redis", request.app[QUEUE].ping()), _check("storage", request.app[STORAGE].ping())
    )
    ok = redis.ok and storage.ok
    body = Health(status="ok" if ok else "unavailable", version=__version__, redis=redis, storage=storage)
    return web.Response(status=200 if ok else 503, body=msgspec.json.encode(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health, name="health")
