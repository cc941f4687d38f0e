"""Request id, body-size limit and body deadline, applied to every request before any handler reads it."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from aethera.api.errors import Handler
from aethera.api.keys import REQUEST_ID, SETTINGS
from aethera.errors import ClientClosedRequest, MalformedRequest, PayloadTooLarge, RequestTimeout
from aethera.observability.logs import new_request_id

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
    """Pick the request id and echo it. The app does this in `observability_middleware` (one layer
    fewer per request); this one stays for apps that stack it in front of that."""
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = supplied if _REQUEST_ID_RE.match(supplied) else new_request_id()
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


class _BodyDeadline(TimeoutError):
    """Set on a request's body stream when its deadline passes; every reader of the body raises it.

    A TimeoutError on purpose: after the answer aiohttp drains what is left of an unread body, and it
    takes a TimeoutError from that stream as "stop draining and close the connection"."""


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The whole body must arrive within `AETHERA_BODY_TIMEOUT_S` (408 past it), and a client that
    disconnects before its body is read is a 499 (client closed request), not a server error.

    The deadline is set on the body stream itself, so it holds for every reader (JSON bodies, multipart
    uploads) and ends a read already waiting. It does not count time the handler spends after the last
    byte arrived."""
    timer: asyncio.TimerHandle | None = None
    timeout_s = 0.0
    # most requests (every GET) have no body: no timer to set, no settings to read
    if request.body_exists and not request.content.is_eof():
        content = request.content
        timeout_s = request.app[SETTINGS].body_timeout_s

        def expire() -> None:
            if not content.is_eof():  # still arriving: whatever reads it next (or now) fails
                content.set_exception(_BodyDeadline())

        timer = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        return await handler(request)
    except _BodyDeadline:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    except ConnectionResetError:
        # aiohttp sets this on the body stream when the connection is lost mid-body
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ClientClosedRequest("the client closed the connection before its request was read") from None
        raise
    finally:
        if timer is not None:
            timer.cancel()
