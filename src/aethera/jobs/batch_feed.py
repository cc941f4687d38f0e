"""The batch feeder: turns a stored batch into one run per site, a chunk at a time, in the workers.

`POST /projects/{id}/batches` only validates the sites and stores the batch (`batches/{id}/batch.json`
naming every site's run id and content key, `batches/{id}/aois.json` with every site's AOI), marks it
active (`index/active-batches/{id}`) and queues `feed_batch(batch_id, 0)`. Each `feed_batch` job creates
the runs of one chunk of `CHUNK_SITES` sites (result reuse applies to each), stores the cursor
(`batches/{id}/feed.json`), and queues the job of the next chunk; the last one drops the active marker.

Why it is durable, and creates no site twice:
- every run id is chosen (and stored in the batch record) before any run exists, and a run record is
  created only with a create-only write; a site whose record exists is skipped, so running a chunk
  again, whole or in part, creates nothing twice;
- the cursor only says where to resume; the run records are the truth;
- a chunk job whose worker dies is run again by the queue; a chunk job lost with Redis is queued again
  by the recovery sweep (`resume_batches`), from the cursor, for every batch still marked active;
- a cancelled batch (`cancel_requested` in its record) creates no more runs; a chunk that raced the
  cancellation cancels the runs it just created itself.

Chunk jobs are queued as interactive jobs (ahead of the batch's own site jobs, `jobs/queue.py`), so
the fan-out proceeds while the sites compute; each chunk holds a worker slot only for its writes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from redis.exceptions import RedisError

from aethera import keyspace as keys
from aethera.errors import AetheraError, NotFound, ObjectNotFound, PreconditionFailed
from aethera.jobs import creation, records
from aethera.jobs.queue import JobQueue
from aethera.models import BatchRecord, RunRecord, RunStatus, utc_now_iso
from aethera.observability.metrics import record_run_status
from aethera.storage.base import Storage

log = logging.getLogger(__name__)

FEED_FUNCTION = "feed_batch"
CHUNK_SITES = 100  # runs created per job: small enough to let single runs through between chunks
_CREATE_CONCURRENCY = 8
_batch_decoder = msgspec.json.Decoder(BatchRecord)
_aois_decoder = msgspec.json.Decoder(list[msgspec.Raw])


class FeedCursor(msgspec.Struct, kw_only=True):
    """`batches/{id}/feed.json`: sites before `next_site` have their runs (a hint for resuming)."""

    next_site: int = 0


def feed_job_id(batch_id: str, chunk: int) -> str:
    return f"feed.{batch_id}.{chunk}"


async def load_batch(storage: Storage, batch_id: str) -> BatchRecord:
    try:
        return _batch_decoder.decode(await storage.read(keys.batch_key(batch_id)))
    except ObjectNotFound:
        raise NotFound("batch not found") from None


async def store_new_batch(storage: Storage, queue: JobQueue, batch: BatchRecord, aois: list[bytes]) -> bool:
    """Store a validated batch and queue its first chunk; False when the queue was unreachable (the
    batch is stored and marked active all the same: the recovery sweep queues it once Redis is back)."""
    await storage.save(keys.batch_aois_key(batch.batch_id), b"[" + b",".join(aois) + b"]")
    await storage.save_if(keys.batch_key(batch.batch_id), msgspec.json.encode(batch), None)
    await storage.save(keys.active_batch_key(batch.batch_id), b"")
    try:
        await queue.enqueue_job(FEED_FUNCTION, feed_job_id(batch.batch_id, 0), batch.batch_id, 0)
    except (RedisError, OSError):
        log.warning("batch %s: stored, its feeder not queued (Redis unreachable); recovery queues it", batch.batch_id)
        return False
    return True


async def read_cursor(storage: Storage, batch_id: str) -> int:
    try:
        return msgspec.json.decode(await storage.read(keys.batch_feed_key(batch_id)), type=FeedCursor).next_site
    except (ObjectNotFound, msgspec.DecodeError):
        return 0


async def feed_batch(ctx: dict[str, Any], batch_id: str, chunk: int) -> str:
    """The queue's entry point: create the runs of one chunk of a batch, then queue the next chunk."""
    deps = ctx["aethera"]
    return await feed_chunk(deps, batch_id, chunk)


async def feed_chunk(deps: creation.Deps, batch_id: str, chunk: int) -> str:
    storage = deps.storage
    try:
        batch = await load_batch(storage, batch_id)
    except NotFound:
        await storage.delete(keys.active_batch_key(batch_id))
        return "no such batch"
    if batch.cancel_requested:
        await storage.delete(keys.active_batch_key(batch_id))
        return "cancelled"
    sites = batch.sites[chunk * CHUNK_SITES : (chunk + 1) * CHUNK_SITES]
    if sites:
        aois = _aois_decoder.decode(await storage.read(keys.batch_aois_key(batch_id)))
        sem = asyncio.Semaphore(_CREATE_CONCURRENCY)

        async def one(position: int) -> RunRecord | None:
            site = batch.sites[position]
            async with sem:
                if await storage.exists(keys.run_record_key(site.run_id)):
                    return None  # created by an earlier try of this chunk
                new = creation.NewRun(
                    tenant=batch.tenant,
                    project_id=batch.project_id,
                    project_type=batch.project_type,
                    params=batch.params,
                    config=batch.config,
                    aoi_source="geojson",
                    aoi_path=None,
                    aoi=None,
                    aoi_bytes=bytes(aois[position]),
                    reuse=batch.reuse,
                    batch_id=batch_id,
                    background=True,
                )
                try:
                    return await creation.create(deps, new, None, key=site.content_key, run_id=site.run_id)
                except PreconditionFailed:
                    return None  # a concurrent try of this chunk created it first

        start = chunk * CHUNK_SITES
        created = await asyncio.gather(*(one(start + i) for i in range(len(sites))))
        # a cancellation that landed while this chunk was being created: its runs are cancelled here
        if (await load_batch(storage, batch_id)).cancel_requested:
            await asyncio.gather(*(cancel_run(deps, run.run_id) for run in created if run is not None))
            await storage.delete(keys.active_batch_key(batch_id))
            return "cancelled"
    next_site = min((chunk + 1) * CHUNK_SITES, len(batch.sites))
    await storage.save(keys.batch_feed_key(batch_id), msgspec.json.encode(FeedCursor(next_site=next_site)))
    if next_site >= len(batch.sites):
        await storage.delete(keys.active_batch_key(batch_id))
        return f"fed {len(batch.sites)} sites"
    await deps.queue.enqueue_job(FEED_FUNCTION, feed_job_id(batch_id, chunk + 1), batch_id, chunk + 1)
    return f"fed sites {chunk * CHUNK_SITES}-{next_site - 1}"


async def resume_batches(storage: Storage, queue: JobQueue) -> list[str]:
    """Recovery: queue the chunk at the cursor of every batch still being fed (a no-op for a batch whose
    chunk job is queued or running: the job id is the same)."""
    resumed = []
    async for stat in storage.list(keys.ACTIVE_BATCHES_INDEX):
        batch_id = stat.key[len(keys.ACTIVE_BATCHES_INDEX) :]
        if not keys.ID_RE.match(batch_id):
            continue
        chunk = await read_cursor(storage, batch_id) // CHUNK_SITES
        if await queue.enqueue_job(FEED_FUNCTION, feed_job_id(batch_id, chunk), batch_id, chunk) is not None:
            resumed.append(batch_id)
    return resumed


def _cancel(run: RunRecord) -> bool:
    if run.status.is_final:
        return False
    run.cancel_requested = True
    if run.status is RunStatus.PENDING:
        run.status = RunStatus.REVOKED
        run.finished_at = utc_now_iso()
        run.error = run.error_code = None
    return True


async def cancel_run(deps: creation.Deps, run_id: str) -> None:
    """Cancel one unfinished run as `DELETE /tasks/{id}` does: recorded in its record first (conditional
    write), then flagged in Redis and its job aborted. A final or missing run is left as it is."""
    changed = False

    def change(run: RunRecord) -> bool:
        nonlocal changed
        changed = _cancel(run)  # decided again on every retry of the conditional write
        return changed

    try:
        run = await records.update_run(deps.storage, run_id, change)
    except NotFound:
        return
    if not changed:
        return
    try:
        await records.request_cancel(deps.redis, run_id)
        if run.job_id:
            await deps.queue.abort(run.job_id)
        await records.publish_task(deps.redis, run, max_attempts=deps.settings.run_max_attempts)
        if run.status is RunStatus.REVOKED:
            await record_run_status(deps.redis, RunStatus.REVOKED.value)
    except (RedisError, OSError):
        log.warning("run %s: cancellation recorded in storage only (Redis unreachable)", run_id)
    except AetheraError as exc:
        log.warning("run %s: cancellation recorded, not published (%s)", run_id, exc.code)
