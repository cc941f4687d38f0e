"""CORS on every answer: the frontend's origin gets the grant on errors and unknown routes too, so a
browser shows it the JSON error instead of a CORS failure; the defaults cover its dev servers."""

from __future__ import annotations

from typing import Any

import servicekit as kit
from aiohttp import web

from aethera.settings import load_settings

ORIGIN = "http://localhost:3000"


def test_default_origins_cover_the_frontend_dev_servers() -> None:
    origins = load_settings({}).cors_origins
    assert {"http://localhost:3000", "http://127.0.0.1:3000", "http://localhost:5173", "http://127.0.0.1:5173"} <= set(
        origins
    )


def granted(resp: Any) -> bool:
    return resp.headers.get("Access-Control-Allow-Origin") == ORIGIN


async def test_every_error_carries_the_grant(
    aiohttp_client: Any, tmp_path: Any, redis_db: str, sample_catalog: Any
) -> None:
    from aethera.api.app import create_app

    env = kit.service_env(
        tmp_path=tmp_path,
        redis_url=redis_db,
        catalog=sample_catalog,
        AETHERA_CORS_ORIGINS=f"{ORIGIN},http://localhost:5173",
        AETHERA_MAX_BODY_BYTES="1000",
    )
    app = create_app(kit.settings_from(env))

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    app.router.add_get("/test-boom", boom)  # added after CORS was set up: only the fallback grants it
    client = await aiohttp_client(app)
    headers = {"Origin": ORIGIN}
    cases = [
        (client.get("/no/such/route", headers=headers), 404, "not_found"),
        (client.get("/layers/natura2000/extra/segments", headers=headers), 404, "not_found"),
        (client.patch("/projects", headers=headers, json={}), 405, "method_not_allowed"),
        (
            client.post("/projects", headers={**headers, "Content-Type": "application/json"}, data=b"x" * 5000),
            413,
            "payload_too_large",
        ),
        (client.get("/test-boom", headers=headers), 500, "internal_error"),
        (client.get("/projects/" + "0" * 32, headers=headers), 404, "not_found"),
    ]
    for call, status, code in cases:
        resp = await call
        body = await resp.json()
        assert resp.status == status and body["code"] == code, (status, body)
        assert isinstance(body["detail"], str)
        assert granted(resp), (status, dict(resp.headers))
        assert "X-REQUEST-ID" in resp.headers["Access-Control-Expose-Headers"].upper()
    # an origin that is not configured gets no grant, on a known route or not
    for path in ("/projects", "/no/such/route"):
        resp = await client.get(path, headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in resp.headers
    # and an answer without an Origin is left alone
    resp = await client.get("/no/such/route")
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_preflight_from_the_frontend_dev_server(make_service: Any) -> None:
    svc = await make_service(AETHERA_CORS_ORIGINS=f"{ORIGIN},http://127.0.0.1:3000")
    for path, method in [
        ("/projects", "POST"),
        ("/tasks/" + "a" * 32, "DELETE"),
        ("/layers/available", "GET"),
        ("/layers/corine", "GET"),
    ]:
        resp = await svc.client.options(
            path,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "Content-Type",
            },
        )
        assert resp.status == 200, (path, await resp.text())
        assert granted(resp)


async def test_routed_answers_get_the_grant_only_with_an_origin(
    aiohttp_client: Any, tmp_path: Any, redis_db: str, sample_catalog: Any
) -> None:
    # aiohttp-cors' hook is skipped without an Origin header (it would change nothing): both ways checked
    from aethera.api.app import create_app

    env = kit.service_env(tmp_path=tmp_path, redis_url=redis_db, catalog=sample_catalog, AETHERA_CORS_ORIGINS=ORIGIN)
    client = await aiohttp_client(create_app(kit.settings_from(env)))
    resp = await client.get("/projects", headers={"Origin": ORIGIN})
    assert resp.status == 200 and granted(resp)
    assert "X-REQUEST-ID" in resp.headers["Access-Control-Expose-Headers"].upper()
    resp = await client.get("/projects")
    assert resp.status == 200
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]
