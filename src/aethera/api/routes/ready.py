"""`GET /ready`: can this deployment take work? Redis answers, storage takes a write, a worker was seen lately.

`/health` says the API process is up; `/ready` says whether a run submitted now would be executed. A
load balancer or an operator reads the JSON body to see which check failed and why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from aethera.api.keys import REDIS, SETTINGS, STORAGE
from aethera.api.routes.health import fault, storage_probe
from aethera.errors import AetheraError
from aethera.observability.heartbeat import worker_ages


class ReadyCheck(msgspec.Struct, kw_only=True):
    """One dependency: `ok`, and when not, `detail` says what is wrong."""

    ok: bool
    detail: str | None = None


class WorkersCheck(ReadyCheck, kw_only=True):
    """Workers whose heartbeat reached Redis within `window_s` (the run lease)."""

    alive: int = 0
    window_s: float


class Readiness(msgspec.Struct, kw_only=True):
    """Answer of `GET /ready`: 200 with status "ready", or 503 with "not_ready" and the failing checks."""

    status: str  # "ready" or "not_ready"
    redis: ReadyCheck
    storage: ReadyCheck
    workers: WorkersCheck


async def _probe(what: str, probe: Awaitable[object], timeout_s: float) -> ReadyCheck:
    try:
        async with asyncio.timeout(timeout_s):
            await probe
    except TimeoutError:
        return ReadyCheck(ok=False, detail=f"{what} did not answer within {timeout_s:g} s")
    except (RedisError, OSError, AetheraError) as exc:
        return ReadyCheck(ok=False, detail=fault(what, exc))
    return ReadyCheck(ok=True)


async def _workers(request: web.Request, window_s: float, timeout_s: float) -> WorkersCheck:
    try:
        async with asyncio.timeout(timeout_s):
            ages = await worker_ages(request.app[REDIS], max_age_s=window_s)
    except (TimeoutError, RedisError, OSError):
        return WorkersCheck(ok=False, detail="worker heartbeats cannot be read: Redis is unreachable", window_s=window_s)
    if not ages:
        return WorkersCheck(
            ok=False,
            detail=f"no worker heartbeat in the last {window_s:g} s: start `aethera worker` "
            "(systemd: aethera-worker@1) pointing at this Redis",
            window_s=window_s,
        )
    return WorkersCheck(ok=True, alive=len(ages), window_s=window_s)


async def ready(request: web.Request) -> web.Response:
    """Readiness: Redis and storage reachable, and a worker heartbeat seen recently.

    200 when a run submitted now would be executed; 503 otherwise, with each check's `detail` saying what
    is wrong.
    """
    settings = request.app[SETTINGS]
    window_s, deadline_s = settings.run_lease_s, settings.backend_deadline_s
    redis, storage, workers = await asyncio.gather(
        _probe("redis", request.app[REDIS].ping(), deadline_s),
        _probe("storage", storage_probe(request.app[STORAGE]), deadline_s),
        _workers(request, window_s, deadline_s),
    )
    ok = redis.ok and storage.ok and workers.ok
    body = Readiness(status="ready" if ok else "not_ready", redis=redis, storage=storage, workers=workers)
    return web.Response(
        status=200 if ok else 503,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ready", ready, name="ready")
