"""Tasks: `GET /tasks/{id}` (status and live progress) and `DELETE /tasks/{id}` (cancel).

A task's id is its run's id. The status comes from the task record in Redis; when Redis lost it,
from the run record in storage (the truth).
"""

from __future__ import annotations

import logging

from aiohttp import web
from redis.exceptions import RedisError

from aethera.api.ids import path_id
from aethera.api.keys import QUEUE, REDIS, SETTINGS, STORAGE
from aethera.api.responses import json_response, raw_json_response
from aethera.errors import BackendUnavailable, Conflict, NotFound
from aethera.jobs import records
from aethera.models import RunStatus, TaskStatus, utc_now_iso
from aethera.security.auth import tenant_of
from aethera.security.tenancy import owner_of, request_run

log = logging.getLogger(__name__)


async def get_task(request: web.Request) -> web.Response:
    task_id = path_id(request, "task_id", "task")
    try:
        stored = await records.load_task_json(request.app[REDIS], task_id)
    except (RedisError, OSError):
        stored = None  # answer from storage while Redis is away
    if stored is not None:
        if owner_of(stored) != tenant_of(request):
            raise NotFound(f"run {task_id} not found")  # exactly what an unknown id gets below
        return raw_json_response(stored)
    run = await request_run(request, request.app[STORAGE], task_id)
    return json_response(records.task_status(None, run))


async def cancel_task(request: web.Request) -> web.Response:
    """A queued run never starts (200, REVOKED); a running one stops at its next step boundary (202)."""
    task_id = path_id(request, "task_id", "task")
    app = request.app
    storage, redis, queue, settings = app[STORAGE], app[REDIS], app[QUEUE], app[SETTINGS]
    run = await request_run(request, storage, task_id)
    if run.status.is_final:
        raise Conflict(f"the task has already finished ({run.status.value})", status=run.status.value)
    try:
        await records.request_cancel(redis, run.run_id)
        if run.job_id:
            await queue.abort(run.job_id)
    except (RedisError, OSError):
        raise BackendUnavailable("the queue is unreachable; the task was not cancelled, try again") from None

    if run.status is RunStatus.PENDING:
        run.status = RunStatus.REVOKED
        run.cancel_requested = True
        run.finished_at = utc_now_iso()
        run.error = None
        run.error_code = None
        await records.publish(storage, redis, run, max_attempts=settings.run_max_attempts)
        return json_response(records.task_status(None, run), status=200)

    # PROCESSING: the worker owns the record; it ends the run REVOKED when it sees the flag
    try:
        task = await records.load_task(redis, task_id)
    except (RedisError, OSError):
        task = None
    status: TaskStatus = records.task_status(task, run if task is None else None)
    status.cancel_requested = True
    return json_response(status, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/tasks/{task_id}", get_task, name="get_task")
    app.router.add_delete("/tasks/{task_id}", cancel_task, name="cancel_task")
