"""Runs: creating one (validated before it is queued), listing, detail, and its stored outputs."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from aethera import keyspace as keys
from aethera.analysis.params import config_error
from aethera.api.aoi_input import validate_aoi
from aethera.api.bodies import decode_json
from aethera.api.final_cache import FINAL_ANSWERS
from aethera.api.ids import path_id
from aethera.api.keys import CATALOG, EXPORT_ENABLED, REDIS, SETTINGS, STORAGE, AppBackends
from aethera.api.paging import Page, link_next
from aethera.api.responses import encode_json, json_response, raw_json_response
from aethera.api.routes.uploads import load_upload
from aethera.errors import BackendUnavailable, Conflict, InvalidInput, NotFound, ObjectNotFound
from aethera.jobs import creation, listings, records
from aethera.models import (
    IdempotencyRecord,
    RunCreate,
    RunCreateResponse,
    RunDetail,
    RunRecord,
    RunStatus,
    RunSummary,
)
from aethera.security.auth import tenant_of
from aethera.security.tenancy import request_project, request_run
from aethera.security.validation import is_id
from aethera.storage.artifacts import artifact_key, load_index

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,200}\Z")  # printable ASCII, no spaces
_IDEMPOTENCY_LOCK_S = 60


# --- POST /projects/{id}/runs --------------------------------------------------------------------


def _idempotency_digest(request: web.Request, project_id: str) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not _IDEMPOTENCY_RE.match(key):
        raise InvalidInput("Idempotency-Key must be 1 to 200 printable ASCII characters", field=IDEMPOTENCY_HEADER)
    return hashlib.sha256(f"{project_id}\n{key}".encode()).hexdigest()


def _params(body: RunCreate, country: str | None, settings: Any) -> dict[str, Any]:
    """The validated parameters as plain data; `InvalidInput` naming the field when one is wrong."""
    from aethera.analysis.params import RunParams

    params = RunParams.from_request(body.project_type, country, body.config, settings)
    data: dict[str, Any] = msgspec.to_builtins(params)
    return data


async def create_run(request: web.Request) -> web.Response:
    app = request.app
    storage, redis = app[STORAGE], app[REDIS]
    project_id = path_id(request, "project_id", "project")
    project = await request_project(request, storage, project_id)
    digest = _idempotency_digest(request, project_id)
    body = await decode_json(request, RunCreate, explain=config_error)
    request_sha = hashlib.sha256(msgspec.json.encode(body)).hexdigest()

    lock_key = None
    if digest is not None:
        replay = await _replay(request, project_id, digest, request_sha)
        if replay is not None:
            return replay
        lock_key = keys.idempotency_lock_key(digest)
        try:
            locked = await redis.set(lock_key, b"1", ex=_IDEMPOTENCY_LOCK_S, nx=True)
        except (RedisError, OSError):
            raise BackendUnavailable("the queue is unreachable; try again shortly") from None
        if not locked:
            raise Conflict("a request with this Idempotency-Key is still being processed; retry shortly")
    try:
        if digest is not None:  # a concurrent twin may have finished between the check and the lock
            replay = await _replay(request, project_id, digest, request_sha)
            if replay is not None:
                return replay
        return await _create(request, body, project.country, project_id, digest, request_sha)
    finally:
        if lock_key is not None:
            try:
                await redis.delete(lock_key)
            except (RedisError, OSError):
                pass  # it expires


async def _replay(request: web.Request, project_id: str, digest: str, request_sha: str) -> web.Response | None:
    storage = request.app[STORAGE]
    mapping = await records.load_idempotency(storage, project_id, digest)
    if mapping is None:
        return None
    if mapping.request_sha256 and mapping.request_sha256 != request_sha:
        raise Conflict("this Idempotency-Key was already used with a different request body", run_id=mapping.run_id)
    run = await records.load_run(storage, mapping.run_id)
    answer = RunCreateResponse(
        task_id=run.task_id,
        run_id=run.run_id,
        status=run.status,
        message="run already created for this Idempotency-Key",
    )
    resp = json_response(answer, status=202)
    resp.headers["Idempotent-Replayed"] = "true"
    return resp


async def _create(
    request: web.Request,
    body: RunCreate,
    project_country: str | None,
    project_id: str,
    digest: str | None,
    request_sha: str,
) -> web.Response:
    app = request.app
    storage, settings = app[STORAGE], app[SETTINGS]

    if (body.aoi_geojson is None) == (body.aoi_path is None):
        raise InvalidInput("give exactly one AOI source: aoi_geojson or aoi_path", field="aoi_geojson")
    country = body.country if body.country is not None else project_country
    params = _params(body, country, settings)
    source: Any
    aoi_source: str
    filename = body.aoi_path
    if body.aoi_geojson is not None:
        source, aoi_source = msgspec.json.encode(body.aoi_geojson), "geojson"
    else:
        (source, filename), aoi_source = await _uploaded_aoi(request, project_id, body.aoi_path or ""), "upload"
    catalog = await app[CATALOG].get()
    aoi = await validate_aoi(source, filename=filename, catalog=catalog, settings=settings)
    new = creation.NewRun(
        tenant=tenant_of(request),
        project_id=project_id,
        project_type=body.project_type,
        params=params,
        config=msgspec.to_builtins(body.config) if body.config is not None else {},  # the keys the client set
        aoi_source=aoi_source,
        aoi_path=body.aoi_path,
        aoi=aoi,
        reuse=not (body.config is not None and body.config.reuse is False),
        idempotency_key_sha256=digest,
    )
    run = await creation.create(AppBackends(app), new, catalog)
    if digest is not None:
        await records.save_idempotency(
            storage,
            IdempotencyRecord(
                project_id=project_id, run_id=run.run_id, created_at=run.created_at, request_sha256=request_sha
            ),
            digest,
        )
    if run.reused_from is not None:
        message = (
            f"completed at once: the results of run {run.reused_from}, which had the same inputs, "
            "were reused (config.reuse: false computes afresh)"
        )
    else:
        message = "run queued; poll GET /tasks/{task_id} for its progress"
    answer = RunCreateResponse(
        task_id=run.task_id, run_id=run.run_id, status=run.status, message=message, reused_from=run.reused_from
    )
    resp = json_response(answer, status=202)
    resp.headers["Location"] = f"/runs/{run.run_id}"
    return resp


async def _uploaded_aoi(request: web.Request, project_id: str, aoi_path: str) -> tuple[bytes, str]:
    """The bytes of an AOI the caller uploaded and the file name to read them by; never a server path:
    an upload id of the caller's (POST /uploads) or a file uploaded to this project (checked as the
    caller's before this runs). The bytes are checked again by content when `validate_aoi` loads them
    (the name must agree with the content, any zip passes the archive checks): a file stored before
    those checks existed, or by another route, gets no further than a fresh upload would."""
    storage = request.app[STORAGE]
    if is_id(aoi_path):
        try:
            return await load_upload(storage, tenant_of(request), aoi_path)
        except NotFound:  # another tenant's upload reads exactly like an unknown one
            raise InvalidInput(f"aoi_path {aoi_path!r}: no such upload", field="aoi_path") from None
    match = keys.AOI_PATH_RE.match(aoi_path)
    if match is None:
        raise InvalidInput(
            "aoi_path must be an upload id (POST /uploads) or name a file uploaded to this project, "
            "such as uploads/site.geojson (PUT /projects/{id}/uploads/{name})",
            field="aoi_path",
        )
    try:
        return await storage.read(keys.upload_key(project_id, match.group(1))), match.group(1)
    except ObjectNotFound:
        raise InvalidInput(f"aoi_path {aoi_path!r}: no such upload in this project", field="aoi_path") from None


# --- listings and detail -------------------------------------------------------------------------


def summary(run: RunRecord) -> RunSummary:
    return RunSummary(
        run_id=run.run_id,
        project_id=run.project_id,
        project_type=run.project_type,
        created_at=run.created_at,
        status=run.status,
    )


async def list_runs(request: web.Request) -> web.Response:
    project_id = request.query.get("project_id")
    if project_id is not None and not keys.ID_RE.match(project_id):
        raise InvalidInput("project_id must be a project id (32 hex characters)", field="project_id")
    page = Page(request)
    if project_id is not None:
        try:
            await request_project(request, request.app[STORAGE], project_id)
        except NotFound:
            return json_response([])  # another tenant's project lists like an unknown one: nothing
    runs, next_cursor = await listings.list_runs(
        request.app[STORAGE], tenant=tenant_of(request), project_id=project_id, limit=page.limit, cursor=page.cursor
    )
    resp = json_response([summary(r) for r in runs])
    return link_next(request, resp, page, next_cursor, **({"project_id": project_id} if project_id else {}))


async def get_run(request: web.Request) -> web.Response:
    run_id = path_id(request, "run_id", "run")
    finals = request.app[FINAL_ANSWERS]
    cached = finals.get("run", run_id)
    if cached is not None:  # a finished run's answer never changes
        if cached[0] != tenant_of(request):
            raise NotFound(f"run {run_id} not found")
        return raw_json_response(cached[1])
    storage = request.app[STORAGE]
    run = await request_run(request, storage, run_id)
    final_in_storage = run.status.is_final
    if not run.status.is_final:  # a final state storage could not take yet is shown all the same
        run = records.effective_run(run, await records.load_stashed_final(request.app[REDIS], run_id))
    outputs: dict[str, dict[str, str]] = {}
    if run.status is RunStatus.COMPLETED:
        present = {a.name for a in (await load_index(storage, run_id, run.output_generation)).artifacts}
        base = f"/runs/{run_id}"
        results = {
            name: f"{base}/{name}"
            for name, artifact in (("results", keys.RESULTS_NAME), ("legal", keys.LEGAL_NAME))
            if artifact in present
        }
        if results:
            outputs["results"] = results
        layers = {
            layer: f"{base}/biodiversity/{layer}" for layer in keys.LAYER_NAMES if keys.layer_name(layer) in present
        }
        if layers:
            outputs["biodiversity_layers"] = layers
        if request.app[EXPORT_ENABLED]:
            outputs["export"] = {"zip": f"{base}/export"}
    detail = RunDetail(
        **msgspec.structs.asdict(summary(run)),
        outputs=outputs,
        task_id=run.task_id,
        country=run.params.get("country"),
        params=run.params,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        attempts=run.attempts,
        error=run.error,
        error_code=run.error_code,
        reused_from=run.reused_from,
        batch_id=run.batch_id,
    )
    body = encode_json(detail)
    if final_in_storage:  # not a stashed final state: storage may still take its write
        finals.put("run", run_id, run.tenant, body)
    return raw_json_response(body)


# --- stored outputs ------------------------------------------------------------------------------


async def _completed_run(request: web.Request) -> RunRecord:
    run_id = path_id(request, "run_id", "run")
    run = await request_run(request, request.app[STORAGE], run_id)
    if not run.status.is_final:
        run = records.effective_run(run, await records.load_stashed_final(request.app[REDIS], run_id))
    if run.status is RunStatus.REVOKED:
        raise Conflict("the run was cancelled; its outputs are not served", status=run.status.value)
    if run.status is not RunStatus.COMPLETED:
        detail = f"the run is {run.status.value}, not COMPLETED"
        if run.status is RunStatus.FAILED and run.error:
            detail += f": {run.error}"
        raise Conflict(detail, status=run.status.value)
    return run


async def _artifact(request: web.Request, run: RunRecord, name: str, what: str) -> bytes:
    try:
        return await request.app[STORAGE].read(artifact_key(run.run_id, name, run.output_generation))
    except ObjectNotFound:
        raise NotFound(f"this run has no {what}") from None


async def get_results(request: web.Request) -> web.Response:
    run = await _completed_run(request)
    return raw_json_response(await _artifact(request, run, keys.RESULTS_NAME, "results"))


async def get_legal(request: web.Request) -> web.Response:
    run = await _completed_run(request)
    return raw_json_response(await _artifact(request, run, keys.LEGAL_NAME, "legal screening"))


async def get_layer(request: web.Request) -> web.Response:
    layer = request.match_info["layer"]
    if layer not in keys.LAYER_NAMES:
        raise NotFound(f"no layer {layer[:40]!r}; layers are {', '.join(keys.LAYER_NAMES)}")
    run = await _completed_run(request)
    data = await _artifact(request, run, keys.layer_name(layer), f"{layer} layer")
    return raw_json_response(data, content_type="application/geo+json")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/projects/{project_id}/runs", create_run, name="create_run")
    app.router.add_get("/runs", list_runs, name="list_runs")
    app.router.add_get("/runs/{run_id}", get_run, name="get_run")
    app.router.add_get("/runs/{run_id}/results", get_results, name="get_results")
    app.router.add_get("/runs/{run_id}/legal", get_legal, name="get_legal")
    app.router.add_get("/runs/{run_id}/biodiversity/{layer}", get_layer, name="get_layer")
