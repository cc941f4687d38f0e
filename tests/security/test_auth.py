"""The auth and rate-limit middlewares on a small aiohttp app, with a real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aethera.api.errors import error_middleware
from aethera.errors import ConfigError
from aethera.security import apikeys
from aethera.security.apikeys import create_key
from aethera.security.auth import (
    DEFAULT_TENANT,
    auth_enabled,
    make_auth_middleware,
    make_ratelimit_middleware,
    principal_of,
    setup_security,
    startup_warning,
)
from aethera.settings import Settings, load_settings

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]


async def whoami(request: web.Request) -> web.Response:
    p = principal_of(request)
    return web.json_response({"tenant": p.tenant, "scopes": list(p.scopes)})


async def public(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware, make_auth_middleware(settings), make_ratelimit_middleware()])
    setup_security(app, settings)
    app.router.add_get("/health", public)
    app.router.add_get("/openapi.json", public)
    app.router.add_get("/whoami", whoami)
    app.router.add_post("/whoami", whoami)
    app.router.add_delete("/whoami", whoami)
    return app


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def settings_with(redis_url: str, keys_file: Path | None, **extra: str) -> Settings:
    env = {"REDIS_URL": redis_url, "AETHERA_RATE_LIMIT_PER_S": "0", **extra}
    if keys_file is not None:
        env["AETHERA_API_KEYS_FILE"] = str(keys_file)
    return load_settings(env)


async def test_key_binds_tenant_and_public_paths_stay_open(
    aiohttp_client: ClientFactory, redis_url: str, keys_file: Path
) -> None:
    key, _ = create_key(keys_file, "acme")
    client = await aiohttp_client(build_app(settings_with(redis_url, keys_file)))
    for path in ("/health", "/openapi.json"):
        assert (await client.get(path)).status == 200
    resp = await client.get("/whoami", headers=auth(key))
    assert resp.status == 200
    assert (await resp.json())["tenant"] == "acme"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token ak_0123456789ab_" + "x" * 43,
        "Bearer ak_0123456789ab_" + "x" * 43,
    ],
)
async def test_missing_or_wrong_credentials_are_401(
    aiohttp_client: ClientFactory, redis_url: str, keys_file: Path, header: str | None
) -> None:
    create_key(keys_file, "acme")
    client = await aiohttp_client(build_app(settings_with(redis_url, keys_file)))
    headers = {} if header is None else {"Authorization": header}
    resp = await client.get("/whoami", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json()
    assert body["code"] == "unauthorized" and body["detail"]


async def test_read_only_keys_cannot_write(aiohttp_client: ClientFactory, redis_url: str, keys_file: Path) -> None:
    key, _ = create_key(keys_file, "acme", ["read"])
    client = await aiohttp_client(build_app(settings_with(redis_url, keys_file)))
    assert (await client.get("/whoami", headers=auth(key))).status == 200
    for method in ("POST", "DELETE"):
        resp = await client.request(method, "/whoami", headers=auth(key))
        assert resp.status == 403
        assert (await resp.json())["code"] == "forbidden"


async def test_cors_preflight_needs_no_key(aiohttp_client: ClientFactory, redis_url: str, keys_file: Path) -> None:
    create_key(keys_file, "acme")
    client = await aiohttp_client(build_app(settings_with(redis_url, keys_file)))
    resp = await client.options(
        "/whoami", headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}
    )
    assert resp.status != 401


async def test_revoked_key_stops_working(
    aiohttp_client: ClientFactory, redis_url: str, keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apikeys, "RELOAD_INTERVAL_S", 0.0)
    key, entry = create_key(keys_file, "acme")
    client = await aiohttp_client(build_app(settings_with(redis_url, keys_file)))
    assert (await client.get("/whoami", headers=auth(key))).status == 200
    doc = json.loads(keys_file.read_text())
    doc["keys"] = [k for k in doc["keys"] if k["key_id"] != entry.key_id]
    keys_file.write_text(json.dumps(doc))
    assert (await client.get("/whoami", headers=auth(key))).status == 401


async def test_rate_limit_answers_429_with_retry_after(
    aiohttp_client: ClientFactory, redis_url: str, keys_file: Path
) -> None:
    key_a, _ = create_key(keys_file, "acme")
    key_b, _ = create_key(keys_file, "acme")
    settings = settings_with(redis_url, keys_file, AETHERA_RATE_LIMIT_PER_S="0.2", AETHERA_RATE_LIMIT_BURST="3")
    client = await aiohttp_client(build_app(settings))
    statuses = [(await client.get("/whoami", headers=auth(key_a))).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    resp = await client.get("/whoami", headers=auth(key_a))
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "5"
    body = await resp.json()
    assert body["code"] == "rate_limited" and body["retry_after_s"] == 5
    # the limit is per key: another key of the same tenant still passes, and so do public paths
    assert (await client.get("/whoami", headers=auth(key_b))).status == 200
    assert (await client.get("/health")).status == 200


async def test_repeated_wrong_keys_are_throttled_per_address(
    aiohttp_client: ClientFactory, redis_url: str, keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aethera.security import auth as auth_module

    # no refill during the test, however slowly a loaded machine runs its 22 scrypt checks
    monkeypatch.setattr(auth_module, "_FAIL_RATE_PER_S", 0.001)
    good, entry = create_key(keys_file, "acme")
    fresh, _ = create_key(keys_file, "acme")
    client = await aiohttp_client(build_app(settings_with(redis_url, keys_file)))
    # the throttle counts per client address; this test's address must start with a full bucket
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    await r.delete("aethera:ratelimit:authfail:127.0.0.1")
    assert (await client.get("/whoami", headers=auth(good))).status == 200  # verified once, now cached
    statuses = []
    for _ in range(22):
        wrong = f"ak_{entry.key_id}_{uuid.uuid4().hex}{uuid.uuid4().hex}"
        statuses.append((await client.get("/whoami", headers=auth(wrong))).status)
    assert statuses[:20] == [401] * 20
    assert statuses[20:] == [429, 429]
    # a key already verified is not locked out by its neighbours' failures; a key not yet verified waits
    assert (await client.get("/whoami", headers=auth(good))).status == 200
    resp = await client.get("/whoami", headers=auth(fresh))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    await r.delete("aethera:ratelimit:authfail:127.0.0.1")
    await r.aclose()
    assert (await client.get("/whoami", headers=auth(fresh))).status == 200


async def test_auth_off_acts_for_the_default_tenant(aiohttp_client: ClientFactory, redis_url: str) -> None:
    settings = settings_with(redis_url, None)
    assert not auth_enabled(settings)
    assert "AUTHENTICATION IS OFF" in (startup_warning(settings) or "")
    client = await aiohttp_client(build_app(settings))
    resp = await client.get("/whoami")
    assert resp.status == 200
    assert (await resp.json())["tenant"] == DEFAULT_TENANT


async def test_limiter_lets_requests_through_while_redis_is_away(
    aiohttp_client: ClientFactory, keys_file: Path
) -> None:
    from aethera.embedded_redis import free_port

    key, _ = create_key(keys_file, "acme")
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = await aiohttp_client(build_app(settings_with(dead, keys_file, AETHERA_RATE_LIMIT_PER_S="1")))
    assert (await client.get("/whoami", headers=auth(key))).status == 200


def test_modes(keys_file: Path) -> None:
    assert not auth_enabled(load_settings({}))
    assert auth_enabled(load_settings({"AETHERA_API_KEYS_FILE": str(keys_file)}))
    assert not auth_enabled(load_settings({"AETHERA_API_KEYS_FILE": str(keys_file), "AETHERA_AUTH": "off"}))
    assert auth_enabled(load_settings({"AETHERA_ENV": "production", "AETHERA_API_KEYS_FILE": str(keys_file)}))
    with pytest.raises(ConfigError, match="AETHERA_API_KEYS_FILE"):
        load_settings({"AETHERA_ENV": "production"})
    with pytest.raises(ConfigError, match="AETHERA_API_KEYS_FILE"):
        load_settings({"AETHERA_AUTH": "on"})
    # production with auth explicitly off starts (behind a gateway that authenticates), and says so
    off = load_settings({"AETHERA_ENV": "production", "AETHERA_AUTH": "off"})
    assert "AETHERA_AUTH=off" in (startup_warning(off) or "")


def test_a_missing_keys_file_stops_start_up(keys_file: Path) -> None:
    settings = load_settings({"AETHERA_ENV": "production", "AETHERA_API_KEYS_FILE": str(keys_file)})
    with pytest.raises(ConfigError, match="not found"):
        setup_security(web.Application(), settings)
