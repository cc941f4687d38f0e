"""An unexpected exception in a handler: the client gets a generic 500 `{detail, code, request_id}`; the
traceback goes to the server log only, and the log line carries no secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from aethera import errors as e
from aethera.api.errors import error_middleware
from aethera.api.instrumentation import observability_middleware, setup_instrumentation
from aethera.api.middlewares import REQUEST_ID_HEADER, request_id_middleware
from aethera.observability.logs import configure_logging
from aethera.settings import load_settings

REDIS_PASSWORD = "hunter2-redis-pw"
S3_SECRET = "s3-secret-key-0123456789"
SERVER_PATH = "/srv/aethera/storage/runs/x/run.json"


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    settings = load_settings(
        {
            "REDIS_URL": f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0",
            "S3_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID",
            "S3_SECRET_ACCESS_KEY": S3_SECRET,
        }
    )
    configure_logging(settings, "api", stream=out)  # the formatter and redaction `aethera api` installs
    yield out
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


async def _boom(request: web.Request) -> web.Response:
    # what a library's exception text can hold: a URL with its password, a secret, a server path
    raise RuntimeError(
        f"cannot reach redis://:{REDIS_PASSWORD}@redis.internal:6379/0 with {S3_SECRET} for {SERVER_PATH}"
    )


async def test_unexpected_exception_is_a_generic_500_and_only_the_log_has_the_traceback(
    aiohttp_client: Any, server_log: io.StringIO
) -> None:
    # the middlewares in the order create_app stacks them
    app = web.Application(middlewares=[request_id_middleware, observability_middleware, error_middleware])
    setup_instrumentation(app)
    app.router.add_get("/boom", _boom)
    client = await aiohttp_client(app)

    resp = await client.get("/boom", headers={REQUEST_ID_HEADER: "req-42"})
    text = await resp.text()
    assert resp.status == 500 and resp.content_type == "application/json"
    assert json.loads(text) == {
        "detail": "internal error; quote the request id to the operators",
        "code": "internal_error",
        "request_id": "req-42",
    }
    assert resp.headers[REQUEST_ID_HEADER] == "req-42"
    for leaked in ("Traceback", "RuntimeError", "cannot reach", REDIS_PASSWORD, S3_SECRET, SERVER_PATH):
        assert leaked not in text

    lines = [json.loads(line) for line in server_log.getvalue().splitlines()]
    errors = [line for line in lines if line["logger"] == "aethera.api.errors"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "req-42" and errors[0]["exc_type"] == "RuntimeError"
    assert "Traceback" in errors[0]["traceback"] and "_boom" in errors[0]["traceback"]
    everything = server_log.getvalue()
    assert REDIS_PASSWORD not in everything and S3_SECRET not in everything


@pytest.mark.parametrize(
    ("raised", "status", "body", "headers"),
    [
        (
            e.Unauthorized("invalid API key"),
            401,
            {"detail": "invalid API key", "code": "unauthorized"},
            {"WWW-Authenticate": 'Bearer realm="aethera"'},
        ),
        (
            e.Forbidden("this API key is read-only"),
            403,
            {"detail": "this API key is read-only", "code": "forbidden"},
            {},
        ),
        (
            e.RateLimited("slow down", retry_after_s=7),
            429,
            {"detail": "slow down", "code": "rate_limited", "retry_after_s": 7},
            {"Retry-After": "7"},
        ),
        (
            e.RangeNotSatisfiable(
                "the requested range lies outside the archive (10 bytes)", headers={"Content-Range": "bytes */10"}
            ),
            416,
            {"detail": "the requested range lies outside the archive (10 bytes)", "code": "range_not_satisfiable"},
            {"Content-Range": "bytes */10"},
        ),
    ],
)
async def test_401_403_429_416_come_from_the_one_error_table(
    aiohttp_client: Any, raised: Any, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    """The auth, rate-limit and export code raise; the error table alone turns that into the answer."""
    from aethera.api.errors import status_for

    exc = raised
    assert status_for(exc) == status

    async def handler(request: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/x", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/x")
    assert resp.status == status
    assert await resp.json() == body
    for name, value in headers.items():
        assert resp.headers[name] == value
