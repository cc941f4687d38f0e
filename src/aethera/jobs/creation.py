"""Creating a run once its AOI and parameters are validated: shared by `POST .../runs` (in the API) and
the batch feeder (`jobs/batch_feed.py`, in a worker).

Either the run's content key finds a COMPLETED run of the tenant (result reuse, `jobs/reuse.py`): its
committed outputs are copied under the new run's `attempts/1/` and the record is created COMPLETED
naming generation 1, in one create-only write, and nothing is queued; or the record is created
PENDING(1) and its job queued. A copy that fails part-way leaves files under `attempts/1/` but no
record (so nothing can serve them: the artifact index is copied last), and the run is computed instead;
its attempt 1 writes its own outputs (and its index) over whatever the copy left.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aethera import keyspace as keys
from aethera.errors import AetheraError, BackendUnavailable, PreconditionFailed
from aethera.jobs import records, reuse
from aethera.jobs.queue import JobQueue, job_id_for
from aethera.models import RunRecord, RunStatus, utc_now_iso
from aethera.observability.metrics import record_reuse, record_run_status
from aethera.settings import Settings
from aethera.storage.base import Storage

log = logging.getLogger(__name__)


class Deps(Protocol):
    """What creating a run needs: the API's backends, or a worker's (`tasks.WorkerDeps`)."""

    @property
    def storage(self) -> Storage: ...
    @property
    def redis(self) -> Redis: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def queue(self) -> JobQueue: ...


@dataclass
class NewRun:
    """A run's validated inputs."""

    tenant: str
    project_id: str
    project_type: str
    params: dict[str, Any]
    config: dict[str, Any]  # the keys the client set
    aoi_source: str
    aoi_path: str | None
    aoi: Any  # analysis.aoi.AOI, or None when `aoi_bytes` is given
    reuse: bool = True
    idempotency_key_sha256: str | None = None
    batch_id: str | None = None
    background: bool = False  # a batch's site: queued behind single runs (jobs/queue.py)
    aoi_bytes: bytes | None = None  # the AOI as stored (a GeoJSON Feature in EPSG:4326), when already encoded


def _aoi_bytes(aoi: Any) -> bytes:
    """The AOI as `runs/{id}/aoi.geojson` stores it for the worker: a GeoJSON Feature in EPSG:4326."""
    return bytes(aoi.to_geojson())


async def compute_key(new: NewRun, catalog: Any) -> str:
    return await asyncio.to_thread(reuse.content_key, aoi=new.aoi, params=new.params, catalog=catalog)


async def create(
    deps: Deps, new: NewRun, catalog: Any, *, key: str | None = None, run_id: str | None = None
) -> RunRecord:
    """Store (and queue, unless reused) one run; returns its record as created.

    `run_id`: an id chosen beforehand (a batch names its sites' runs before it creates them). Raises
    `PreconditionFailed` when a record with that id exists already."""
    storage, settings = deps.storage, deps.settings
    if key is None:
        key = await compute_key(new, catalog)
    if new.reuse:
        source = await reuse.find_reusable(
            storage, tenant=new.tenant, key=key, cross_tenant=settings.reuse_cross_tenant
        )
        if source is not None:
            try:
                run = await _create_reused(deps, new, key, source, run_id or uuid.uuid4().hex)
            except PreconditionFailed:
                raise  # the record exists: this run was created meanwhile
            except AetheraError as exc:
                log.warning("run reuse of %s failed (%s); computing afresh", source.run_id, exc.code)
            else:
                await record_reuse(deps.redis, "hit")
                return run
        await record_reuse(deps.redis, "miss")
    else:
        await record_reuse(deps.redis, "off")
    return await _create_queued(deps, new, key, run_id or uuid.uuid4().hex)


def _record(new: NewRun, run_id: str, key: str) -> RunRecord:
    now = utc_now_iso()
    return RunRecord(
        run_id=run_id,
        task_id=run_id,  # one task per run: the ids are the same, so either finds both after Redis loss
        project_id=new.project_id,
        project_type=new.project_type,
        params=new.params,
        config=new.config,
        aoi_source=new.aoi_source,
        aoi_path=new.aoi_path,
        created_at=now,
        updated_at=now,
        status=RunStatus.PENDING,
        attempts=0,
        job_id=job_id_for(run_id, 1),
        idempotency_key_sha256=new.idempotency_key_sha256,
        tenant=new.tenant,
        content_key=key,
        batch_id=new.batch_id,
    )


async def _create_reused(deps: Deps, new: NewRun, key: str, source: RunRecord, run_id: str) -> RunRecord:
    storage, redis = deps.storage, deps.redis
    # the source's stored AOI (the same geometry, canonically): the two exports then match
    # read while the outputs are copied (one round trip less); a failed copy cancels the read, so nothing
    # of this attempt is left running once the run is handed to the computation instead
    aoi_read = asyncio.ensure_future(storage.read(keys.run_aoi_key(source.run_id)))
    try:
        await reuse.copy_outputs(storage, source, run_id, 1)
    except BaseException:
        aoi_read.cancel()
        raise
    aoi_bytes = await aoi_read
    run = _record(new, run_id, key)
    run.status = RunStatus.COMPLETED
    run.output_generation = 1  # the copied outputs: stored before the record that names them
    run.reused_from = source.run_id
    run.job_id = None
    run.started_at = run.finished_at = run.created_at
    await records.create_run(storage, run, aoi_bytes, records.now_ms())
    await records.publish_task(redis, run, max_attempts=deps.settings.run_max_attempts)
    await record_run_status(redis, RunStatus.COMPLETED.value)
    return run


async def _create_queued(deps: Deps, new: NewRun, key: str, run_id: str) -> RunRecord:
    storage, redis, settings, queue = deps.storage, deps.redis, deps.settings, deps.queue
    aoi_bytes = new.aoi_bytes if new.aoi_bytes is not None else await asyncio.to_thread(_aoi_bytes, new.aoi)
    run = _record(new, run_id, key)
    await records.create_run(storage, run, aoi_bytes, records.now_ms())
    try:
        await records.save_task(redis, records.task_record(run, None, max_attempts=settings.run_max_attempts))
        await queue.enqueue_run(run.run_id, 1, background=new.background)
    except (RedisError, OSError):
        # the run must not linger as PENDING with no job: it ends FAILED
        def unqueued(r: RunRecord) -> bool:
            if r.status is not RunStatus.PENDING or r.generation != 1:
                return False  # a worker or recovery got to it after all
            r.status = RunStatus.FAILED
            r.error = "the run could not be queued: the queue is unreachable"
            r.error_code = "backend_unavailable"
            r.finished_at = utc_now_iso()
            return True

        await records.update_run(storage, run.run_id, unqueued)
        raise BackendUnavailable("the queue is unreachable; the run was not queued, try again shortly") from None
    await record_run_status(redis, RunStatus.PENDING.value)
    return run
