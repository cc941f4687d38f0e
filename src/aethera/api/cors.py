"""CORS: every answer to an allowed origin carries the grant, errors and unknown routes included.

aiohttp-cors answers the preflights of the routes it knows and adds the headers to their answers
(their JSON errors included). An answer it does not see as one of its routes (an unknown path's 404,
a wrong method's 405) gets the same grant from `_grant_unrouted`, so a browser shows the client the
JSON error instead of an opaque CORS failure.
"""

from __future__ import annotations

import aiohttp_cors
from aiohttp import hdrs, web

# headers a browser may send cross-origin, and response headers its scripts may read
# (Range, If-Range, ETag and Content-Range let browser code resume an interrupted export;
# X-Features-Capped says a base layer was cut at the feature cap)
ALLOWED_HEADERS = (
    "Content-Type",
    "Idempotency-Key",
    "X-Request-ID",
    "Authorization",
    "X-API-Key",
    "Range",
    "If-Range",
    "If-None-Match",
)
EXPOSED_HEADERS = (
    "Content-Disposition",
    "Content-Length",
    "X-Request-ID",
    "X-Next-Cursor",
    "Link",
    "Location",
    "Idempotent-Replayed",
    "Retry-After",
    "ETag",
    "Content-Range",
    "Accept-Ranges",
    "Last-Modified",
    "X-Features-Capped",
)
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")
_EXPOSED = ",".join(EXPOSED_HEADERS)


def setup_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    """Enable CORS for `origins` on every route added so far, and on every other answer."""
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        expose_headers=EXPOSED_HEADERS,
        allow_headers=ALLOWED_HEADERS,
        allow_methods=list(ALLOWED_METHODS),
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    _only_with_origin(app)
    for route in list(app.router.routes()):
        if route.method != "OPTIONS":
            cors.add(route)
    allowed = frozenset(origins)

    async def _grant_unrouted(request: web.Request, response: web.StreamResponse) -> None:
        # runs after aiohttp-cors' own hook (appended later): only fills what it left out
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or origin not in allowed or hdrs.ACCESS_CONTROL_ALLOW_ORIGIN in response.headers:
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = _EXPOSED
        response.headers.add(hdrs.VARY, hdrs.ORIGIN)

    app.on_response_prepare.append(_grant_unrouted)


def _only_with_origin(app: web.Application) -> None:
    """Run aiohttp-cors' answer hook only for requests that carry an Origin header.

    Without one the hook changes nothing (CORS 6.1.1: not a CORS request), yet it resolves the route's
    CORS config first; that lookup ran on every answer, polls from scripts and same-origin pages
    included, so it is skipped where the header is absent (a request-header check)."""
    hooks = app.on_response_prepare
    index = next((i for i, hook in enumerate(hooks) if getattr(hook, "__name__", "") == "_on_response_prepare"), None)
    if index is None:  # another aiohttp-cors layout: keep its hook as it is
        return
    library_hook = hooks[index]

    async def cors_when_origin(request: web.Request, response: web.StreamResponse) -> None:
        if hdrs.ORIGIN in request.headers:
            await library_hook(request, response)

    hooks[index] = cors_when_origin
