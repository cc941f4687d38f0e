"""The service's own records: projects and runs in storage (the truth), task copies and progress in Redis.

Every change of a run's status goes through `publish()`, which writes the run record to storage first
and then its task record to Redis, so the two never tell different stories for long and `GET /tasks`
can answer from Redis alone. When Redis has lost a task record, `task_status()` rebuilds the answer
from the run record in storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import TypeVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera.errors import NotFound, ObjectNotFound
from aethera.jobs import keys
from aethera.models import (
    IdempotencyRecord,
    Progress,
    Project,
    RunRecord,
    TaskRecord,
    TaskStatus,
    utc_now_iso,
)
from aethera.settings import Settings
from aethera.storage.base import Storage

log = logging.getLogger(__name__)
T = TypeVar("T")

_run_decoder = msgspec.json.Decoder(RunRecord)
_task_decoder = msgspec.json.Decoder(TaskRecord)
_project_decoder = msgspec.json.Decoder(Project)
_encoder = msgspec.json.Encoder()


# --- projects ------------------------------------------------------------------------------------


async def save_project(storage: Storage, project: Project) -> None:
    await storage.save(keys.project_key(project.id), _encoder.encode(project))


async def load_project(storage: Storage, project_id: str) -> Project:
    try:
        raw = await storage.read(keys.project_key(project_id))
    except ObjectNotFound:
        raise NotFound(f"project {project_id} not found") from None
    return _project_decoder.decode(raw)


async def list_projects(storage: Storage, tenant: str | None = None) -> list[Project]:
    """Every project (of `tenant`, when given), newest first."""
    project_keys = [
        stat.key
        async for stat in storage.list(keys.PROJECTS_PREFIX)
        if stat.key.count("/") == 1 and stat.key.endswith(".json")
    ]
    raws = await _bounded_gather(_read_or_none(storage, k) for k in project_keys)
    projects = [_project_decoder.decode(raw) for raw in raws if raw is not None]
    if tenant is not None:
        projects = [p for p in projects if p.tenant == tenant]
    projects.sort(key=lambda p: (p.created_at, p.id), reverse=True)
    return projects


# --- runs in storage -----------------------------------------------------------------------------


async def load_run(storage: Storage, run_id: str) -> RunRecord:
    try:
        raw = await storage.read(keys.run_record_key(run_id))
    except ObjectNotFound:
        raise NotFound(f"run {run_id} not found") from None
    return _run_decoder.decode(raw)


async def save_run(storage: Storage, run: RunRecord) -> None:
    run.updated_at = utc_now_iso()
    await storage.save(keys.run_record_key(run.run_id), _encoder.encode(run))


async def create_run(storage: Storage, run: RunRecord, aoi_geojson: bytes, created_ms: int) -> None:
    """Store a new run: its AOI, its record, and its lines in the listing and recovery indexes."""
    await storage.save(keys.run_aoi_key(run.run_id), aoi_geojson)
    await save_run(storage, run)
    name = keys.run_index_name(created_ms, run.run_id)
    await asyncio.gather(
        storage.save(keys.active_run_key(run.run_id), b""),
        storage.save(keys.ALL_RUNS_INDEX + name, b""),
        storage.save(keys.tenant_runs_index(run.tenant) + name, b""),
        storage.save(keys.project_runs_index(run.project_id) + name, b""),
    )


async def list_runs(
    storage: Storage, *, project_id: str | None, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[RunRecord], str | None]:
    """One page of runs, newest first, and the cursor of the next page (None on the last page).

    The index names sort newest first, so a page is the next `limit` names after `cursor`.
    """
    # a project's runs share its tenant (the caller checks the project); else the tenant's own index
    if project_id:
        prefix = keys.project_runs_index(project_id)
    else:
        prefix = keys.tenant_runs_index(tenant) if tenant is not None else keys.ALL_RUNS_INDEX
    names: list[str] = []
    async for stat in storage.list(prefix):
        name = stat.key[len(prefix):]
        if not keys.RUN_INDEX_NAME_RE.match(name) or (cursor is not None and name <= cursor):
            continue
        names.append(name)
        if len(names) > limit:
            break
    more = len(names) > limit
    names = names[:limit]
    raws = await _bounded_gather(_read_or_none(storage, keys.run_record_key(n[14:])) for n in names)
    runs = [_run_decoder.decode(raw) for raw in raws if raw is not None]
    return runs, (names[-1] if more and names else None)


async def active_run_ids(storage: Storage) -> list[str]:
    """Runs not yet known to be final, from storage (survives the loss of Redis)."""
    out = []
    async for stat in storage.list(keys.ACTIVE_RUNS_INDEX):
        run_id = stat.key[len(keys.ACTIVE_RUNS_INDEX):]
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


async def save_task(redis: Redis, task: TaskRecord) -> None:
    ttl = keys.TASK_RECORD_TTL_S
    await redis.set(keys.task_key(task.task_id), _encoder.encode(task), ex=ttl)


async def load_task(redis: Redis, task_id: str) -> TaskRecord | None:
    raw = await redis.get(keys.task_key(task_id))
    return None if raw is None else _task_decoder.decode(raw)


async def load_task_json(redis: Redis, task_id: str) -> bytes | None:
    """The stored task record as JSON bytes: already the `TaskStatus` answer."""
    raw = await redis.get(keys.task_key(task_id))
    return None if raw is None else bytes(raw)


async def publish(
    storage: Storage,
    redis: Redis,
    run: RunRecord,
    *,
    progress: Progress | None = None,
    max_attempts: int | None = None,
) -> None:
    """Write a run's new state: storage (the truth) first, then its task record in Redis.

    A final state also leaves the recovery index. A Redis failure after the storage write is logged
    and swallowed: the task answer then falls back to storage, which already says the right thing.
    """
    await save_run(storage, run)
    if run.status.is_final:
        await storage.delete(keys.active_run_key(run.run_id))
    try:
        await save_task(redis, task_record(run, progress, max_attempts=max_attempts))
    except (RedisError, OSError) as exc:
        log.warning("run %s: task record not written to Redis (%s); storage has it", run.run_id,
                    type(exc).__name__)
        await _forget_task(redis, run.task_id)


async def _forget_task(redis: Redis, task_id: str) -> None:
    # a stale copy must not outlive a failed update; if even this fails, Redis is down and has no copy
    try:
        await redis.delete(keys.task_key(task_id))
    except (RedisError, OSError):
        pass


def task_status(task: TaskRecord | None, run: RunRecord | None) -> TaskStatus:
    """The `TaskStatus` answer from the Redis copy, or rebuilt from the run record when Redis lost it."""
    if task is not None:
        return task
    if run is None:
        raise NotFound("task not found")
    return task_record(run, None, max_attempts=None)


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


async def acquire_lease(redis: Redis, run_id: str, owner: str, ttl_s: float) -> bool:
    """Take the run's lease unless another live worker holds it."""
    return bool(await redis.set(keys.lease_key(run_id), owner.encode(), px=int(ttl_s * 1000), nx=True))


_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def renew_lease(redis: Redis, run_id: str, owner: str, ttl_s: float) -> bool:
    """Extend the lease (re-create it if Redis lost it); False when another worker has taken it."""
    return bool(await redis.eval(_RENEW, 1, keys.lease_key(run_id), owner, int(ttl_s * 1000)))


async def release_lease(redis: Redis, run_id: str, owner: str) -> None:
    await redis.eval(_RELEASE, 1, keys.lease_key(run_id), owner)


async def lease_holder(redis: Redis, run_id: str) -> str | None:
    raw = await redis.get(keys.lease_key(run_id))
    return None if raw is None else raw.decode()


# --- helpers -------------------------------------------------------------------------------------


async def _read_or_none(storage: Storage, key: str) -> bytes | None:
    try:
        return await storage.read(key)
    except ObjectNotFound:
        return None


async def _bounded_gather(coros: Iterable[Awaitable[T]], limit: int = 16) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[T]) -> T:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the run index orders by it)."""
    return int(time.time() * 1000)
