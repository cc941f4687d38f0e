"""Projects through HTTP, field by field against api.md, on both storage backends."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

ID = re.compile(r"^[0-9a-f]{32}$")


def assert_timestamp(value: str) -> None:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, value


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_create_get_list_projects(make_service: Any, backend: str) -> None:
    svc = await make_service(backend)
    c = svc.client
    resp = await c.post("/projects", json={"name": "Lusatia solar", "country": "DEU", "sector": "energy"})
    assert resp.status == 201
    project = await resp.json()
    assert set(project) >= {"id", "name", "country", "sector", "created_at"}
    assert ID.match(project["id"])
    assert (project["name"], project["country"], project["sector"]) == ("Lusatia solar", "DEU", "energy")
    assert_timestamp(project["created_at"])

    resp = await c.post("/projects", json={"name": "minimal"})
    assert resp.status == 201
    minimal = await resp.json()
    assert minimal["country"] is None and minimal["sector"] is None

    resp = await c.get(f"/projects/{project['id']}")
    assert resp.status == 200
    assert await resp.json() == project

    resp = await c.get("/projects")
    assert resp.status == 200
    listed = await resp.json()
    assert [p["id"] for p in listed] == [minimal["id"], project["id"]]  # newest first


async def test_unknown_and_hostile_project_ids_are_404(make_service: Any) -> None:
    svc = await make_service()
    for pid in ["0" * 32, "..%2F..%2Fetc", "x", "A" * 32, "0" * 33]:
        resp = await svc.client.get(f"/projects/{pid}")
        assert resp.status == 404, pid
        body = await resp.json()
        assert body["code"] == "not_found" and "detail" in body


async def test_cors_preflight_and_headers(make_service: Any) -> None:
    svc = await make_service()
    origin = "http://localhost:5173"
    for path, method in [("/projects", "POST"), ("/tasks/" + "a" * 32, "DELETE"), ("/runs", "GET")]:
        resp = await svc.client.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "Content-Type",
            },
        )
        assert resp.status == 200, (path, method, await resp.text())
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert method in resp.headers["Access-Control-Allow-Methods"]
        assert "CONTENT-TYPE" in resp.headers["Access-Control-Allow-Headers"].upper()
    resp = await svc.client.get("/projects", headers={"Origin": origin})
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert "CONTENT-DISPOSITION" in resp.headers["Access-Control-Expose-Headers"].upper()
    # errors carry the CORS headers too, so the frontend can read `detail`
    resp = await svc.client.get("/projects/" + "0" * 32, headers={"Origin": origin})
    assert resp.status == 404 and resp.headers["Access-Control-Allow-Origin"] == origin
    # an origin not configured gets no grant
    resp = await svc.client.get("/projects", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
