"""The job transport: the only module that imports arq.

arq moves a run's id from the API to a worker and back-pressures the workers; it is not the source of
truth (that is the run record in storage, see `records.py`). Everything else of the service talks to
`JobQueue` and `run_worker`, so another queue could replace arq by rewriting this module alone.

Jobs carry `(run_id, generation)` only; their id is `{run_id}.{generation}`, which makes a second
enqueue of the same generation (say by recovery racing the API) a no-op.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from arq import func as arq_func
from arq.connections import ArqRedis, RedisSettings
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import Job, JobStatus
from arq.typing import WorkerCoroutine
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from aethera.keyspace import QUEUE_NAME
from aethera.settings import DEFAULTS, Settings

RUN_FUNCTION = "run_analysis"
# how far ahead of background (batch) jobs a job due now is placed in the queue's order
INTERACTIVE_LEAD_S = 24 * 3600
# how long a queued job may wait for a worker before the queue forgets it (recovery re-queues it then)
JOB_EXPIRES_S = 7 * 24 * 3600


class JobState(str, enum.Enum):
    """What the queue knows about one job."""

    QUEUED = "queued"  # waiting (possibly deferred) for a worker
    RUNNING = "running"  # a worker has taken it
    UNKNOWN = "unknown"  # not in the queue: finished, expired, or lost with Redis


def job_id_for(run_id: str, generation: int) -> str:
    return f"{run_id}.{generation}"


def _encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


def _decode(data: bytes) -> Any:
    return msgspec.json.decode(data)


DEFAULT_DEADLINE_S = DEFAULTS.backend_deadline_s  # AETHERA_BACKEND_DEADLINE_S's default


def connection_pool(
    redis_url: str, max_connections: int = 64, *, deadline_s: float = DEFAULT_DEADLINE_S
) -> ConnectionPool:
    """A lazily connecting pool: creating it never fails, so the API starts while Redis is down.

    A command finishes or fails within `deadline_s`: half of it for the connect, half for the answer,
    and no retry (a Redis that accepts connections but never answers costs a request one deadline per
    command, then 503). The API's commands are small and never block, so half a deadline is ample."""
    half_s = deadline_s / 2
    return ConnectionPool.from_url(
        redis_url,
        max_connections=max_connections,
        socket_connect_timeout=half_s,
        socket_timeout=half_s,
        retry=Retry(NoBackoff(), 0),  # explicit: redis-py 6 would otherwise retry three times
    )


# How long one Redis reply may take on a worker's connections. arq's own settings have no read timeout,
# so a Redis that stops answering (a partition, a hung server) would hold a worker's call forever: its
# lease release, a progress write, its poll. Recovery and the lease rules assume each call ends.
WORKER_SOCKET_TIMEOUT_S = 5.0


async def bound_socket_reads(redis: Any, timeout_s: float = WORKER_SOCKET_TIMEOUT_S) -> None:
    """Give every connection of arq's pool a read timeout (the ones made so far are reopened)."""
    pool = redis.connection_pool
    pool.connection_kwargs["socket_timeout"] = timeout_s
    await pool.disconnect()


class JobQueue:
    """Enqueue, abort and inspect run jobs."""

    def __init__(self, redis_url: str, *, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self._redis = ArqRedis(
            connection_pool(redis_url, deadline_s=deadline_s),
            job_serializer=_encode,
            job_deserializer=_decode,
            default_queue_name=QUEUE_NAME,
        )

    @classmethod
    def wrapping(cls, redis: Any) -> JobQueue:
        """A queue over the connection a worker already holds (arq's `ctx["redis"]`)."""
        self = cls.__new__(cls)
        self._redis = redis
        return self

    async def enqueue_run(
        self, run_id: str, generation: int, *, defer_s: float = 0.0, background: bool = False
    ) -> str | None:
        """Queue the job of one generation of a run; None when that job is already queued.

        Workers take due jobs in score order (arq: the time a job is due, in ms). A run due now is
        queued with its score set `INTERACTIVE_LEAD_S` in the past, so it goes ahead of every
        `background` job (a batch's sites, queued with the plain time) queued within that lead: a batch
        of 10,000 sites never makes another request's single run wait behind it. Jobs due later (retry
        backoff) keep their due time."""
        job_id = job_id_for(run_id, generation)
        defer_until = None
        if defer_s <= 0 and not background:
            defer_until = datetime.fromtimestamp(time.time() - INTERACTIVE_LEAD_S, tz=UTC)
        job = await self._redis.enqueue_job(
            RUN_FUNCTION,
            run_id,
            generation,
            _job_id=job_id,
            _queue_name=QUEUE_NAME,
            _defer_by=defer_s if defer_s > 0 else None,
            _defer_until=defer_until,
            _expires=JOB_EXPIRES_S + max(defer_s, 0.0),
        )
        return None if job is None else job_id

    async def enqueue_job(self, function: str, job_id: str, *args: Any) -> str | None:
        """Queue a service job other than a run's (say a batch's feeder), due now and ahead of background
        jobs like an interactive run; None when a job with this id is already queued or running."""
        job = await self._redis.enqueue_job(
            function,
            *args,
            _job_id=job_id,
            _queue_name=QUEUE_NAME,
            _defer_until=datetime.fromtimestamp(time.time() - INTERACTIVE_LEAD_S, tz=UTC),
            _expires=JOB_EXPIRES_S,
        )
        return None if job is None else job_id

    async def abort(self, job_id: str) -> None:
        """Ask the queue to drop a job: a queued one never starts, a running one is cancelled."""
        await self._redis.zadd(abort_jobs_ss, {job_id: timestamp_ms()})

    async def state(self, job_id: str) -> JobState:
        status = await Job(job_id, self._redis, _queue_name=QUEUE_NAME).status()
        if status in (JobStatus.queued, JobStatus.deferred):
            return JobState.QUEUED
        if status is JobStatus.in_progress:
            return JobState.RUNNING
        return JobState.UNKNOWN

    async def discard(self, job_id: str) -> None:
        """Forget a job whose worker died, so the queue does not run it again on its own."""
        async with self._redis.pipeline(transaction=True) as tr:
            tr.delete(job_key_prefix + job_id, in_progress_key_prefix + job_id, retry_key_prefix + job_id)
            tr.zrem(QUEUE_NAME, job_id)
            tr.zrem(abort_jobs_ss, job_id)
            await tr.execute()

    async def queued_count(self) -> int:
        return int(await self._redis.zcard(QUEUE_NAME))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)


JobCoroutine = WorkerCoroutine
Hook = Callable[[dict[str, Any]], Awaitable[None]]


log = logging.getLogger(__name__)
_OUTAGE_RETRY_S = 1.0  # how often a worker that lost Redis tries again (so it is back ~1 s after Redis)
_OUTAGE_LOG_EVERY_S = 30.0


class ResilientWorker(Worker):
    """arq's worker, kept alive through a Redis outage.

    arq lets a Redis error of its poll loop end the whole worker process, and leaks the job slot it had
    taken when the error hits while starting a job (after three such errors a worker of concurrency 2
    never takes a job again). Here a poll that cannot reach Redis is logged and tried again a second
    later, a lost slot is given back, and runs already going carry on (the run task tolerates Redis
    errors itself); when Redis returns the worker polls as before, with no supervisor needed.
    """

    _outage_since: float | None = None
    _outage_logged_at: float = 0.0

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if self._outage_since is None:
                self._outage_since = now
            if now - self._outage_logged_at >= _OUTAGE_LOG_EVERY_S:
                self._outage_logged_at = now
                log.warning("queue unreachable (%s); polling again every %.0f s", type(exc).__name__, _OUTAGE_RETRY_S)
            await asyncio.sleep(_OUTAGE_RETRY_S)
            return
        if self._outage_since is not None:
            log.info("queue reachable again after %.1f s", time.monotonic() - self._outage_since)
            self._outage_since = None
            self._outage_logged_at = 0.0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id in job_ids:
            try:
                await super().start_jobs([job_id])
            except (RedisError, OSError):
                if job_id.decode() not in self.tasks:
                    # arq counted the job and held a semaphore slot for it, then lost both to the error
                    self.job_counter -= 1
                    self.sem.release()
                raise


def build_worker(
    settings: Settings,
    run_function: JobCoroutine,
    *,
    on_startup: Hook,
    on_shutdown: Hook,
    redis_url: str,
    handle_signals: bool = True,
    burst: bool = False,
    extra_functions: Sequence[JobCoroutine] = (),
) -> Worker:
    """An arq worker for the run task, configured from the service's settings."""
    options = worker_options(
        settings,
        run_function,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        redis_url=redis_url,
        extra_functions=extra_functions,
    )
    return ResilientWorker(**options, handle_signals=handle_signals, burst=burst)


def worker_options(
    settings: Settings,
    run_function: JobCoroutine,
    *,
    on_startup: Hook,
    on_shutdown: Hook,
    redis_url: str,
    extra_functions: Sequence[JobCoroutine] = (),
) -> dict[str, Any]:
    """The keyword arguments of arq's Worker (also the attributes of an arq `WorkerSettings` class)."""
    redis_settings = RedisSettings.from_dsn(redis_url)
    redis_settings.conn_timeout = 2
    redis_settings.conn_retries = 30  # a worker started just before Redis waits ~30 s for it
    return {
        "functions": [
            # retries are the service's own (records + backoff), so arq never re-runs a failed job;
            # a job cancelled by a stopping worker is run again by arq (max_tries leaves room for that)
            arq_func(run_function, name=RUN_FUNCTION, max_tries=settings.run_max_attempts + 2),
            *extra_functions,
        ],
        "redis_settings": redis_settings,
        "queue_name": QUEUE_NAME,
        "max_jobs": settings.worker_concurrency,
        # SIGTERM: take no new job and let running ones finish for the grace period; a job still running
        # then is cancelled, its run goes back to PENDING and arq runs the job again (another worker)
        "job_completion_wait": settings.shutdown_grace_s,  # arq waits with asyncio.wait_for: a float works
        "job_timeout": settings.run_hard_time_limit_s,
        "keep_result": 0,
        "allow_abort_jobs": True,
        # how often an idle worker asks Redis for a due job: the mean pick-up wait is half of it (a
        # ZRANGEBYSCORE per poll is cheap; 0.2 s cost a small run ~0.1 s of its POST -> COMPLETED time)
        "poll_delay": 0.05,
        "health_check_interval": 30,
        "job_serializer": _encode,
        "job_deserializer": _decode,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
    }
