"""Projects: `POST /projects`, `GET /projects`, `GET /projects/{id}`, and AOI uploads of a project."""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from aethera import keyspace as keys
from aethera.api.aoi_input import check_aoi_file
from aethera.api.bodies import decode_json, read_body
from aethera.api.ids import path_id
from aethera.api.keys import SETTINGS, STORAGE
from aethera.api.middlewares import UPLOAD_ROUTE
from aethera.api.paging import Page, link_next
from aethera.api.responses import json_response
from aethera.errors import InvalidInput
from aethera.jobs import listings, records
from aethera.models import Project, ProjectCreate, utc_now_iso
from aethera.security.auth import tenant_of
from aethera.security.tenancy import request_project


async def create_project(request: web.Request) -> web.Response:
    body = await decode_json(request, ProjectCreate)
    project = Project(
        id=uuid.uuid4().hex,
        name=body.name,
        country=body.country,
        sector=body.sector,
        created_at=utc_now_iso(),
        tenant=tenant_of(request),
    )
    await records.create_project(request.app[STORAGE], project)
    return json_response(project, status=201)


async def list_projects(request: web.Request) -> web.Response:
    """The caller's projects only, newest first, a page at a time (as `GET /runs`)."""
    page = Page(request)
    projects, next_cursor = await listings.list_projects(
        request.app[STORAGE], tenant=tenant_of(request), limit=page.limit, cursor=page.cursor
    )
    return link_next(request, json_response(projects), page, next_cursor)


async def get_project(request: web.Request) -> web.Response:
    project_id = path_id(request, "project_id", "project")
    return json_response(await request_project(request, request.app[STORAGE], project_id))


class Upload(msgspec.Struct):
    aoi_path: str  # what `RunCreate.aoi_path` takes
    size: int


async def upload_aoi(request: web.Request) -> web.Response:
    """Store an AOI file (GeoJSON, zipped Shapefile, GeoPackage, KML, WKT) for `aoi_path` in a run."""
    project_id = path_id(request, "project_id", "project")
    name = request.match_info["name"]
    if not keys.UPLOAD_NAME_RE.match(name):
        raise InvalidInput(
            "upload name must be letters, digits, '-' or '_' (at most 100) with one of the extensions "
            ".geojson .json .zip .gpkg .kml .wkt",
            field="name",
        )
    storage = request.app[STORAGE]
    await request_project(request, storage, project_id)
    data = await read_body(request)
    if not data:
        raise InvalidInput("the uploaded file is empty", field="body")
    # what the name says must be what the bytes are, and a zip must pass every archive check, whatever
    # it is called (the run that names this file loads it again, with the same checks)
    await check_aoi_file(data, name, request.app[SETTINGS])
    await storage.save(keys.upload_key(project_id, name), data)
    return json_response(Upload(aoi_path=f"uploads/{name}", size=len(data)), status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/projects", create_project, name="create_project")
    app.router.add_get("/projects", list_projects, name="list_projects")
    app.router.add_get("/projects/{project_id}", get_project, name="get_project")
    app.router.add_put("/projects/{project_id}/uploads/{name}", upload_aoi, name=UPLOAD_ROUTE)
