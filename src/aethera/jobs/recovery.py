"""Finding runs that nobody is working on any more, and putting them back on track.

Workers hold a lease per running run in Redis (TTL `run_lease_s / 2`, renewed by a heartbeat). Every
worker sweeps every `run_lease_s / 4` (one sweep at a time across workers, by a Redis lock) over the
runs that storage still lists as active, so a worker that died is noticed within `0.75 * run_lease_s`:

- PROCESSING without a lease: the worker died. The run is re-queued as its next attempt, or FAILED
  with the reason when no attempt is left.
- PENDING whose job the queue no longer knows (Redis was emptied or lost the job): queued again.
- A cancellation asked for meanwhile wins: the run becomes REVOKED.

Storage is the truth, so this works after Redis lost everything: the active-run index and the run
records are in storage.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera.errors import AetheraError, NotFound
from aethera.jobs import keys, records
from aethera.jobs.queue import JobQueue, JobState, attempt_of, job_id_for
from aethera.models import RunRecord, RunStatus, utc_now_iso
from aethera.settings import Settings
from aethera.storage.base import Storage

log = logging.getLogger(__name__)


def _age_s(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    return (datetime.now(timezone.utc) - datetime.fromisoformat(timestamp)).total_seconds()


def _attempt_of(run: RunRecord) -> int:
    return attempt_of(run.job_id) or max(1, run.attempts)


async def sweep(storage: Storage, redis: Redis, queue: JobQueue, settings: Settings) -> dict[str, str]:
    """One pass over the active runs; returns {run_id: what was done} for the runs it touched."""
    token = uuid.uuid4().hex
    lock_ms = int(max(records.sweep_interval_s(settings), 1.0) * 4000)
    if not await redis.set(keys.RECOVERY_LOCK, token, px=lock_ms, nx=True):
        return {}
    actions: dict[str, str] = {}
    try:
        for run_id in await records.active_run_ids(storage):
            try:
                action = await _check(storage, redis, queue, settings, run_id)
            except (AetheraError, RedisError, OSError) as exc:
                log.warning("recovery: run %s not checked (%s)", run_id, type(exc).__name__)
                continue
            if action:
                actions[run_id] = action
                log.info("recovery: run %s %s", run_id, action)
    finally:
        try:
            if (await redis.get(keys.RECOVERY_LOCK)) == token.encode():
                await redis.delete(keys.RECOVERY_LOCK)
        except (RedisError, OSError):
            pass
    return actions


async def _check(storage: Storage, redis: Redis, queue: JobQueue, settings: Settings, run_id: str) -> str | None:
    try:
        run = await records.load_run(storage, run_id)
    except NotFound:
        # a run whose creation never finished; its marker is all that is left
        await storage.delete(keys.active_run_key(run_id))
        return "dropped (no run record)"
    if run.status.is_final:
        await storage.delete(keys.active_run_key(run_id))
        return None
    cancelled = await records.cancel_requested(redis, run_id)

    if run.status is RunStatus.PENDING:
        state = await queue.state(run.job_id or job_id_for(run_id, _attempt_of(run)))
        if state is not JobState.UNKNOWN:
            return None
        # the API writes the record before it enqueues: leave a fresh run a moment to be queued
        if _age_s(run.updated_at) < settings.run_lease_s:
            return None
        if cancelled:
            return await _revoke(storage, redis, run, settings)
        attempt = _attempt_of(run)
        run.job_id = job_id_for(run_id, attempt)
        await records.publish(storage, redis, run, max_attempts=settings.run_max_attempts)
        await queue.enqueue_run(run_id, attempt)
        return f"re-queued attempt {attempt} (its job was lost)"

    # PROCESSING
    if await records.lease_holder(redis, run_id) is not None:
        return None
    old_job = run.job_id or job_id_for(run_id, _attempt_of(run))
    await queue.discard(old_job)
    if cancelled:
        return await _revoke(storage, redis, run, settings)
    attempt = _attempt_of(run)
    lost = (
        f"the worker running attempt {attempt} stopped responding "
        f"(no heartbeat within {records.lease_ttl_s(settings):g} s)"
    )
    if attempt >= settings.run_max_attempts:
        run.status = RunStatus.FAILED
        run.error = f"{lost}; no attempts left (of {settings.run_max_attempts})"
        run.error_code = "worker_lost"
        run.finished_at = utc_now_iso()
        await records.publish(storage, redis, run, max_attempts=settings.run_max_attempts)
        return "failed (worker lost, no attempts left)"
    run.status = RunStatus.PENDING
    run.error = f"{lost}; re-queued as attempt {attempt + 1}"
    run.error_code = "worker_lost"
    run.job_id = job_id_for(run_id, attempt + 1)
    await records.publish(storage, redis, run, max_attempts=settings.run_max_attempts)
    await queue.enqueue_run(run_id, attempt + 1)
    return f"re-queued as attempt {attempt + 1} (worker lost)"


async def _revoke(storage: Storage, redis: Redis, run: RunRecord, settings: Settings) -> str:
    run.status = RunStatus.REVOKED
    run.cancel_requested = True
    run.finished_at = utc_now_iso()
    await records.publish(storage, redis, run, max_attempts=settings.run_max_attempts)
    return "revoked (cancellation asked while its worker was gone)"


async def sweep_forever(storage: Storage, redis: Redis, queue: JobQueue, settings: Settings) -> None:
    """The worker's background loop: sweep now (a restart after losing Redis), then periodically."""
    interval = records.sweep_interval_s(settings)
    while True:
        try:
            await sweep(storage, redis, queue, settings)
        except (AetheraError, RedisError, OSError) as exc:
            log.warning("recovery sweep failed (%s); trying again in %.1f s", type(exc).__name__, interval)
        await asyncio.sleep(interval)
