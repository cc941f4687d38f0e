"""The worker process: arq worker settings built from the service's settings, and how to run them.

`python worker.py` or `aethera worker` call `run_worker()`. `WorkerSettings` (for arq's own CLI,
`arq aethera.jobs.worker.WorkerSettings`) is built from the environment the first time it is looked up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aethera.errors import ConfigError
from aethera.jobs import batch_feed, pipeline_process, queue, recovery
from aethera.jobs.tasks import WorkerDeps, run_analysis
from aethera.observability.heartbeat import HeartbeatLoop, default_worker_name, heartbeat_interval_s
from aethera.observability.logs import configure_logging
from aethera.settings import Settings, load_settings
from aethera.storage.base import Storage

log = logging.getLogger(__name__)


def require_redis_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set: a worker needs the Redis the API uses (`aethera dev` starts one)")
    return settings.redis_url


def lease_owner(name: str) -> str:
    """Unique to this process: a restarted worker keeps its name but never a lease of its predecessor."""
    return f"{name}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


StorageOpener = Callable[[Settings], Awaitable[Storage]]


def _hooks(settings: Settings, open_storage: StorageOpener | None = None) -> tuple[Any, Any]:
    async def on_startup(ctx: dict[str, Any]) -> None:
        from aethera.storage.factory import open_storage as default_opener

        storage = await (open_storage or default_opener)(settings)
        redis = ctx["redis"]
        await queue.bound_socket_reads(redis)
        name = default_worker_name()
        deps = WorkerDeps(
            settings=settings,
            storage=storage,
            redis=redis,
            queue=queue.JobQueue.wrapping(redis),
            name=name,
            owner=lease_owner(name),
        )
        ctx["aethera"] = deps
        ctx["aethera_recovery"] = asyncio.create_task(
            recovery.sweep_forever(storage, redis, deps.queue, settings), name="aethera-recovery"
        )
        # "this worker is alive" for /ready and /metrics, independent of any run
        beats = HeartbeatLoop(redis, deps.name, heartbeat_interval_s(settings.run_lease_s))
        beats.start()
        ctx["aethera_heartbeat"] = beats
        # the pipeline processes' forkserver imports the analysis stack once, now rather than in the first run
        ctx["aethera_warm_up"] = asyncio.create_task(_warm_up(), name="aethera-warm-up")
        log.info("worker %s ready (concurrency %d)", deps.name, settings.worker_concurrency)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        ctx.pop("aethera_warm_up", None)  # a thread: left to finish on its own
        beats: HeartbeatLoop | None = ctx.pop("aethera_heartbeat", None)
        if beats is not None:
            await beats.stop()
        task = ctx.pop("aethera_recovery", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        deps: WorkerDeps | None = ctx.pop("aethera", None)
        if deps is not None:
            await deps.storage.close()

    return on_startup, on_shutdown


async def _warm_up() -> None:
    try:
        await asyncio.to_thread(pipeline_process.warm_up)
    except Exception:  # the first run starts the forkserver then (and reports what fails)
        log.warning("pipeline processes not prepared at start-up", exc_info=True)
    else:
        log.info("pipeline processes prepared")


def worker_settings(settings: Settings) -> type:
    """An arq `WorkerSettings` class for these settings."""
    on_startup, on_shutdown = _hooks(settings)
    options = queue.worker_options(
        settings,
        run_analysis,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        redis_url=require_redis_url(settings),
        extra_functions=[batch_feed.feed_batch],
    )
    return type("WorkerSettings", (), options)


def build_worker(
    settings: Settings, *, handle_signals: bool = True, burst: bool = False, open_storage: StorageOpener | None = None
) -> Any:
    """An arq Worker object (tests run it in-process with `await worker.async_run()`).

    `open_storage` replaces the storage factory (fault-injection tests wrap the real backend)."""
    on_startup, on_shutdown = _hooks(settings, open_storage)
    return queue.build_worker(
        settings,
        run_analysis,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        redis_url=require_redis_url(settings),
        handle_signals=handle_signals,
        burst=burst,
        extra_functions=[batch_feed.feed_batch],
    )


def run_worker(settings: Settings | None = None) -> int:
    """Run one worker until SIGINT/SIGTERM (blocking)."""
    settings = settings or load_settings()
    configure_logging(settings, "worker")
    worker = build_worker(settings)
    worker.run()
    return 0


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        return worker_settings(load_settings())
    raise AttributeError(name)
