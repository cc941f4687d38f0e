"""The service's own records: projects and runs in storage (the truth), task copies and progress in Redis.

A run record (`runs/{id}/run.json`) is only ever changed by `update_run()`: read it with its version
tag, apply a change, write it back on condition that nobody wrote it in between (S3 `If-Match`, or a
compare-and-replace under a file lock on disk), and start over on a conflict. A worker's changes are
additionally fenced by the generation it started (`fenced()`): once recovery or a retry moved the run
to a newer generation, the old attempt's writes are refused. See docs/architecture.md, "Run lifecycle".

The task record in Redis is a cache of the run record plus live progress. A final copy is kept for a
week; a non-final one lives `LIVE_TASK_TTL_S` and is renewed by the running attempt's heartbeat, and
`task_view()` never lets a non-final copy hide a final record.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera import keyspace as keys
from aethera.errors import BackendUnavailable, NotFound, ObjectNotFound, PreconditionFailed, StaleAttempt, StorageError
from aethera.jobs import listings
from aethera.models import (
    IdempotencyRecord,
    Progress,
    Project,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskStatus,
    utc_now_iso,
)
from aethera.settings import Settings
from aethera.storage.base import Storage

log = logging.getLogger(__name__)

_run_decoder = msgspec.json.Decoder(RunRecord)
_task_decoder = msgspec.json.Decoder(TaskRecord)
_project_decoder = msgspec.json.Decoder(Project)
_encoder = msgspec.json.Encoder()


# --- projects ------------------------------------------------------------------------------------


async def create_project(storage: Storage, project: Project) -> None:
    """Store a new project: its marker in the tenant's listing index first, then the record, so a
    project is never missing from its listing (a marker without a record is skipped; jobs/listings.py)."""
    await listings.write_markers(storage, [listings.project_marker(project)])
    await storage.save(keys.project_key(project.id), _encoder.encode(project))


async def load_project(storage: Storage, project_id: str) -> Project:
    try:
        raw = await storage.read(keys.project_key(project_id))
    except ObjectNotFound:
        raise NotFound(f"project {project_id} not found") from None
    return _project_decoder.decode(raw)


# --- runs in storage -----------------------------------------------------------------------------


async def load_run(storage: Storage, run_id: str) -> RunRecord:
    try:
        raw = await storage.read(keys.run_record_key(run_id))
    except ObjectNotFound:
        raise NotFound(f"run {run_id} not found") from None
    return _run_decoder.decode(raw)


async def load_run_versioned(storage: Storage, run_id: str) -> tuple[RunRecord, str]:
    """The run record and its version tag (what a conditional write of it compares against)."""
    try:
        raw, etag = await storage.read_versioned(keys.run_record_key(run_id))
    except ObjectNotFound:
        raise NotFound(f"run {run_id} not found") from None
    return _run_decoder.decode(raw), etag


RunChange = Callable[[RunRecord], bool]
_UPDATE_TRIES = 16


async def update_run(storage: Storage, run_id: str, change: RunChange) -> RunRecord:
    """Apply `change` to the stored run record atomically; returns the record as stored afterwards.

    `change` mutates the record it is given and returns True to write it, False to leave it as it is;
    it may raise (`StaleAttempt`, `Conflict`) to refuse. It is called again on a fresh copy whenever
    another writer got in between the read and the write, so it must decide from the record alone.
    A final state also takes the run out of the recovery index."""
    for _ in range(_UPDATE_TRIES):
        run, etag = await load_run_versioned(storage, run_id)
        if not change(run):
            return run
        run.updated_at = utc_now_iso()
        try:
            await storage.save_if(keys.run_record_key(run_id), _encoder.encode(run), etag)
        except PreconditionFailed:
            continue  # someone else wrote it first: decide again on what they wrote
        if run.status.is_final:
            try:
                await storage.delete(keys.active_run_key(run_id))
            except StorageError:
                pass  # recovery drops the marker of a final run itself
        return run
    raise BackendUnavailable(f"run {run_id}: its record kept changing under {_UPDATE_TRIES} writes; try again")


def fenced(generation: int, change: RunChange) -> RunChange:
    """`change`, allowed only while the run is PROCESSING in `generation` (the caller's own attempt)."""

    def apply(run: RunRecord) -> bool:
        if run.generation != generation or run.status is not RunStatus.PROCESSING:
            raise StaleAttempt(
                f"run {run.run_id}: attempt generation {generation} is no longer current "
                f"(the record is {run.status.value} in generation {run.generation})"
            )
        return change(run)

    return apply


async def create_run(storage: Storage, run: RunRecord, aoi_geojson: bytes, created_ms: int) -> None:
    """Store a new run: its AOI, its listing markers, its record (create-only), its recovery marker.

    The one place a run is created (the API's POST and anything that creates runs in bulk), so every path
    gets its markers. Listing markers go before the record: a run is never missing from a listing, and a
    marker whose record never came is skipped, then dropped (jobs/listings.py). The recovery marker goes
    after it: recovery drops a marker with no record, which would race a create still in flight.

    A run may be created already COMPLETED (result reuse): its outputs must then be stored under the
    generation it names before this is called, and it gets no recovery marker (nothing to sweep)."""
    markers = listings.run_markers(run, keys.run_index_name(created_ms, run.run_id))
    # the AOI and the markers only need to precede the record, not each other: written at once (each
    # local write is an fsync, each S3 one a round trip), which is most of a reused run's latency
    await asyncio.gather(
        storage.save(keys.run_aoi_key(run.run_id), aoi_geojson), listings.write_markers(storage, markers)
    )
    run.updated_at = utc_now_iso()
    # a failed write keeps its markers: it may have landed all the same (a timeout after the PUT went
    # out), and a marker is dropped only once its record is known missing for longer than any create
    await storage.save_if(keys.run_record_key(run.run_id), _encoder.encode(run), None)
    if not run.status.is_final:  # a run created final (a reused result) has nothing for recovery to sweep
        await storage.save(keys.active_run_key(run.run_id), b"")


async def active_run_ids(storage: Storage) -> list[str]:
    """Runs not yet known to be final, from storage (survives the loss of Redis)."""
    out = []
    async for stat in storage.list(keys.ACTIVE_RUNS_INDEX):
        run_id = stat.key[len(keys.ACTIVE_RUNS_INDEX) :]
        if keys.ID_RE.match(run_id):
            out.append(run_id)
    return out


# --- idempotency ---------------------------------------------------------------------------------


async def load_idempotency(storage: Storage, project_id: str, digest: str) -> IdempotencyRecord | None:
    raw = await _read_or_none(storage, keys.idempotency_key(project_id, digest))
    return None if raw is None else msgspec.json.decode(raw, type=IdempotencyRecord)


async def save_idempotency(storage: Storage, record: IdempotencyRecord, digest: str) -> None:
    await storage.save(keys.idempotency_key(record.project_id, digest), _encoder.encode(record))


async def delete_idempotency(storage: Storage, project_id: str, digest: str) -> None:
    await storage.delete(keys.idempotency_key(project_id, digest))


# --- task records in Redis -----------------------------------------------------------------------


def task_record(run: RunRecord, progress: Progress | None, *, max_attempts: int | None) -> TaskRecord:
    return TaskRecord(
        task_id=run.task_id,
        run_id=run.run_id,
        project_id=run.project_id,
        status=run.status,
        progress=progress,
        error=run.error,
        error_code=run.error_code,
        attempts=run.attempts,
        max_attempts=max_attempts,
        cancel_requested=run.cancel_requested,
        created_at=run.created_at,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        tenant=run.tenant,
    )


def task_ttl_s(status: RunStatus) -> int:
    """How long a task copy lives in Redis: a final one a week, a live one until its heartbeat stops."""
    return keys.TASK_RECORD_TTL_S if status.is_final else keys.LIVE_TASK_TTL_S


async def save_task(redis: Redis, task: TaskRecord) -> None:
    await redis.set(keys.task_key(task.task_id), _encoder.encode(task), ex=task_ttl_s(task.status))


async def load_task(redis: Redis, task_id: str) -> TaskRecord | None:
    raw = await redis.get(keys.task_key(task_id))
    return None if raw is None else _task_decoder.decode(raw)


def decode_task(raw: bytes) -> TaskRecord:
    return _task_decoder.decode(raw)


async def load_task_json(redis: Redis, task_id: str) -> bytes | None:
    """The stored task record as JSON bytes: already the `TaskStatus` answer."""
    raw = await redis.get(keys.task_key(task_id))
    return None if raw is None else bytes(raw)


async def publish_task(
    redis: Redis, run: RunRecord, progress: Progress | None = None, *, max_attempts: int | None = None
) -> bool:
    """Write the Redis copy of a run's state; False (logged) when Redis is away: the record has it."""
    try:
        await save_task(redis, task_record(run, progress, max_attempts=max_attempts))
        return True
    except (RedisError, OSError) as exc:
        log.warning(
            "run %s: task copy not written to Redis (%s); storage has the state", run.run_id, type(exc).__name__
        )
        return False


def task_view(copy: TaskRecord | None, run: RunRecord, stashed: RunRecord | None = None) -> TaskStatus:
    """The `GET /tasks` answer from the record (the truth), a final state stashed in Redis that storage
    could not take yet, and the Redis copy, which adds live progress when it tells the same state."""
    truth = effective_run(run, stashed)
    if copy is None:
        return task_record(truth, None, max_attempts=None)
    if copy.status == truth.status and copy.attempts == truth.attempts:
        return copy
    # the record moved on (a commit whose copy is not written yet, or a copy a lost write left behind): its
    # state wins; the finishing attempt's last progress report stays visible (a poll between the commit and
    # the worker's final copy must not lose it); a run handed back to the queue shows none
    same_attempt = copy.attempts == truth.attempts and truth.status.is_final
    progress = copy.progress if same_attempt else None
    return task_record(truth, progress, max_attempts=copy.max_attempts)


# --- final states that storage could not take yet ------------------------------------------------


async def stash_final(redis: Redis, run: RunRecord) -> bool:
    """Keep a final state in Redis when storage refuses to record it, so the run still shows its end and
    its reason; recovery writes it to storage (fenced) as soon as storage takes it."""
    try:
        await redis.set(keys.stashed_final_key(run.run_id), _encoder.encode(run), ex=keys.TASK_RECORD_TTL_S)
        return True
    except (RedisError, OSError):
        return False


async def load_stashed_final(redis: Redis, run_id: str) -> RunRecord | None:
    try:
        raw = await redis.get(keys.stashed_final_key(run_id))
    except (RedisError, OSError):
        return None
    return None if raw is None else _run_decoder.decode(raw)


async def drop_stashed_final(redis: Redis, run_id: str) -> None:
    try:
        await redis.delete(keys.stashed_final_key(run_id))
    except (RedisError, OSError):
        pass  # it expires; a final record wins over it anyway


def effective_run(run: RunRecord, stashed: RunRecord | None) -> RunRecord:
    """The record, or the final state stashed for its current generation while storage cannot take it."""
    if (
        stashed is not None
        and not run.status.is_final
        and stashed.status.is_final
        and stashed.generation == run.generation
    ):
        return stashed
    return run


# --- cancellation flag and lease -----------------------------------------------------------------


async def request_cancel(redis: Redis, run_id: str) -> None:
    await redis.set(keys.cancel_key(run_id), b"1", ex=keys.CANCEL_FLAG_TTL_S)


async def cancel_requested(redis: Redis, run_id: str) -> bool:
    return bool(await redis.exists(keys.cancel_key(run_id)))


def lease_ttl_s(settings: Settings) -> float:
    """TTL of a run's lease. Half of `run_lease_s`, so that with a sweep every quarter of it a dead
    worker's run is found within 0.75 * run_lease_s; the heartbeat renews it three times per TTL."""
    return settings.run_lease_s / 2


def heartbeat_interval_s(settings: Settings) -> float:
    return settings.run_lease_s / 6


def sweep_interval_s(settings: Settings) -> float:
    return settings.run_lease_s / 4


def lease_value(generation: int, owner: str) -> str:
    return f"{generation} {owner}"


# A lease is "<generation> <owner>". It is taken when free or held for an older generation (the
# superseded attempt's worker then finds it taken and stops), never from the same or a newer one.
_ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if v then
  local g = tonumber(string.match(v, '^(%d+) '))
  if g and g >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# Renewing never re-creates a lease that vanished (Redis restarted empty, or it expired): the worker
# checks the record before it takes it again (LeaseState.VANISHED).
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v == false then return 2 end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseState(int, enum.Enum):
    TAKEN = 0  # another attempt holds it: stop
    HELD = 1  # ours, renewed
    VANISHED = 2  # nobody holds it: ours again only if the record still says this attempt runs


async def acquire_lease(redis: Redis, run_id: str, generation: int, owner: str, ttl_s: float) -> bool:
    """Take the run's lease for `generation` unless a live worker holds it for this or a newer one."""
    value = lease_value(generation, owner)
    # redis-py types commands for its sync and asyncio clients at once (value | awaitable) and script
    # arguments as str: the asyncio client always returns an awaitable, and Redis sends numbers as text anyway.
    ttl_ms = str(int(ttl_s * 1000))
    acquired = redis.eval(_ACQUIRE, 1, keys.lease_key(run_id), value, str(generation), ttl_ms)
    return bool(await cast("Awaitable[int]", acquired))


async def renew_lease(redis: Redis, run_id: str, generation: int, owner: str, ttl_s: float) -> LeaseState:
    value = lease_value(generation, owner)
    renewed = redis.eval(_RENEW, 1, keys.lease_key(run_id), value, str(int(ttl_s * 1000)))
    return LeaseState(int(await cast("Awaitable[int]", renewed)))


async def release_lease(redis: Redis, run_id: str, generation: int, owner: str) -> None:
    await cast("Awaitable[int]", redis.eval(_RELEASE, 1, keys.lease_key(run_id), lease_value(generation, owner)))


async def lease_generation(redis: Redis, run_id: str) -> int | None:
    """The generation whose attempt holds the run's lease now, or None when nobody does."""
    raw = await redis.get(keys.lease_key(run_id))
    if raw is None:
        return None
    head = raw.decode(errors="replace").split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


# --- helpers -------------------------------------------------------------------------------------


async def _read_or_none(storage: Storage, key: str) -> bytes | None:
    try:
        return await storage.read(key)
    except ObjectNotFound:
        return None


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the run index orders by it)."""
    return int(time.time() * 1000)
