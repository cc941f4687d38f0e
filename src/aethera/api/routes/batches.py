"""Batches: many candidate sites screened at once, one run per site.

`POST /projects/{id}/batches` validates every feature before anything is stored (one thread, off the
loop), stores the batch (every site's run id, content key and AOI) and answers 202; the runs are
created in the background by the batch feeder, a chunk at a time (`jobs/batch_feed.py`: durable,
resumable, never a site twice). Sites' jobs are *background* jobs (`jobs/queue.py`): a single run of
any tenant goes ahead of every batch job already waiting. One site's run failing never fails the
batch. `DELETE /batches/{id}` records the cancellation in the batch (the feeder creates no more runs)
and cancels every created, unfinished site as `DELETE /tasks` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from typing import Any

import msgspec
from aiohttp import web

from aethera import batch_summary
from aethera import keyspace as keys
from aethera.analysis.params import config_error
from aethera.api.aoi_input import aoi_geojson_bytes, check_aoi_sync
from aethera.api.bodies import decode_json
from aethera.api.ids import path_id
from aethera.api.keys import CATALOG, QUEUE, REDIS, SETTINGS, STORAGE, AppBackends
from aethera.api.responses import json_response
from aethera.api.routes.export import CHUNK_BYTES, RangeUnsatisfiable, parse_range
from aethera.api.routes.runs import _params
from aethera.api.routes.uploads import load_upload
from aethera.batch_export import BatchArchive, iter_batch_archive
from aethera.errors import AetheraError, InvalidInput, NotFound, ObjectNotFound, RangeNotSatisfiable
from aethera.export import ExportMember, archive_time, plan_export
from aethera.jobs import batch_feed, records, reuse
from aethera.models import (
    BatchCreate,
    BatchCreated,
    BatchRecord,
    BatchSite,
    BatchStatus,
    InvalidSite,
    RunCreate,
    RunRecord,
    RunStatus,
    utc_now_iso,
)
from aethera.security.archives import ArchiveLimits
from aethera.security.auth import tenant_of
from aethera.security.tenancy import request_project
from aethera.storage.artifacts import artifact_key

log = logging.getLogger(__name__)
_READ_CONCURRENCY = 16
_run_decoder = msgspec.json.Decoder(RunRecord)


# --- POST /projects/{id}/batches -----------------------------------------------------------------


def _validate_sites(
    features: list[Any], prop: str, catalog: Any, settings: Any, params: dict[str, Any]
) -> tuple[list[tuple[BatchSite, bytes]], list[InvalidSite]]:
    """Every feature checked as an AOI (in a thread): each valid one as a site (its run id chosen now)
    with its AOI as a run stores it, and the invalid ones with their reasons."""
    from aethera.analysis.sites import site_name  # the geospatial stack loads in this thread, not at import

    context = reuse.key_context(catalog)
    valid, invalid = [], []
    for i, feature in enumerate(features):
        name = site_name(feature, i, prop)
        if (
            not isinstance(feature, dict)
            or feature.get("type") != "Feature"
            or not isinstance(feature.get("geometry"), dict)
        ):
            invalid.append(InvalidSite(index=i, name=name, reason="not a GeoJSON Feature with a geometry"))
            continue
        try:
            aoi = check_aoi_sync(msgspec.json.encode(feature), None, catalog, settings)
        except AetheraError as exc:
            invalid.append(InvalidSite(index=i, name=name, reason=exc.detail))
            continue
        site = BatchSite(
            index=i,
            name=name,
            run_id=uuid.uuid4().hex,
            area_ha=round(aoi.area_m2 / 1e4, 4),
            content_key=reuse.content_key(aoi=aoi, params=params, context=context),
        )
        valid.append((site, aoi_geojson_bytes(aoi)))
    return valid, invalid


async def _features(request: web.Request, body: BatchCreate) -> list[Any]:
    if (body.features is None) == (body.upload_id is None):
        raise InvalidInput("give exactly one source of sites: features or upload_id", field="features")
    limit = request.app[SETTINGS].batch_max_sites
    if body.upload_id is not None:
        return await _upload_features(request, body.upload_id, limit)
    collection: Any = body.features
    if (
        not isinstance(collection, dict)
        or collection.get("type") != "FeatureCollection"
        or not isinstance(collection.get("features"), list)
    ):
        raise InvalidInput("the sites must be a GeoJSON FeatureCollection", field="features")
    features: list[Any] = collection["features"]
    if not features:
        raise InvalidInput("the FeatureCollection holds no features", field="features")
    if len(features) > limit:
        raise InvalidInput(f"a batch holds at most {limit} sites; this one has {len(features)}", field="features")
    return features


async def _upload_features(request: web.Request, upload_id: str, limit: int) -> list[Any]:
    """Every feature of an uploaded GeoJSON, GeoPackage, zipped Shapefile or KML file, read in a thread
    through the single AOI's safeguards (content sniffing, archive checks, KML checks; `analysis.sites`)."""
    from aethera.analysis.sites import read_sites  # the geospatial stack, loaded when first needed

    settings = request.app[SETTINGS]
    try:
        data, stored_name = await load_upload(request.app[STORAGE], tenant_of(request), upload_id)
    except NotFound:
        raise InvalidInput(f"upload_id {upload_id!r}: no such upload", field="upload_id") from None
    limits = ArchiveLimits.from_settings(settings)
    try:
        return await asyncio.to_thread(read_sites, data, stored_name, limits=limits, max_features=limit)
    except InvalidInput as exc:  # the file as a whole is unusable: its own code and reason, against the field
        raise type(exc)(f"upload_id {upload_id!r}: {exc.detail}", field="upload_id") from None
    except Exception:  # a reader's own exception types (GDAL, JSON, XML): the file is what is wrong
        log.info("batch upload %s did not read as sites", upload_id, exc_info=True)
        raise InvalidInput(f"upload_id {upload_id!r}: the file could not be read as sites", field="upload_id") from None


async def create_batch(request: web.Request) -> web.Response:
    app = request.app
    storage, settings = app[STORAGE], app[SETTINGS]
    project_id = path_id(request, "project_id", "project")
    project = await request_project(request, storage, project_id)
    body = await decode_json(request, BatchCreate, explain=config_error)
    features = await _features(request, body)
    country = body.country if body.country is not None else project.country
    params = _params(RunCreate(project_type=body.project_type, config=body.config), country, settings)
    catalog = await app[CATALOG].get()
    valid, invalid = await asyncio.to_thread(_validate_sites, features, body.name_property, catalog, settings, params)
    if invalid and (body.on_invalid == "reject" or not valid):
        shown = [msgspec.to_builtins(s) for s in invalid[:100]]
        raise InvalidInput(
            f"{len(invalid)} of {len(features)} sites are invalid; nothing was queued "
            f'(on_invalid: "skip" queues the valid ones)',
            field="features",
            invalid=shown,
            invalid_count=len(invalid),
        )

    batch = BatchRecord(
        batch_id=uuid.uuid4().hex,
        project_id=project_id,
        tenant=tenant_of(request),
        project_type=body.project_type,
        config=msgspec.to_builtins(body.config) if body.config is not None else {},
        params=params,
        reuse=not (body.config is not None and body.config.reuse is False),
        name_property=body.name_property,
        created_at=utc_now_iso(),
        invalid=invalid,
        sites=[site for site, _ in valid],
    )
    # stored whole before the answer; the feeder (a worker) creates the runs in the background
    await batch_feed.store_new_batch(app[STORAGE], app[QUEUE], batch, [aoi for _, aoi in valid])
    answer = BatchCreated(batch_id=batch.batch_id, project_id=project_id, sites=len(batch.sites), invalid=invalid)
    resp = json_response(answer, status=202)
    resp.headers["Location"] = f"/batches/{batch.batch_id}"
    return resp


# --- reading a batch -----------------------------------------------------------------------------


async def _load_batch(request: web.Request) -> BatchRecord:
    batch = await batch_feed.load_batch(request.app[STORAGE], path_id(request, "batch_id", "batch"))
    if batch.tenant != tenant_of(request):  # another tenant's batch answers like an unknown one
        raise NotFound("batch not found")
    return batch


async def _bounded(coros: list[Any], limit: int = _READ_CONCURRENCY) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def _runs(request: web.Request, batch: BatchRecord) -> list[RunRecord | None]:
    return await _read_runs(request, batch.sites)


async def _read_runs(request: web.Request, sites: list[BatchSite]) -> list[RunRecord | None]:
    storage, redis = request.app[STORAGE], request.app[REDIS]

    async def one(run_id: str) -> RunRecord | None:
        try:
            run = _run_decoder.decode(await storage.read(keys.run_record_key(run_id)))
        except ObjectNotFound:
            return None
        if not run.status.is_final:  # a final state storage could not take yet
            run = records.effective_run(run, await records.load_stashed_final(redis, run_id))
        return run

    return await _bounded([one(s.run_id) for s in sites])


def _site_status(batch: BatchRecord, run: RunRecord | None) -> RunStatus:
    """A site whose run the feeder has not created yet is PENDING, or REVOKED once the batch is cancelled
    (the feeder then never creates it)."""
    if run is not None:
        return run.status
    return RunStatus.REVOKED if batch.cancel_requested else RunStatus.PENDING


def _status(batch: BatchRecord, runs: list[RunRecord | None]) -> BatchStatus:
    counts = {s.value: 0 for s in RunStatus}
    for run in runs:
        counts[_site_status(batch, run).value] += 1
    total = len(batch.sites)
    finished = sum(counts[s.value] for s in RunStatus if s.is_final)
    created = [run for run in runs if run is not None]
    return BatchStatus(
        batch_id=batch.batch_id,
        project_id=batch.project_id,
        created_at=batch.created_at,
        total=total,
        created=len(created),
        counts=counts,
        finished=finished,
        reused=sum(1 for run in created if run.reused_from is not None),
        progress_pct=round(100.0 * finished / total, 1) if total else 100.0,
        done=finished == total,
        cancel_requested=batch.cancel_requested,
        invalid=batch.invalid,
    )


async def get_batch(request: web.Request) -> web.Response:
    batch = await _load_batch(request)
    return json_response(_status(batch, await _runs(request, batch)))


async def cancel_batch(request: web.Request) -> web.Response:
    """Recorded in the batch first (the feeder then creates no more runs), then every created, unfinished
    site is cancelled exactly as `DELETE /tasks/{id}` cancels one run."""
    storage = request.app[STORAGE]
    batch = await _load_batch(request)
    if not batch.cancel_requested:
        batch.cancel_requested = True  # the API is the batch record's only writer after its creation
        await storage.save(keys.batch_key(batch.batch_id), msgspec.json.encode(batch))
    backends = AppBackends(request.app)
    await _bounded([batch_feed.cancel_run(backends, s.run_id) for s in batch.sites])
    return json_response(_status(batch, await _runs(request, batch)), status=202)


async def _read_json(storage: Any, key: str) -> Any:
    try:
        raw = await storage.read(key)
    except ObjectNotFound:
        return None
    try:
        return await asyncio.to_thread(msgspec.json.decode, raw) if len(raw) > 1 << 20 else msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


async def _site_row(storage: Any, batch: BatchRecord, site: BatchSite, run: RunRecord | None) -> dict[str, Any]:
    """A site's summary row, read from its run's record, results and legal documents."""
    results = legal = None
    if run is not None and run.status is RunStatus.COMPLETED:
        results = await _read_json(storage, artifact_key(run.run_id, keys.RESULTS_NAME, run.output_generation))
        legal = await _read_json(storage, artifact_key(run.run_id, keys.LEGAL_NAME, run.output_generation))
    shown = msgspec.to_builtins(run) if run else {"status": _site_status(batch, run).value}
    return batch_summary.site_row(msgspec.to_builtins(site), shown, results, legal)


async def summary_rows(request: web.Request, batch: BatchRecord) -> tuple[list[dict[str, Any]], list[Any]]:
    storage = request.app[STORAGE]
    runs = await _runs(request, batch)
    rows = await _bounded([_site_row(storage, batch, s, r) for s, r in zip(batch.sites, runs, strict=True)])
    return rows, runs


async def _geometry(storage: Any, run_id: str) -> tuple[str, Any]:
    """A site's stored AOI geometry (EPSG:4326), or None when its run was not created."""
    doc = await _read_json(storage, keys.run_aoi_key(run_id))
    features = doc.get("features") if isinstance(doc, dict) else None
    return run_id, features[0].get("geometry") if isinstance(features, list) and features else None


def _wanted_format(request: web.Request) -> str:
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("json", "csv", "geojson"):
            raise InvalidInput("format is json, csv or geojson", field="format")
        return fmt
    accept = request.headers.get("Accept", "")
    if "text/csv" in accept:
        return "csv"
    if "application/geo+json" in accept:
        return "geojson"
    return "json"


async def get_summary(request: web.Request) -> web.Response:
    batch = await _load_batch(request)
    sort = batch_summary.parse_sort(request.query.get("sort"))
    fmt = _wanted_format(request)
    rows, _ = await summary_rows(request, batch)
    rows = batch_summary.rank(rows, sort)
    if fmt == "csv":
        text = await asyncio.to_thread(batch_summary.to_csv, rows)
        resp = web.Response(text=text, content_type="text/csv", charset="utf-8")
        resp.headers["Content-Disposition"] = f'attachment; filename="batch_{batch.batch_id}_summary.csv"'
        return resp
    if fmt == "geojson":
        storage = request.app[STORAGE]

        geoms = dict(await _bounded([_geometry(storage, s.run_id) for s in batch.sites]))
        body = await asyncio.to_thread(msgspec.json.encode, batch_summary.to_geojson(rows, geoms))
        return web.Response(body=body, content_type="application/geo+json")
    return json_response(
        {"batch_id": batch.batch_id, "sort": list(sort), "columns": dict(batch_summary.COLUMNS), "rows": rows}
    )


def _member_dir(site: BatchSite) -> str:
    """`sites/00012_north-field/`: the index keeps names unique, the slug keeps them readable and safe."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", site.name).strip("-")[:60] or "site"
    return f"sites/{site.index:05d}_{slug}/"


# Sites read per step while the export is planned: their records, rows and members are written to the
# plan's database before the next page is read, so the plan's memory does not grow with the batch.
EXPORT_PAGE_SITES = 128


async def _plan_batch_export(request: web.Request, batch: BatchRecord, archive: BatchArchive) -> None:
    """Every site's summary row and (for a completed run) its run folder's members into `archive`, a
    page of sites at a time, then the archive laid out (`BatchArchive.finish`)."""
    storage = request.app[STORAGE]

    async def site_members(site: BatchSite, run: RunRecord) -> list[ExportMember]:
        # only the members are kept: each run's own layout (segments, central directory) is dropped here
        run_plan = await plan_export(storage, run.run_id, tenant=batch.tenant)
        prefix = _member_dir(site)
        return [msgspec.structs.replace(m, name=prefix + m.name) for m in run_plan.members]

    for first in range(0, len(batch.sites), EXPORT_PAGE_SITES):
        sites = batch.sites[first : first + EXPORT_PAGE_SITES]
        runs = await _read_runs(request, sites)
        rows = await _bounded([_site_row(storage, batch, s, r) for s, r in zip(sites, runs, strict=True)])
        geoms = await _bounded([_geometry(storage, s.run_id) for s in sites])
        done = [(s, r) for s, r in zip(sites, runs, strict=True) if r is not None and r.status is RunStatus.COMPLETED]
        members = [m for site_list in await _bounded([site_members(s, r) for s, r in done]) for m in site_list]
        page = [(first + i, row, geometry) for i, (row, (_, geometry)) in enumerate(zip(rows, geoms, strict=True))]
        await asyncio.to_thread(archive.add_sites, page, members)
    await asyncio.to_thread(archive.finish)


async def export_batch(request: web.Request) -> web.StreamResponse:
    """GET and HEAD /batches/{id}/export: one ZIP with the summary (CSV, GeoJSON) and each completed
    site's run folder (its own export's members), with the guarantees of a run's export: an exact
    length, a strong ETag, a single `Range` served as 206 (416 outside the archive), stored members
    streamed from storage one chunk at a time. The plan is held in a temporary SQLite file, not in
    memory (`aethera.batch_export`); it is removed on every way out.

    A batch's archive changes while its sites run, so only an entity tag validates `If-Range` (no
    Last-Modified is sent)."""
    storage = request.app[STORAGE]
    batch = await _load_batch(request)
    archive = await asyncio.to_thread(BatchArchive, archive_time(batch.created_at))
    try:
        await _plan_batch_export(request, batch, archive)
        headers = {
            "ETag": archive.etag,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="batch_{batch.batch_id}_export.zip"',
            "Cache-Control": "private, no-cache",
        }
        start, end, status = 0, archive.size, 200
        range_header, if_range = request.headers.get("Range"), request.headers.get("If-Range")
        if range_header is not None and (if_range is None or if_range.strip() == archive.etag):
            try:
                wanted = parse_range(range_header, archive.size)
            except RangeUnsatisfiable:
                raise RangeNotSatisfiable(
                    f"the requested range lies outside the archive ({archive.size} bytes)",
                    headers={**headers, "Content-Range": f"bytes */{archive.size}"},
                ) from None
            if wanted is not None:
                start, end, status = *wanted, 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{archive.size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "application/zip"
        response.content_length = end - start
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        try:
            async with contextlib.aclosing(
                iter_batch_archive(archive, storage, start, end, chunk_size=CHUNK_BYTES)
            ) as chunks:
                async for chunk in chunks:
                    await response.write(chunk)
        except ConnectionError:
            return response  # the client went away; the storage stream was closed on the way out
        except AetheraError as exc:
            # headers (and an exact length) are sent: cut the connection rather than send a wrong archive
            log.error("export of batch %s aborted: %s", batch.batch_id, exc.code)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        # shielded: a cancelled handler (client gone) still waits for the plan's files to be removed
        await asyncio.shield(asyncio.to_thread(archive.close))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/projects/{project_id}/batches", create_batch, name="create_batch")
    app.router.add_get("/batches/{batch_id}", get_batch, name="get_batch")
    app.router.add_delete("/batches/{batch_id}", cancel_batch, name="cancel_batch")
    app.router.add_get("/batches/{batch_id}/summary", get_summary, name="get_batch_summary")
    app.router.add_get("/batches/{batch_id}/export", export_batch, allow_head=True, name="export_batch")
