"""Base map layers: `GET /layers/available` and `GET /layers/{name}` (analysis/basemap.py draws them).

Tenant-independent (the catalog is the deployment's), behind the same authentication as every route.
A layer is streamed as a chunked GeoJSON FeatureCollection: each batch of features is read, simplified
and encoded in a thread and written before the next is read, so neither the event loop nor the
process's memory carries the whole layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from aethera.analysis import basemap
from aethera.api.keys import CATALOG, REQUEST_ID, SETTINGS
from aethera.api.responses import json_response
from aethera.errors import InvalidInput, MalformedRequest, NotFound

log = logging.getLogger(__name__)

GEOJSON = "application/geo+json"
CAPPED_HEADER = "X-Features-Capped"
_INDEX_KEY = "basemap"


async def _index(request: web.Request) -> basemap.BasemapIndex:
    # opening each layer's header is GDAL work: once per loaded catalog, in a thread
    return await request.app[CATALOG].derived(_INDEX_KEY, basemap.build_index)


async def layers_available(request: web.Request) -> web.Response:
    index = await _index(request)
    return json_response(index.available)


def _bbox(request: web.Request, index: basemap.BasemapIndex) -> basemap.Bbox:
    raw = request.query.get("bbox")
    if raw is None:
        if index.extent is None:
            raise NotFound("the dataset catalog has no drawable layer")
        return index.extent
    try:
        return basemap.parse_bbox(raw)
    except ValueError as exc:
        if "four numbers" in str(exc):
            raise MalformedRequest(str(exc)) from None
        raise InvalidInput(str(exc), field="bbox") from None


async def get_base_layer(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    index = await _index(request)
    layer = index.layers.get(name)
    if layer is None:
        raise NotFound(f"no base layer {name!r}; GET /layers/available lists them")
    if not index.available.get(name):
        raise NotFound(f"base layer {name!r} cannot be drawn: {index.reasons.get(name, 'unavailable')}")
    bbox = _bbox(request, index)
    cap = request.app[SETTINGS].basemap_max_features
    tag = basemap.etag(index, name, bbox, cap)
    headers = {"ETag": tag, "Cache-Control": "private, max-age=300", "Vary": "Origin"}
    request_id = request.get(REQUEST_ID)
    if request_id:  # the request-id middleware sets it after the handler, too late for a stream
        headers["X-Request-ID"] = str(request_id)
    if tag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)

    plan = await asyncio.to_thread(basemap.plan, layer, bbox, cap)
    headers[CAPPED_HEADER] = "true" if plan.capped else "false"
    response = web.StreamResponse(headers=headers)
    response.content_type = GEOJSON
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method == "HEAD":
        await response.write_eof()
        return response
    batches = plan.batches()
    try:
        await response.write(b'{"type":"FeatureCollection","features":[')
        first = True
        while (chunk := await asyncio.to_thread(next, batches, None)) is not None:
            if not chunk:
                continue
            await response.write(chunk if first else b"," + chunk)
            first = False
        await response.write(b"]}")
    except ConnectionError:
        log.debug("base layer %s: client disconnected", name)
        return response
    except Exception as exc:
        # the status is sent: cut the connection, so the client sees a broken answer, not a short one
        log.error("base layer %s aborted: %s", name, getattr(exc, "detail", type(exc).__name__))
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        with contextlib.suppress(Exception):
            batches.close()
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/layers/available", layers_available, name="layers_available")
    app.router.add_get("/layers/{name}", get_base_layer, name="get_base_layer")
