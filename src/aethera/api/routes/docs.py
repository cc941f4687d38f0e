"""`GET /openapi.json` and `GET /docs`: the API's description, generated from the running app itself.

Both are built on first request (after every route, the export and CORS included, is registered) and
kept: the route table cannot change once the app runs.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from aethera.api.docs_page import render_docs_html
from aethera.api.spec import openapi_document

_CACHE = web.AppKey("openapi_cache", dict)


def _cached(app: web.Application) -> dict[str, Any]:
    cache: dict[str, Any] = app[_CACHE]
    if "doc" not in cache:
        doc = openapi_document(app)
        cache["doc"] = doc
        cache["json"] = msgspec.json.encode(doc)
        cache["html"] = render_docs_html(doc, openapi_url="/openapi.json")
    return cache


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this service.

    Generated from the route table and the wire types; every route, body, answer and error shape.
    """
    return web.Response(body=_cached(request.app)["json"], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    """The API reference, as one self-contained HTML page (no external assets; works offline)."""
    return web.Response(text=_cached(request.app)["html"], content_type="text/html")


def add_routes(app: web.Application) -> None:
    app[_CACHE] = {}
    app.router.add_get("/openapi.json", openapi_json, name="openapi")
    app.router.add_get("/docs", docs_page, name="docs")
