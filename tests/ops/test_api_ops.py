"""The operations routes of the real app (`create_app`): OpenAPI, docs page, metrics, readiness, logs."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from aethera.api.app import create_app
from aethera.api.keys import SETTINGS
from aethera.api.openapi import documented_routes, undocumented_routes
from aethera.api.spec import OPERATIONS
from aethera.observability.heartbeat import beat
from aethera.observability.logs import configure_logging
from aethera.observability.metrics import RUNS_TOTAL, SharedMetrics
from aethera.settings import Settings, load_settings

from .conftest import write_completed_run


def _settings(tmp_path: Path, redis_url: str, **extra: str) -> Settings:
    env = {
        "REDIS_URL": redis_url,
        "STORAGE_BACKEND": "local",
        "STORAGE_BASE_PATH": str(tmp_path / "storage"),
        "AETHERA_DATASETS": str(tmp_path / "no-catalog.toml"),
        "AETHERA_AUTH": "off",
        **extra,
    }
    return load_settings(env)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, ops_redis: Redis, ops_redis_url: str) -> Any:
    return await aiohttp_client(create_app(_settings(tmp_path, ops_redis_url)))


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(load_settings({}), "api", stream=stream)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


async def test_every_registered_route_is_in_openapi(client: Any) -> None:
    app: web.Application = client.server.app
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    validate(doc)  # a valid OpenAPI 3.1 document
    assert doc["openapi"].startswith("3.1")
    for route in app.router.routes():
        if route.resource is None:
            continue
        path, method = route.resource.canonical, route.method.lower()
        assert path in doc["paths"], f"{path} is not documented"
        if method in ("head", "options"):
            continue  # GET mirrors and CORS preflight: the path's own operations cover them
        assert method in doc["paths"][path], f"{method.upper()} {path} is not documented"
    # and every route has a real entry, not just the generic fallback
    assert undocumented_routes(app, OPERATIONS) == []
    assert len(documented_routes(app)) == sum(len(ops) for ops in doc["paths"].values())


async def test_openapi_error_shape_and_security(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"detail", "code"}
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    post_run = doc["paths"]["/projects/{project_id}/runs"]["post"]
    assert post_run["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RunCreate")
    assert post_run["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/RunCreateResponse")
    assert post_run["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    for public in ("/health", "/ready", "/docs", "/openapi.json"):
        assert doc["paths"][public]["get"]["security"] == []
    assert "security" not in doc["paths"]["/runs"]["get"]  # the document-wide bearerAuth applies
    statuses = doc["components"]["schemas"]["TaskStatus"]["properties"]["status"]
    assert "$ref" in statuses or "enum" in statuses


async def test_docs_page_loads_offline(client: Any) -> None:
    resp = await client.get("/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    for path in ("/projects/{project_id}/runs", "/tasks/{task_id}", "/runs/{run_id}/export", "/ready"):
        assert f"{path}</h3>" in html
    assert "RunCreate" in html and "Authorization: Bearer" in html
    # no external asset: nothing loaded from http(s) or a protocol-relative URL
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"""(@import|url\()\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower()


async def test_metrics_after_a_few_requests(client: Any, ops_redis: Redis) -> None:
    await SharedMetrics(ops_redis).inc(RUNS_TOTAL, status="COMPLETED")  # as a worker would
    await beat(ops_redis, "w-1", info={}, ttl_s=30)
    for _ in range(3):
        assert (await client.get("/openapi.json")).status == 200
    assert (await client.get("/projects/" + "0" * 32)).status == 404
    assert (await client.get("/no/such/path")).status == 404
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    for name in (
        "aethera_http_requests",
        "aethera_http_request_duration_seconds",
        "aethera_http_requests_in_flight",
        "aethera_export_bytes_sent",
        "aethera_runs",
        "aethera_run_duration_seconds",
        "aethera_run_step_duration_seconds",
        "aethera_queue_depth",
        "aethera_worker_heartbeats",
        "aethera_workers_alive",
    ):
        assert name in families, name

    def value(family: str, sample: str, **labels: str) -> float:
        return next(
            s.value
            for s in families[family].samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    req = "aethera_http_requests"
    assert value(req, req + "_total", route="/openapi.json", method="GET", status="200") == 3
    # the route template, not the id, is the label; unknown paths share one label
    assert value(req, req + "_total", route="/projects/{project_id}", method="GET", status="404") == 1
    assert value(req, req + "_total", route="<unmatched>", method="GET", status="404") == 1
    dur = "aethera_http_request_duration_seconds"
    assert value(dur, dur + "_count", route="/openapi.json", method="GET") == 3
    assert value("aethera_runs", "aethera_runs_total", status="COMPLETED") == 1
    assert value("aethera_workers_alive", "aethera_workers_alive") == 1
    # the scrape itself is the one request in flight (the gauge reads the drain's count)
    assert value("aethera_http_requests_in_flight", "aethera_http_requests_in_flight") == 1

    # label sets seen before keep counting (their children are kept, not looked up per request)
    assert (await client.get("/openapi.json")).status == 200
    families = {f.name: f for f in text_string_to_metric_families(await (await client.get("/metrics")).text())}
    assert value(req, req + "_total", route="/openapi.json", method="GET", status="200") == 4
    assert value(dur, dur + "_count", route="/openapi.json", method="GET") == 4
    assert value(req, req + "_total", route="/metrics", method="GET", status="200") == 1
    assert value("aethera_http_requests_in_flight", "aethera_http_requests_in_flight") == 1


async def test_export_bytes_are_counted(client: Any) -> None:
    app: web.Application = client.server.app
    run_id = await write_completed_run(app[SETTINGS], 300_000)
    resp = await client.get(f"/runs/{run_id}/export")
    assert resp.status == 200
    body = await resp.read()
    assert len(body) == int(resp.headers["Content-Length"]) > 300_000
    families = {f.name: f for f in text_string_to_metric_families(await (await client.get("/metrics")).text())}
    sent = next(s.value for s in families["aethera_export_bytes_sent"].samples if s.name.endswith("_total"))
    assert sent == len(body)


async def test_logs_are_json_with_request_id_echoed(client: Any, log_stream: io.StringIO) -> None:
    resp = await client.get("/projects/" + "0" * 32, headers={"X-Request-ID": "trace-abc.123"})
    assert resp.headers["X-Request-ID"] == "trace-abc.123"
    made = await client.get("/health", headers={"X-Request-ID": "not ok!"})
    made_id = made.headers["X-Request-ID"]
    assert made_id != "not ok!" and re.fullmatch(r"[0-9a-f]{32}", made_id)

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert lines, "no log line"
    for line in lines:
        assert "request_id" in line  # on every line of the API
    access = [line for line in lines if line["logger"] == "aethera.access"]
    assert [a["request_id"] for a in access] == ["trace-abc.123", made_id]
    assert access[0]["status"] == 404 and access[0]["route"] == "/projects/{project_id}"
    assert access[0]["path"] == "/projects/" + "0" * 32


async def test_ready_needs_no_worker_and_health_reports_the_workers(client: Any, ops_redis: Redis) -> None:
    resp = await client.get("/ready")
    body = await resp.json()
    assert resp.status == 200, body  # no worker yet: results and exports are still served from storage
    assert body == {"status": "ready", "storage": {"ok": True, "detail": None}, "draining": False}
    health = await (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["workers"]["ok"] is False and health["workers"]["alive"] == 0
    assert "no worker heartbeat" in health["workers"]["detail"]

    await beat(ops_redis, "w-ready", info={}, ttl_s=30)
    health = await (await client.get("/health")).json()
    assert health["workers"] == {"ok": True, "alive": 1, "window_s": 60.0, "detail": None}


async def test_ready_stays_200_while_redis_is_down(aiohttp_client: Any, tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, "redis://127.0.0.1:1/0"))
    client = await aiohttp_client(app)
    resp = await client.get("/ready")
    assert resp.status == 200, await resp.text()
    health = await client.get("/health")
    assert health.status == 503
    body = await health.json()
    assert body["redis"]["ok"] is False and "redis" in body["redis"]["detail"]
    assert body["workers"]["alive"] is None and "Redis is unreachable" in body["workers"]["detail"]
    assert "127.0.0.1" not in json.dumps(body)  # no host or URL in the answer
    assert body["storage"]["ok"] is True
    # metrics still answer (the API's own part) while Redis is down
    assert (await client.get("/metrics")).status == 200
