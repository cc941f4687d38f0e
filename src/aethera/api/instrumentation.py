"""Per-request observability: the request id, bound to every log line and echoed in `X-Request-ID`,
request metrics, an access line.

`observability_middleware` is the outermost middleware, so everything below it, the error middleware
included, logs with the id. It also picks the id and sets the answer's header, which a separate
request-id middleware did before (`api.middlewares.request_id_middleware`, kept for apps that stack
it first: the id it chose is reused here): one layer fewer on every request.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import hdrs, web

from aethera.api.errors import Handler
from aethera.api.keys import REQUEST_ID
from aethera.api.middlewares import REQUEST_ID_HEADER
from aethera.observability.access import log_access
from aethera.observability.logs import make_request_id, request_id_var
from aethera.observability.metrics import ApiMetrics
from aethera.security.auth import client_of


class Drain:
    """Requests in flight, so a stopping server can wait for exactly those (api/lifecycle.py)."""

    def __init__(self) -> None:
        self.active = 0
        self.draining = False  # set on SIGTERM: answers from now on close their connection
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> None:
        self.active += 1
        self.idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self.idle.set()


METRICS = web.AppKey("api_metrics", ApiMetrics)
DRAIN = web.AppKey("drain", Drain)
# the response once its headers went out (set by the on_response_prepare signal)
_PREPARED = web.RequestKey("prepared_response", web.StreamResponse)
UNMATCHED_ROUTE = "<unmatched>"  # one label for every path no route matches (bounded cardinality)
CLIENT_CLOSED = 499  # the client went away before the answer was complete (nginx's convention)
ZIP = "application/zip"


def route_label(request: web.Request) -> str:
    """The route template (`/runs/{run_id}`), never the raw path, so ids do not explode label sets."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED_ROUTE
    return resource.canonical


class _Sent:
    """Body bytes a ZIP response handed to the transport (headers excluded)."""

    def __init__(self) -> None:
        self.bytes = 0


_SENT = web.RequestKey("zip_bytes_sent", _Sent)


async def _remember_prepared(request: web.Request, response: web.StreamResponse) -> None:
    request[_PREPARED] = response
    # the raw header, not `content_type` (which parses it): this runs for every answer
    if response.headers.get(hdrs.CONTENT_TYPE, "").startswith(ZIP):
        # count each chunk as it is written, so a download cut short counts what really left; aiohttp's
        # own `body_length` is known only after the last byte and includes the headers
        sent = request[_SENT] = _Sent()
        write = response.write

        async def counting_write(data: bytes | bytearray | memoryview) -> None:
            await write(data)
            sent.bytes += data.nbytes if isinstance(data, memoryview) else len(data)

        response.write = counting_write  # type: ignore[method-assign]


def setup_instrumentation(app: web.Application) -> ApiMetrics:
    """Give `app` its metrics registry; call once from the app factory."""
    metrics = ApiMetrics()
    app[METRICS] = metrics
    drain = app[DRAIN] = Drain()
    # the drain counts requests in flight already: the gauge reads it at scrape time instead of taking
    # the metric's lock twice per request
    metrics.in_flight.set_function(lambda: drain.active)
    app.on_response_prepare.append(_remember_prepared)
    return metrics


@web.middleware
async def observability_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.get(REQUEST_ID) or make_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    metrics = request.app.get(METRICS)
    drain = request.app.get(DRAIN)
    started = time.perf_counter()
    status = 500
    if drain is not None:
        drain.enter()
    try:
        response = await handler(request)
        status = response.status
        if drain is not None and drain.draining:
            response.force_close()  # the server is stopping: no further request on this connection
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as exc:  # redirects and the like pass the error middleware untouched
        status = exc.status
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = CLIENT_CLOSED
        raise
    finally:
        elapsed = time.perf_counter() - started
        prepared: web.StreamResponse | None = request.get(_PREPARED)
        zip_sent = request.get(_SENT)
        sent = zip_sent.bytes if zip_sent is not None else (prepared.body_length if prepared is not None else None)
        route = route_label(request)
        if drain is not None:
            drain.leave()
        if metrics is not None:
            metrics.observe_request(route, request.method, status, elapsed)
            if zip_sent is not None and zip_sent.bytes:
                metrics.export_bytes.inc(zip_sent.bytes)
        log_access(
            method=request.method,
            path=request.path,  # without the query string, which may carry anything
            route=route,
            status=status,
            elapsed_s=elapsed,
            bytes_sent=sent,
            remote=client_of(request),  # behind trusted proxies, the forwarded client
        )
        request_id_var.reset(token)
