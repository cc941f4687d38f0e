"""THE table mapping the service's exceptions to HTTP statuses, and the middleware that applies it.

Every error answer is JSON `{"detail": str, "code": str, ...}`. `detail` is written for the user; no
stack trace, server path or secret ever reaches it: unexpected exceptions answer a generic 500 with
the request id, and the exception goes to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from aethera import errors as e
from aethera.api.keys import REQUEST_ID

log = logging.getLogger(__name__)

# Looked up along the exception's MRO, so the most specific class listed wins.
STATUS_BY_ERROR: dict[type[e.AetheraError], int] = {
    e.MalformedRequest: 400,
    e.InvalidInput: 422,
    e.InvalidAOI: 422,
    e.UnknownCountry: 422,
    e.InvalidKey: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.ObjectNotFound: 404,
    e.Conflict: 409,
    e.RunCancelled: 409,
    e.RequestTimeout: 408,
    e.PayloadTooLarge: 413,
    e.RateLimited: 429,
    e.RangeNotSatisfiable: 416,
    e.ClientClosedRequest: 499,  # nginx's convention; the answer never reaches anyone, the access line has it
    e.ConfigError: 500,
    e.StorageError: 500,
    e.StorageWriteFailed: 500,
    e.PreconditionFailed: 409,
    e.StaleAttempt: 409,
    e.AnalysisError: 500,
    e.TimeLimitExceeded: 500,
    e.RulePackError: 500,
    e.BackendUnavailable: 503,
    e.StorageUnavailable: 503,
    e.DatasetError: 503,  # at the API a broken catalog is the deployment's fault, not the request's
    e.DatasetUnavailable: 503,  # a layer's server failed or timed out: ask again later
    e.AetheraError: 500,
}

# aiohttp's own HTTP errors (unknown route, wrong method, body over client_max_size) in the same shape
CODE_BY_STATUS: dict[int, str] = {
    400: "malformed_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_input",
    429: "rate_limited",
    503: "backend_unavailable",
}


def status_for(exc: e.AetheraError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def error_response(http_status: int, detail: str, code: str, /, **extra: Any) -> web.Response:
    # positional-only: an error's extra fields may include "status" (a run's status on a 409)
    body = msgspec.json.encode({"detail": detail, "code": code, **extra})
    return web.Response(status=http_status, body=body, content_type="application/json")


_HTTP_DETAIL = {
    404: "no such resource",
    405: "method not allowed on this resource",
    413: "request body too large",
}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except e.AetheraError as exc:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s -> %d %s: %s", request.method, request.path, status, exc.code, exc.detail)
        extra = {k: v for k, v in exc.extra.items() if k not in ("detail", "code")}
        resp = error_response(status, exc.detail, exc.code, **extra)
        resp.headers.update(exc.headers)
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = _HTTP_DETAIL.get(exc.status) or exc.reason
        resp = error_response(exc.status, detail, CODE_BY_STATUS.get(exc.status, "http_error"))
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("%s %s: unexpected error", request.method, request.path)
        request_id = request.get(REQUEST_ID)
        return error_response(
            500, "internal error; quote the request id to the operators", "internal_error", request_id=request_id
        )
