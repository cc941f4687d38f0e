"""Worker heartbeats: each worker process says "alive" in Redis every few seconds.

`GET /ready` and `/metrics` read them from the API. Timestamps are the Redis server's clock (`TIME`), not
the worker's or the API's, so clocks that differ between machines cannot make a live worker look dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera.observability import keys
from aethera.observability.metrics import WORKER_HEARTBEATS, SharedMetrics

log = logging.getLogger(__name__)

# workers not seen for this long are dropped from the set, so it does not grow with every restart
_FORGET_AFTER_S = 24 * 3600.0


def default_worker_name() -> str:
    """host-instance: the systemd instance (`aethera-worker@3` -> 3) when there is one, else the pid."""
    instance = os.environ.get("AETHERA_WORKER_INSTANCE") or str(os.getpid())
    return f"{socket.gethostname()}-{instance}"


async def redis_time(redis: Redis) -> float:
    seconds, micros = await redis.time()
    return float(seconds) + float(micros) / 1e6


async def beat(redis: Redis, worker: str, *, info: dict[str, object], ttl_s: float) -> None:
    """Record one heartbeat of `worker`."""
    now = await redis_time(redis)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(keys.WORKERS, {worker: now})
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now - _FORGET_AFTER_S)
        pipe.set(keys.WORKER_INFO.format(name=worker), msgspec.json.encode(info), ex=max(1, int(ttl_s)))
        await pipe.execute()
    await SharedMetrics(redis).inc(WORKER_HEARTBEATS)


async def forget(redis: Redis, worker: str) -> None:
    """Remove `worker` at a clean exit, so readiness reflects the workers that are really left."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.WORKERS, worker)
        pipe.delete(keys.WORKER_INFO.format(name=worker))
        await pipe.execute()


async def worker_ages(redis: Redis, *, max_age_s: float) -> dict[str, float]:
    """Seconds since the last heartbeat of each worker seen within `max_age_s`."""
    now = await redis_time(redis)
    rows = await redis.zrangebyscore(keys.WORKERS, now - max_age_s, "+inf", withscores=True)
    return {
        (name.decode() if isinstance(name, bytes) else str(name)): max(0.0, now - float(score)) for name, score in rows
    }


class HeartbeatLoop:
    """Sends a heartbeat every `interval_s` until stopped; a Redis outage is logged and retried, never fatal."""

    def __init__(self, redis: Redis, worker: str, interval_s: float) -> None:
        self.redis = redis
        self.worker = worker
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._info = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.worker}")

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await beat(self.redis, self.worker, info=self._info, ttl_s=self.interval_s * 3)
                if failing:
                    log.info("worker heartbeat restored")
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:  # one line per outage, not one per beat
                    log.warning("worker heartbeat failed: %s", type(exc).__name__)
                failing = True
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(RedisError, OSError):
            await forget(self.redis, self.worker)


def heartbeat_interval_s(run_lease_s: float) -> float:
    """Beat often enough that a live worker is never taken for dead within the run lease."""
    return max(0.5, min(10.0, run_lease_s / 4))
