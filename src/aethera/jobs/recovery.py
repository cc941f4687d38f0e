"""Finding runs that nobody is working on any more, and putting them back on track.

Workers hold a lease per running run in Redis ("<generation> <worker>", TTL `run_lease_s / 2`, renewed
by a heartbeat). Every worker sweeps every `run_lease_s / 4` (one sweep at a time across workers, by a
Redis lock) over the runs that storage still lists as active:

- A final state that storage refused earlier (stashed in Redis by the worker) is written first.
- PROCESSING(g) with no lease for g or later: its worker died or was cut off. The run moves to
  generation g+1 (PENDING, re-queued), or FAILED `worker_lost` when no attempt is left.
- PENDING(g) whose job the queue holds as running but nobody holds the lease: a worker took the job
  and died before it started the run ("lost at pick-up"). Moved to g+1 like a lost worker's run.
- PENDING(g) whose job the queue no longer knows (Redis was emptied or lost the job): queued again.
  The last two are acted on only after the same state was seen for half a lease TTL (timed on the
  Redis server's clock), so a job a worker is just starting, or one the API is just queuing, is left
  alone. Neither depends on arq's in-progress key, which outlives a dead worker by the job timeout.
- A cancellation recorded meanwhile (in the record, or the Redis flag) wins: the run becomes REVOKED.
- A batch still marked active in storage gets the feeder job of its cursor's chunk queued (a no-op
  while that job is queued or running: same job id), so a feeder lost with Redis resumes.

Every change is a conditional write of the record that re-checks the generation and state it was
decided on, so a sweep racing a worker (or another sweep) changes nothing that moved meanwhile, and
the superseded attempt's own writes are refused by its fence. A run is therefore handled within
`run_lease_s` of its worker's death (lease TTL + one sweep interval; a pick-up loss within 1.5 TTL + two
sweep intervals, 1.25 x `run_lease_s`).

Storage is the truth, so this works after Redis lost everything: the active-run index and the run
records are in storage.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera import keyspace as keys
from aethera.errors import AetheraError, NotFound
from aethera.jobs import batch_feed, records
from aethera.jobs.queue import JobQueue, JobState, job_id_for
from aethera.models import RunRecord, RunStatus, utc_now_iso
from aethera.observability.metrics import record_run_status
from aethera.settings import Settings
from aethera.storage.base import Storage

log = logging.getLogger(__name__)


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
        for batch_id in await batch_feed.resume_batches(storage, queue):
            actions[batch_id] = "batch feeder queued again"
            log.info("recovery: batch %s: feeder queued again", batch_id)
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
        await records.drop_stashed_final(redis, run_id)
        return None

    stashed = await records.load_stashed_final(redis, run_id)
    if stashed is not None and records.effective_run(run, stashed) is stashed:
        return await _store_stashed(storage, redis, settings, run, stashed)

    g = run.generation
    holder = await records.lease_generation(redis, run_id)
    if holder is not None and holder >= g:
        return None  # an attempt of this generation (or a newer one) is alive
    cancelled = run.cancel_requested or await records.cancel_requested(redis, run_id)
    job_id = job_id_for(run_id, g)

    if run.status is RunStatus.PENDING:
        state = await queue.state(job_id)
        if state is JobState.QUEUED:
            return None
        if cancelled:
            return await _revoke(storage, redis, run, settings)
        if not await _seen_for_a_lease(redis, run_id, g, settings):
            return None
        await queue.discard(job_id)
        if state is JobState.UNKNOWN:
            await queue.enqueue_run(run_id, g)
            return f"re-queued generation {g} (its job was lost)"
        lost = "the worker that took attempt {n} stopped responding before it started the run"
        return await _move_on(storage, redis, queue, settings, run, lost, counted_now=True)

    # PROCESSING with nobody holding its lease
    await queue.discard(job_id)
    if cancelled:
        return await _revoke(storage, redis, run, settings)
    lost = (
        f"the worker running attempt {{n}} stopped responding (no heartbeat within {records.lease_ttl_s(settings):g} s)"
    )
    return await _move_on(storage, redis, queue, settings, run, lost, counted_now=False)


async def _move_on(
    storage: Storage,
    redis: Redis,
    queue: JobQueue,
    settings: Settings,
    seen: RunRecord,
    lost: str,
    *,
    counted_now: bool,
) -> str | None:
    """Generation g+1 of a run whose attempt g was lost, or FAILED `worker_lost` with no attempt left."""
    g = seen.generation
    outcome = ""

    def change(r: RunRecord) -> bool:
        nonlocal outcome
        if r.generation != g or r.status is not seen.status:
            return False  # it moved on meanwhile: nothing to do
        if counted_now:
            r.attempts += 1  # the attempt was handed out, so it counts, though it never marked itself
        reason = lost.format(n=max(1, r.attempts))
        if r.attempts >= settings.run_max_attempts:
            r.status = RunStatus.FAILED
            r.error = f"{reason}; no attempts left (of {settings.run_max_attempts})"
            r.error_code = "worker_lost"
            r.finished_at = utc_now_iso()
            outcome = "failed (worker lost, no attempts left)"
        else:
            r.status = RunStatus.PENDING
            r.generation = g + 1
            r.job_id = job_id_for(r.run_id, g + 1)
            r.error = f"{reason}; re-queued as attempt {r.attempts + 1}"
            r.error_code = "worker_lost"
            outcome = f"re-queued as generation {g + 1} (worker lost)"
        return True

    run = await records.update_run(storage, seen.run_id, change)
    if not outcome:
        return None
    await records.publish_task(redis, run, max_attempts=settings.run_max_attempts)
    if run.status is RunStatus.PENDING:
        await queue.enqueue_run(run.run_id, run.generation)
    return outcome


async def _revoke(storage: Storage, redis: Redis, seen: RunRecord, settings: Settings) -> str | None:
    def change(r: RunRecord) -> bool:
        if r.status.is_final or r.generation != seen.generation:
            return False
        r.status = RunStatus.REVOKED
        r.cancel_requested = True
        r.finished_at = utc_now_iso()
        return True

    run = await records.update_run(storage, seen.run_id, change)
    if run.status is not RunStatus.REVOKED:
        return None
    await records.publish_task(redis, run, max_attempts=settings.run_max_attempts)
    await record_run_status(redis, RunStatus.REVOKED.value)
    return "revoked (cancellation asked while its worker was gone)"


async def _store_stashed(
    storage: Storage, redis: Redis, settings: Settings, seen: RunRecord, stashed: RunRecord
) -> str | None:
    """Write a final state that storage refused when the worker tried (it is in Redis meanwhile)."""

    def change(r: RunRecord) -> bool:
        if r.status.is_final or r.generation != stashed.generation:
            return False
        r.status = stashed.status
        r.error, r.error_code = stashed.error, stashed.error_code
        r.finished_at = stashed.finished_at or utc_now_iso()
        r.output_generation = stashed.output_generation
        r.cancel_requested = r.cancel_requested or stashed.cancel_requested
        return True

    run = await records.update_run(storage, seen.run_id, change)
    await records.drop_stashed_final(redis, seen.run_id)
    if run.status is not stashed.status:
        return None
    await records.publish_task(redis, run, max_attempts=settings.run_max_attempts)
    return f"stored its final state {run.status.value} (kept in Redis while storage refused it)"


async def _seen_for_a_lease(redis: Redis, run_id: str, generation: int, settings: Settings) -> bool:
    """True once this run's generation was seen unattended for half a lease TTL (on the Redis server's
    clock): far longer than a worker takes from the queue's hand-over to taking the lease (a few ms),
    and if a worker is slower than that all the same, its start is refused by the fence, nothing worse."""
    key = keys.pickup_suspect_key(run_id, generation)
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    wait_ms = int(records.lease_ttl_s(settings) * 500)
    if await redis.set(key, now_ms, nx=True, px=wait_ms * 16):
        return False
    first = await redis.get(key)
    return first is not None and now_ms - int(first) >= wait_ms


async def sweep_forever(storage: Storage, redis: Redis, queue: JobQueue, settings: Settings) -> None:
    """The worker's background loop: sweep now (a restart after losing Redis), then periodically."""
    interval = records.sweep_interval_s(settings)
    while True:
        try:
            await sweep(storage, redis, queue, settings)
        except (AetheraError, RedisError, OSError) as exc:
            log.warning("recovery sweep failed (%s); trying again in %.1f s", type(exc).__name__, interval)
        await asyncio.sleep(interval)
