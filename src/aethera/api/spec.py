"""What each route of the service takes and answers, for the OpenAPI document (`api/openapi.py`).

Schemas are not written here: each entry names the msgspec type a route decodes or encodes (the routes'
own types included), and the generator derives the JSON Schema from it. A test fails when a registered route has no entry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from aethera import __version__
from aethera import keyspace as keys
from aethera.api.openapi import Body, Operation, Param, build_openapi
from aethera.api.routes.health import Health
from aethera.api.routes.projects import Upload
from aethera.api.routes.ready import Readiness
from aethera.api.routes.uploads import FILE_FIELD, UploadCreated
from aethera.models import (
    BatchCreate,
    BatchCreated,
    BatchStatus,
    Id,
    Project,
    ProjectCreate,
    RunCreate,
    RunCreateResponse,
    RunDetail,
    RunSummary,
    TaskStatus,
)

Layer = Literal["natura", "overlap", "sensitivity", "eligible"]
# the route's own check, in JSON Schema's (ECMA) regex dialect: Python's end anchor \Z becomes $
UploadName = Annotated[str, msgspec.Meta(pattern=keys.UPLOAD_NAME_RE.pattern.replace("\\Z", "$"))]
JsonObject = dict[str, Any]
# what GET /runs accepts, stated as the route checks it (so a client, and a fuzzer, knows what is valid)
RunsCursor = Annotated[str, msgspec.Meta(pattern=keys.RUN_INDEX_NAME_RE.pattern.replace("\\Z", "$"))]
PageSize = Annotated[int, msgspec.Meta(ge=1, le=500)]

# --- the results document (analysis/results.py `document`), as far as a client renders it ---------
# Maps a client renders entry by entry hold scalars only; what qualifies them lives in sibling objects.


class KPIDefinition(msgspec.Struct, kw_only=True):
    unit: str
    definition: str
    source: str | None = None
    reason: str | None = None  # why the KPI is null, or a caveat on how it was computed
    coverage_ratio: float | None = None  # share of the AOI (0..1) the land-cover layer covers


class IndexScore(msgspec.Struct, kw_only=True):
    score: float | None  # 0-100; null with the reason in `drivers`
    category: str | None = None
    confidence: float | None = None
    drivers: list[JsonObject] = msgspec.field(default_factory=list)
    model: JsonObject | None = None


class BiodiversityResults(msgspec.Struct, kw_only=True):
    available: bool
    reason: str | None = None
    score: float | None = None  # the sensitivity index's score (mirrors `sensitivity.score`)
    category: str | None = None  # and its category
    sensitivity: IndexScore | None = None
    protected_overlap_ha: float | None = None
    protected_overlap_pct: float | None = None


class RunResults(msgspec.Struct, kw_only=True):
    run_id: str
    project_id: str | None
    project_type: str | None
    created_at: str | None
    land_cover: JsonObject
    biodiversity: BiodiversityResults
    # figure -> number or null (tCO2e, tCO2e/year, MWh/year, years, MW ...)
    emissions: dict[str, float | None]
    # the breakdown by land-cover class, the factors used with their sources, notes, the technology,
    # the land-cover coverage the land-use change rests on, why the payback is null
    emissions_details: JsonObject
    kpis: dict[str, float | None]  # KPI name -> value; null when it could not be computed
    kpi_definitions: dict[str, KPIDefinition]  # KPI name -> unit, definition, source, reason, coverage
    resm: IndexScore | None
    ahsm: IndexScore | None
    cim: IndexScore | None
    receptor_distances: JsonObject


TITLE = "AETHERA"
DESCRIPTION = (
    "Environmental screening of planned solar and wind projects. Create a project, submit a run with an "
    "area of interest (AOI), poll its task until it is `COMPLETED`, then read the results, the legal "
    "screening and the map layers, or download the whole run as a ZIP.\n\n"
    "Every error answer is JSON `{detail, code}`: `detail` is written for the user, `code` is stable. "
    "Every answer carries `X-Request-ID` (the client's own when it sent a short, plain one); quote it "
    "when reporting a problem."
)

COMMON_ERRORS = {
    429: "Too many requests for this key; wait for `Retry-After` seconds.",
    500: "An unexpected error; `request_id` names it in the service's logs.",
    503: "Redis or storage is unreachable right now (`code` = `backend_unavailable`); retry shortly.",
}
AUTH_ERRORS = {
    401: "No valid API key in `Authorization: Bearer <key>`.",
    403: "The key may not do this (for example a read-only key on a write).",
}
_NOT_FOUND_PROJECT = {404: "No such project (or not visible to this key)."}
_NOT_FOUND_RUN = {404: "No such run (or not visible to this key)."}
_NOT_DONE = {409: "The run is not COMPLETED (`status` says where it stands) or was cancelled."}

_ID = {"project_id": Id, "run_id": Id, "task_id": Id}


def _ids(*names: str) -> dict[str, Any]:
    return {n: _ID[n] for n in names}


def _json_any(description: str) -> Body:
    return Body(JsonObject, description=description)


OPERATIONS: dict[tuple[str, str], Operation] = {
    # --- projects --------------------------------------------------------------------------------
    ("POST", "/projects"): Operation(
        tag="projects",
        summary="Create a project",
        request=Body(ProjectCreate),
        responses={201: Body(Project, description="The new project.")},
    ),
    ("GET", "/projects"): Operation(
        tag="projects",
        summary="List projects",
        responses={200: Body(list[Project], description="Every project of this key's tenant.")},
    ),
    ("GET", "/projects/{project_id}"): Operation(
        tag="projects",
        summary="Read a project",
        responses={200: Body(Project)},
        errors=_NOT_FOUND_PROJECT,
        path_params=_ids("project_id"),
    ),
    ("PUT", "/projects/{project_id}/uploads/{name}"): Operation(
        tag="projects",
        summary="Upload an AOI file",
        request=Body(
            schema={"type": "string", "contentMediaType": "application/octet-stream"},
            media_type="application/octet-stream",
            description="The file's bytes: GeoJSON, zipped Shapefile, GeoPackage, KML or WKT, as the "
            "extension of `name` says. Its `aoi_path` in the answer goes into `RunCreate.aoi_path`.",
        ),
        responses={201: Body(Upload, description="Where the file is stored.")},
        errors={
            **_NOT_FOUND_PROJECT,
            413: "The file is larger than `AETHERA_MAX_UPLOAD_BYTES`.",
            422: "The name or the file is not acceptable; `detail` says why.",
        },
        path_params={"project_id": Id, "name": UploadName},
    ),
    # --- uploads ---------------------------------------------------------------------------------
    ("POST", "/uploads"): Operation(
        tag="uploads",
        summary="Upload an AOI file",
        request=Body(
            schema={
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {FILE_FIELD: {"type": "string", "contentMediaType": "application/octet-stream"}},
            },
            media_type="multipart/form-data",
            description=f"One part named `{FILE_FIELD}`: a GeoJSON, zipped Shapefile, GeoPackage or KML file "
            "(the file name's extension says which). Its `upload_id` goes into `RunCreate.aoi_path`.",
        ),
        responses={201: Body(UploadCreated, description="Checked and stored.")},
        errors={
            400: "The body is not multipart/form-data with one `file` part.",
            413: "The file is larger than `AETHERA_MAX_UPLOAD_BYTES`.",
            422: "The file is not a readable AOI of its format, or an archive was refused; `detail` says why.",
        },
        params=[
            Param(
                "purpose",
                "query",
                str,
                "`aoi` (default): the file must load as one AOI. `sites`: a file of many sites for "
                "`POST /projects/{project_id}/batches` (`upload_id`); every feature is read, each checked later as "
                "its own AOI, at most `AETHERA_BATCH_MAX_SITES`.",
            )
        ],
    ),
    ("GET", "/uploads/{upload_id}"): Operation(
        tag="uploads",
        summary="Read what was uploaded",
        responses={200: Body(UploadCreated)},
        errors={404: "No such upload (or not visible to this key)."},
        path_params={"upload_id": Id},
    ),
    # --- batches ---------------------------------------------------------------------------------
    ("POST", "/projects/{project_id}/batches"): Operation(
        tag="batches",
        summary="Screen many sites at once",
        request=Body(BatchCreate, description="Exactly one of `features` (a FeatureCollection) and `upload_id`."),
        responses={
            202: Body(
                BatchCreated,
                description="The batch is stored; one run per valid site is created in the background (result reuse applies).",
            )
        },
        errors={
            **_NOT_FOUND_PROJECT,
            422: "A site is invalid (`invalid` lists them with reasons; nothing was queued), or a parameter is.",
        },
        path_params=_ids("project_id"),
    ),
    ("GET", "/batches/{batch_id}"): Operation(
        tag="batches",
        summary="A batch's progress",
        responses={200: Body(BatchStatus, description="Runs by status, and how many have finished.")},
        errors={404: "No such batch (or not visible to this key)."},
        path_params={"batch_id": Id},
    ),
    ("DELETE", "/batches/{batch_id}"): Operation(
        tag="batches",
        summary="Cancel every unfinished site of a batch",
        responses={
            202: Body(
                BatchStatus,
                description="Cancellation recorded in the batch (no more runs are created) and in each unfinished run.",
            )
        },
        errors={404: "No such batch (or not visible to this key)."},
        path_params={"batch_id": Id},
    ),
    ("GET", "/batches/{batch_id}/summary"): Operation(
        tag="batches",
        summary="One ranked row per site",
        responses={
            200: _json_any(
                "`{batch_id, sort, columns, rows}`; `text/csv` (Accept or `?format=csv`) and GeoJSON "
                "(`application/geo+json` or `?format=geojson`) carry the same columns, units in their names."
            )
        },
        errors={404: "No such batch (or not visible to this key).", 422: "`sort` or `format` is not known."},
        params=[
            Param("sort", "query", str, "Comma-separated columns, `-` for descending (default: most promising first)."),
            Param("format", "query", str, "json (default), csv or geojson."),
        ],
        path_params={"batch_id": Id},
    ),
    ("GET", "/batches/{batch_id}/export"): Operation(
        tag="batches",
        summary="Download a batch as one ZIP",
        responses={
            200: Body(
                schema={"type": "string", "contentMediaType": "application/zip"},
                media_type="application/zip",
                description="summary.csv, summary.geojson and each completed site's run folder "
                "under sites/<index>_<name>/; exact `Content-Length`.",
            )
        },
        errors={404: "No such batch (or not visible to this key)."},
        path_params={"batch_id": Id},
    ),
    # --- runs ------------------------------------------------------------------------------------
    ("POST", "/projects/{project_id}/runs"): Operation(
        tag="runs",
        summary="Submit a run",
        request=Body(RunCreate, description="Exactly one of `aoi_geojson` and `aoi_path`."),
        responses={202: Body(RunCreateResponse, description="Stored and queued; poll `/tasks/{task_id}`.")},
        errors={
            **_NOT_FOUND_PROJECT,
            409: "The `Idempotency-Key` was used before with another body.",
            422: "The AOI or a parameter cannot be screened; `detail` says which and why.",
        },
        params=[
            Param(
                "Idempotency-Key",
                "header",
                str,
                "Repeating a request with the same key answers the run it first created.",
            ),
        ],
        path_params=_ids("project_id"),
    ),
    ("GET", "/runs"): Operation(
        tag="runs",
        summary="List runs, newest first",
        responses={200: Body(list[RunSummary], description="A page; `X-Next-Cursor` and `Link` lead to the next.")},
        params=[
            Param(
                "project_id",
                "query",
                Id,
                "Only the runs of this project: what a client listing a project's runs should call.",
            ),
            Param("limit", "query", PageSize, "Page size, 1 to 500 (default 200)."),
            Param("cursor", "query", RunsCursor, "The `X-Next-Cursor` of the previous page."),
        ],
    ),
    ("GET", "/runs/{run_id}"): Operation(
        tag="runs",
        summary="Read a run",
        responses={200: Body(RunDetail, description="Status, parameters and, once COMPLETED, where outputs are.")},
        errors=_NOT_FOUND_RUN,
        path_params=_ids("run_id"),
    ),
    ("GET", "/runs/{run_id}/results"): Operation(
        tag="runs",
        summary="Read a run's results",
        responses={
            200: Body(
                RunResults,
                description=(
                    "Every section of the run (AOI, parameters, land cover, biodiversity, receptors, terrain, "
                    "emissions, KPIs, indices, datasets, warnings). `kpis` and `emissions` hold numbers only (null "
                    "with the reason in `kpi_definitions` or `emissions_details`); `biodiversity.score` is the "
                    "sensitivity index's score."
                ),
            )
        },
        errors={**_NOT_FOUND_RUN, **_NOT_DONE},
        path_params=_ids("run_id"),
    ),
    ("GET", "/runs/{run_id}/legal"): Operation(
        tag="runs",
        summary="Read a run's legal screening",
        responses={
            200: _json_any(
                "`{country_code, overall_compliant, summary, statuses: [{rule_id, rule_name, passed, message, "
                "severity, category, details}], critical_violations, warnings, informational}`."
            )
        },
        errors={**_NOT_FOUND_RUN, **_NOT_DONE},
        path_params=_ids("run_id"),
    ),
    ("GET", "/runs/{run_id}/biodiversity/{layer}"): Operation(
        tag="runs",
        summary="Read a map layer of a run",
        responses={
            200: Body(
                JsonObject,
                media_type="application/geo+json",
                description="A GeoJSON FeatureCollection in EPSG:4326 (`eligible`: the patches "
                "of land-eligible area, each with its `area_ha`).",
            )
        },
        errors={404: "No such run or layer.", **_NOT_DONE},
        path_params={"run_id": Id, "layer": Layer},
    ),
    ("GET", "/runs/{run_id}/export"): Operation(
        tag="runs",
        summary="Download a run as a ZIP",
        responses={
            200: Body(
                schema={"type": "string", "contentMediaType": "application/zip"},
                media_type="application/zip",
                description="The whole run; exact `Content-Length`, `ETag`, `Accept-Ranges: bytes`.",
            ),
            206: Body(
                schema={"type": "string", "contentMediaType": "application/zip"},
                media_type="application/zip",
                description="The byte range asked for with `Range` (resuming a download).",
            ),
            304: Body(description="`If-None-Match` matched: the archive has not changed."),
        },
        errors={**_NOT_FOUND_RUN, **_NOT_DONE, 416: "The `Range` lies outside the archive."},
        params=[
            Param("Range", "header", str, "One byte range, `bytes=start-end`, to resume a download."),
            Param("If-Range", "header", str, "Serve the range only if the archive still has this ETag or date."),
            Param("If-None-Match", "header", str, "Answer 304 when the archive still has this ETag."),
        ],
        path_params=_ids("run_id"),
    ),
    # --- base map layers -------------------------------------------------------------------------
    ("GET", "/layers/available"): Operation(
        tag="layers",
        summary="Which base map layers can be drawn",
        responses={
            200: Body(
                dict[str, bool],
                description=(
                    "Layer name -> whether it can be drawn: `natura2000` (protected areas that are Natura 2000 "
                    "sites), `corine` (land cover), and each catalog layer by its own name."
                ),
            )
        },
    ),
    ("GET", "/layers/{name}"): Operation(
        tag="layers",
        summary="A base map layer as GeoJSON",
        responses={
            200: Body(
                JsonObject,
                media_type="application/geo+json",
                description=(
                    "A GeoJSON FeatureCollection in EPSG:4326, streamed: the features in `bbox`, simplified to "
                    "its scale, at most `AETHERA_BASEMAP_MAX_FEATURES` of them (`X-Features-Capped: true` "
                    "when cut). Land-cover features carry `code`, `label` and `colour` (the CORINE legend)."
                ),
            ),
            304: Body(description="`If-None-Match` matched: the answer has not changed."),
        },
        errors={
            400: "`bbox` is not four numbers.",
            404: "No such layer, or it cannot be drawn (`detail` says why).",
            422: "`bbox` lies outside -180..180, -90..90 or has min >= max.",
        },
        params=[
            Param("bbox", "query", str, "`minlon,minlat,maxlon,maxlat` (default: the catalog's extent)."),
            Param("If-None-Match", "header", str, "Answer 304 when the answer still has this ETag."),
        ],
        path_params={"name": str},
    ),
    # --- tasks -----------------------------------------------------------------------------------
    ("GET", "/tasks/{task_id}"): Operation(
        tag="tasks",
        summary="Poll a task",
        responses={200: Body(TaskStatus, description="Status, progress `{step, percent, message}` and error.")},
        errors={404: "No such task."},
        path_params=_ids("task_id"),
    ),
    ("DELETE", "/tasks/{task_id}"): Operation(
        tag="tasks",
        summary="Cancel a task",
        responses={
            200: Body(TaskStatus, description="It was queued: it is REVOKED and never starts."),
            202: Body(TaskStatus, description="It is running: it stops at its next step boundary, then REVOKED."),
        },
        errors={404: "No such task.", 409: "The task has already finished."},
        path_params=_ids("task_id"),
    ),
    # --- operations ------------------------------------------------------------------------------
    ("GET", "/health"): Operation(
        tag="operations",
        summary="Liveness",
        responses={
            200: Body(
                Health,
                description="The API process is up; `workers` says how many workers were seen "
                "lately (informative: it does not change the status).",
            ),
            503: Body(Health, description="Redis or storage is unreachable; the body says which."),
        },
        public=True,
    ),
    ("GET", "/ready"): Operation(
        tag="operations",
        summary="Readiness",
        responses={
            200: Body(Readiness, description="Ready: this process serves requests (storage answers, not stopping)."),
            503: Body(Readiness, description="Not ready: storage fails its check or the process is stopping."),
        },
        public=True,
    ),
    ("GET", "/metrics"): Operation(
        tag="operations",
        summary="Prometheus metrics",
        responses={200: Body(schema={"type": "string"}, media_type="text/plain")},
        errors={403: "The key lacks the `admin` scope (tenant keys may not read global metrics)."},
    ),
    ("GET", "/openapi.json"): Operation(
        tag="operations",
        summary="This OpenAPI document",
        responses={200: Body(JsonObject)},
        public=True,
    ),
    ("GET", "/docs"): Operation(
        tag="operations",
        summary="API reference page",
        responses={200: Body(schema={"type": "string"}, media_type="text/html")},
        public=True,
    ),
}


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app` (an app built by `create_app`)."""
    return build_openapi(
        app,
        OPERATIONS,
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        common_errors=COMMON_ERRORS,
        auth_errors=AUTH_ERRORS,
        tag_order=("projects", "uploads", "runs", "tasks", "layers", "operations"),
    )
