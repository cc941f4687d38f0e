"""Request id and body-size limit, applied to every request before any handler reads it."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from aethera.api.errors import Handler
from aethera.api.keys import REQUEST_ID, SETTINGS
from aethera.errors import MalformedRequest, PayloadTooLarge

REQUEST_ID_HEADER = "X-Request-ID"
# a client's id is reused only when short and harmless (it ends up in logs)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
UPLOAD_ROUTE = "upload_aoi"
# the routes whose body limit is `max_upload_bytes` (PUT /projects/{id}/uploads/{name}, POST /uploads)
UPLOAD_ROUTES = frozenset({UPLOAD_ROUTE, "create_upload"})


def body_limit(request: web.Request) -> int:
    settings = request.app[SETTINGS]
    route = request.match_info.route
    if route is not None and route.name in UPLOAD_ROUTES:
        return settings.max_upload_bytes
    return settings.max_body_bytes


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = supplied if _REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and the like pass the error middleware untouched
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a declared body past the limit before reading a byte (the read itself is bounded too)."""
    if request.method in ("POST", "PUT", "PATCH"):
        limit = body_limit(request)
        declared = request.headers.get("Content-Length")
        if declared is not None:
            if not declared.isdigit():
                raise MalformedRequest("Content-Length must be a number of bytes")
            if int(declared) > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes", limit_bytes=limit)
    return await handler(request)
