"""The access line: its direct route (one write to the installed handler) gives the very line the
ordinary `logging` route gives, and any other logging configuration takes the ordinary route."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from aethera.api.errors import error_middleware
from aethera.api.instrumentation import observability_middleware, setup_instrumentation
from aethera.observability.access import _direct_handler
from aethera.observability.logs import configure_logging
from aethera.settings import load_settings

SECRET = "s3-secret-value-for-the-access-test"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": request.match_info["name"]})


def _access(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "aethera.access"]


async def test_direct_and_ordinary_routes_write_the_same_line(aiohttp_client: Any, restore_logging: None) -> None:
    app = web.Application(middlewares=[observability_middleware, error_middleware])
    setup_instrumentation(app)
    app.router.add_get("/hello/{name}", _hello)
    client = await aiohttp_client(app)
    out = io.StringIO()
    # in the test body, not a fixture: pytest adds its capture handler to the root for each phase
    settings = load_settings({"STORAGE_BACKEND": "s3", "S3_BUCKET": "b", "S3_SECRET_ACCESS_KEY": SECRET})
    installed = configure_logging(settings, "api", stream=out)
    assert _direct_handler() is installed  # only our handler: the direct route

    for name in ("direct", SECRET):
        resp = await client.get(f"/hello/{name}?q=1", headers={"X-Request-ID": "req-direct"})
        assert resp.status == 200 and resp.headers["X-Request-ID"] == "req-direct"
    assert (await client.get("/nowhere", headers={"X-Request-ID": "req-404"})).status == 404

    # a second handler (here another JSON stream) means the ordinary route, for both handlers
    other = io.StringIO()
    second = logging.StreamHandler(other)
    assert installed.formatter is not None
    second.setFormatter(installed.formatter)
    logging.getLogger().addHandler(second)
    assert _direct_handler() is None
    await client.get("/hello/direct?q=1", headers={"X-Request-ID": "req-direct"})
    logging.getLogger().removeHandler(second)

    direct, secret_line, unmatched, ordinary = _access(out)
    assert _access(other) == [ordinary]
    assert list(direct) == list(ordinary)  # the same keys in the same order
    varying = {"ts", "duration_ms", "message"}
    assert {k: v for k, v in direct.items() if k not in varying} == {
        k: v for k, v in ordinary.items() if k not in varying
    }
    assert direct["request_id"] == "req-direct" and direct["route"] == "/hello/{name}"
    assert direct["path"] == "/hello/direct" and direct["status"] == 200 and direct["remote"] == "127.0.0.1"
    for line in (direct, ordinary):
        assert re.fullmatch(r"GET /hello/direct 200 \d+\.\d ms", line["message"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])
        assert isinstance(line["duration_ms"], float)
    # the direct route redacts as the formatter does
    assert SECRET not in out.getvalue() and secret_line["path"] == "/hello/***"
    assert unmatched["status"] == 404 and unmatched["route"] == "<unmatched>" and unmatched["request_id"] == "req-404"


def test_other_logging_configurations_take_the_ordinary_route(restore_logging: None) -> None:
    installed = configure_logging(load_settings({}), "api", stream=io.StringIO())
    access = logging.getLogger("aethera.access")
    assert _direct_handler() is installed
    access.setLevel(logging.WARNING)
    assert _direct_handler() is None  # below the level: logging decides (and drops the line)
    access.setLevel(logging.NOTSET)
    access.addFilter(lambda record: True)
    assert _direct_handler() is None
    access.filters.clear()
    configure_logging(load_settings({}), "worker", stream=io.StringIO())
    assert _direct_handler() is None  # a worker's lines carry run and task ids
