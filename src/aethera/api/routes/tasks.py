"""Tasks: `GET /tasks/{id}` (status and live progress) and `DELETE /tasks/{id}` (cancel).

A task's id is its run's id. A final state is served from the task copy in Redis alone (the common
poll of a finished run costs one Redis read); anything else is checked against the run record in
storage, the truth, so a copy that a lost write left behind can never show a run as running after it
ended. A final copy found missing or behind the record is written again (repaired) on the way.
"""

from __future__ import annotations

import logging

from aiohttp import web
from redis.exceptions import RedisError

from aethera.api.final_cache import FINAL_ANSWERS
from aethera.api.ids import path_id
from aethera.api.keys import QUEUE, REDIS, SETTINGS, STORAGE
from aethera.api.responses import json_response, raw_json_response
from aethera.errors import Conflict, NotFound
from aethera.jobs import records
from aethera.models import RunRecord, RunStatus, TaskRecord, utc_now_iso
from aethera.observability.metrics import record_run_status
from aethera.security.auth import tenant_of
from aethera.security.tenancy import owner_of, request_run

log = logging.getLogger(__name__)


async def get_task(request: web.Request) -> web.Response:
    task_id = path_id(request, "task_id", "task")
    tenant = tenant_of(request)
    finals = request.app[FINAL_ANSWERS]
    cached = finals.get("task", task_id)
    if cached is not None:
        if cached[0] != tenant:
            raise NotFound(f"run {task_id} not found")
        return raw_json_response(cached[1])
    redis = request.app[REDIS]
    try:
        stored = await records.load_task_json(redis, task_id)
    except (RedisError, OSError):
        stored = None  # answer from storage while Redis is away
    copy: TaskRecord | None = None
    if stored is not None:
        owner = owner_of(stored)
        if owner != tenant:
            raise NotFound(f"run {task_id} not found")  # exactly what an unknown id gets below
        copy = records.decode_task(stored)
        if copy.status.is_final:
            finals.put("task", task_id, owner, stored)
            return raw_json_response(stored)  # final states never change
    run = await request_run(request, request.app[STORAGE], task_id)
    stashed = None if run.status.is_final else await records.load_stashed_final(redis, task_id)
    answer = records.task_view(copy, run, stashed)
    if answer.status.is_final and run.status.is_final:
        await records.publish_task(
            redis,
            run,
            answer.progress,  # repair, keeping the last progress
            max_attempts=request.app[SETTINGS].run_max_attempts,
        )
    return json_response(answer)


async def cancel_task(request: web.Request) -> web.Response:
    """A queued run never starts (200, REVOKED); a running one stops at its next step boundary (202).

    The cancellation is recorded in the run record first (a conditional write, so it either lands before
    a concurrent completion, which then ends REVOKED, or finds the run final: 409), then flagged in Redis
    and the job aborted so that a worker notices at once."""
    task_id = path_id(request, "task_id", "task")
    app = request.app
    storage, redis, queue, settings = app[STORAGE], app[REDIS], app[QUEUE], app[SETTINGS]
    await request_run(request, storage, task_id)  # another tenant's run answers as an unknown one

    def cancel(run: RunRecord) -> bool:
        if run.status.is_final:
            raise Conflict(f"the task has already finished ({run.status.value})", status=run.status.value)
        run.cancel_requested = True
        if run.status is RunStatus.PENDING:
            run.status = RunStatus.REVOKED
            run.finished_at = utc_now_iso()
            run.error = run.error_code = None
        return True

    run = await records.update_run(storage, task_id, cancel)
    try:
        await records.request_cancel(redis, run.run_id)
        if run.job_id:
            await queue.abort(run.job_id)
    except (RedisError, OSError):
        # recorded durably: a queued run is REVOKED already, a running one is revoked at its commit
        log.warning("run %s: cancellation recorded in storage only (Redis unreachable)", run.run_id)
    await records.publish_task(redis, run, max_attempts=settings.run_max_attempts)
    if run.status is RunStatus.REVOKED:
        await record_run_status(redis, RunStatus.REVOKED.value)
        return json_response(records.task_record(run, None, max_attempts=settings.run_max_attempts), status=200)
    return json_response(records.task_record(run, None, max_attempts=settings.run_max_attempts), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/tasks/{task_id}", get_task, name="get_task")
    app.router.add_delete("/tasks/{task_id}", cancel_task, name="cancel_task")
