"""Rate limits and the bad-key throttle behind a reverse proxy: the client's address comes from
X-Forwarded-For only when the peer is a trusted proxy (AETHERA_TRUSTED_PROXIES), and only the
rightmost untrusted entry counts, so a client cannot spoof its way past the limiter.

Real requests through aiohttp's test server, whose peer address is 127.0.0.1 (the proxy here), on
the session's real Redis."""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aethera.api.errors import error_middleware
from aethera.errors import ConfigError
from aethera.security.apikeys import create_key
from aethera.security.auth import make_auth_middleware, make_ratelimit_middleware, setup_security
from aethera.security.client_address import client_address, parse_trusted_proxies
from aethera.settings import load_settings

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _app(redis_url: str, **env: str) -> web.Application:
    settings = load_settings({"REDIS_URL": redis_url, **env})
    app = web.Application(middlewares=[error_middleware, make_auth_middleware(settings), make_ratelimit_middleware()])
    setup_security(app, settings)
    app.router.add_get("/hello", hello)
    return app


def _client_ip() -> str:
    """A documentation address of its own per call, so no earlier bucket in the session's Redis counts."""
    return f"198.51.{random.randrange(256)}.{random.randrange(1, 255)}"


async def _statuses(client: TestClient, n: int, xff: Callable[[int], str], **headers: str) -> list[int]:
    return [(await client.get("/hello", headers={"X-Forwarded-For": xff(i), **headers})).status for i in range(n)]


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(
    aiohttp_client: ClientFactory, redis_url: str
) -> None:
    client = await aiohttp_client(
        _app(
            redis_url,
            AETHERA_TRUSTED_PROXIES="127.0.0.0/8",
            AETHERA_RATE_LIMIT_PER_S="0.01",
            AETHERA_RATE_LIMIT_BURST="2",
        )
    )
    alice, bob = _client_ip(), _client_ip()
    assert await _statuses(client, 3, lambda _: alice) == [200, 200, 429]
    # another client behind the same proxy is not limited by alice's requests
    assert await _statuses(client, 2, lambda _: bob) == [200, 200]


async def test_a_client_cannot_spoof_its_way_past_the_limiter(aiohttp_client: ClientFactory, redis_url: str) -> None:
    client = await aiohttp_client(
        _app(
            redis_url,
            AETHERA_TRUSTED_PROXIES="127.0.0.0/8",
            AETHERA_RATE_LIMIT_PER_S="0.01",
            AETHERA_RATE_LIMIT_BURST="2",
        )
    )
    mallory = _client_ip()
    # mallory sends a fresh X-Forwarded-For of her own each time; the proxy appends her real address
    statuses = await _statuses(client, 4, lambda _: f"{_client_ip()}, {mallory}")
    assert statuses == [200, 200, 429, 429]
    # several proxies: trusted hops on the right are skipped, the first untrusted address counts
    assert await _statuses(client, 1, lambda _: f"{_client_ip()}, {mallory}, 127.0.0.5") == [429]


async def test_without_trusted_proxies_the_header_is_ignored(aiohttp_client: ClientFactory, redis_url: str) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    await r.delete("aethera:ratelimit:addr:127.0.0.1")  # the peer's own bucket starts full
    try:
        client = await aiohttp_client(_app(redis_url, AETHERA_RATE_LIMIT_PER_S="0.01", AETHERA_RATE_LIMIT_BURST="2"))
        # every request comes from the peer 127.0.0.1, whatever it claims
        assert await _statuses(client, 3, lambda _: _client_ip()) == [200, 200, 429]
    finally:
        await r.delete("aethera:ratelimit:addr:127.0.0.1")
        await r.aclose()


async def test_the_bad_key_throttle_counts_the_forwarded_client(
    aiohttp_client: ClientFactory, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aethera.security import auth as auth_module

    monkeypatch.setattr(auth_module, "_FAIL_BURST", 2)
    monkeypatch.setattr(auth_module, "_FAIL_RATE_PER_S", 0.001)  # no refill during the test
    keys_file = tmp_path / "keys.json"
    _, entry = create_key(keys_file, "acme")
    client = await aiohttp_client(
        _app(
            redis_url,
            AETHERA_TRUSTED_PROXIES="127.0.0.1/32",
            AETHERA_API_KEYS_FILE=str(keys_file),
            AETHERA_RATE_LIMIT_PER_S="0",
        )
    )

    def wrong() -> dict[str, str]:
        return {"Authorization": f"Bearer ak_{entry.key_id}_{uuid.uuid4().hex}{uuid.uuid4().hex}"}

    attacker, neighbour = _client_ip(), _client_ip()
    got = [
        (await client.get("/hello", headers={"X-Forwarded-For": f"{_client_ip()}, {attacker}", **wrong()})).status
        for _ in range(3)
    ]
    assert got == [401, 401, 429]
    # the proxy's other clients are not locked out by the attacker's failures
    resp = await client.get("/hello", headers={"X-Forwarded-For": neighbour, **wrong()})
    assert resp.status == 401


def test_client_address_rules() -> None:
    trusted = parse_trusted_proxies(["10.0.0.0/8", "::1"])
    assert client_address("203.0.113.9", ["1.2.3.4"], trusted) == "203.0.113.9"  # untrusted peer: header ignored
    assert client_address("10.1.1.1", [], trusted) == "10.1.1.1"  # no header: the proxy itself
    assert client_address("10.1.1.1", ["1.2.3.4, 5.6.7.8"], trusted) == "5.6.7.8"
    assert client_address("10.1.1.1", ["1.2.3.4", "5.6.7.8, 10.2.2.2"], trusted) == "5.6.7.8"  # two headers
    assert client_address("::1", ["2001:db8::7"], trusted) == "2001:db8::7"
    assert client_address("10.1.1.1", ["garbage, 10.3.3.3"], trusted) == "10.3.3.3"  # nothing past a bad entry
    assert client_address("10.1.1.1", ["10.2.2.2"], ()) == "10.1.1.1"  # nothing trusted: never read


def test_a_bad_cidr_stops_start_up() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"AETHERA_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"})
    assert "AETHERA_TRUSTED_PROXIES" in str(info.value) and "proxy.internal" in str(info.value)


async def test_the_access_line_names_the_forwarded_client(
    aiohttp_client: ClientFactory, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from aethera.api.instrumentation import observability_middleware, setup_instrumentation

    def app(**env: str) -> web.Application:
        built = _app(redis_url, **env)
        built.middlewares.insert(0, observability_middleware)
        setup_instrumentation(built)
        return built

    client_ip = _client_ip()
    behind = await aiohttp_client(app(AETHERA_TRUSTED_PROXIES="127.0.0.0/8"))
    direct = await aiohttp_client(app())
    with caplog.at_level("INFO", logger="aethera.access"):
        assert (await behind.get("/hello", headers={"X-Forwarded-For": client_ip})).status == 200
        assert (await direct.get("/hello", headers={"X-Forwarded-For": client_ip})).status == 200
    remotes = [getattr(r, "remote", None) for r in caplog.records if r.name == "aethera.access"]
    # behind the trusted proxy the line names the client; from an untrusted peer the header is not believed
    assert remotes == [client_ip, "127.0.0.1"]
