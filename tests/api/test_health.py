"""GET /health: 200 with Redis and storage reachable; 503 naming Redis once the test stops its Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import servicekit as kit

from aethera.api.app import create_app
from aethera.embedded_redis import EmbeddedRedis


async def test_health_ok_with_redis_and_storage(make_service: Any) -> None:
    svc = await make_service()
    resp = await svc.client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["redis"] == {"ok": True, "detail": None}
    assert body["storage"] == {"ok": True, "detail": None}


async def test_health_503_after_redis_stops(aiohttp_client: Any, tmp_path: Path, sample_catalog: Path) -> None:
    own = EmbeddedRedis(tmp_path / "own-redis")
    own.start()
    try:
        env = kit.service_env(tmp_path=tmp_path, redis_url=own.url, catalog=sample_catalog)
        client = await aiohttp_client(create_app(kit.settings_from(env)))
        assert (await client.get("/health")).status == 200
        own.stop()
        resp = await client.get("/health")
        assert resp.status == 503
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert body["status"] == "unavailable"
        assert body["redis"]["ok"] is False
        assert "redis" in body["redis"]["detail"]
        assert "127.0.0.1" not in body["redis"]["detail"]  # no host or URL in the answer
        assert body["storage"]["ok"] is True
    finally:
        own.stop()


async def test_with_every_worker_stopped_ready_is_200_and_health_says_so(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service()

    async def alive() -> int | None:
        return (await (await svc.client.get("/health")).json())["workers"]["alive"]

    worker = kit.WorkerProcess(svc.env, tmp_path / "worker.log")
    try:
        await kit.wait_for(lambda: _is(alive, 1), timeout_s=90)
    finally:
        worker.stop()  # SIGTERM: a clean exit removes its heartbeat
    health = await (await svc.client.get("/health")).json()
    assert health["status"] == "ok" and health["workers"]["alive"] == 0 and health["workers"]["ok"] is False
    assert "no worker heartbeat" in health["workers"]["detail"]
    # the load balancer keeps this API: stored projects, results and exports are still served
    ready = await svc.client.get("/ready")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["status"] == "ready"
    assert (await svc.client.get("/projects")).status == 200


async def test_a_draining_process_is_not_ready(make_service: Any) -> None:
    from aethera.api.instrumentation import DRAIN

    svc = await make_service()
    svc.app[DRAIN].draining = True  # what SIGTERM sets (api/lifecycle.py)
    resp = await svc.client.get("/ready")
    assert resp.status == 503
    assert (await resp.json())["draining"] is True


async def _is(read: Any, expected: object) -> bool:
    return await read() == expected
