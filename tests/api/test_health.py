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
