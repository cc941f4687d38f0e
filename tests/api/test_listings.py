"""`GET /projects` and `GET /runs` through HTTP: only the caller's records, a page at a time, and records
stored before the per-tenant indexes existed still listed (jobs/listings.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from servicekit import aoi_feature

from aethera import keyspace as keys
from aethera.models import Project
from aethera.security.apikeys import create_key
from aethera.storage.factory import open_storage


async def walk(client: Any, url: str, headers: dict[str, str] | None = None) -> tuple[list[str], int]:
    """Every id of a listing, following `Link: rel="next"`; and how many pages that took."""
    ids: list[str] = []
    pages = 0
    while url:
        resp = await client.get(url, headers=headers or {})
        assert resp.status == 200, await resp.text()
        ids += [item.get("id") or item["run_id"] for item in await resp.json()]
        pages += 1
        link = resp.headers.get("Link")
        url = link[1 : link.index(">")] if link else ""
        assert (link is None) == ("X-Next-Cursor" not in resp.headers)
    return ids, pages


async def test_two_tenants_list_only_their_own_projects_page_by_page(make_service: Any, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    acme_key, _ = create_key(keys_file, "acme")
    globex_key, _ = create_key(keys_file, "globex")
    svc = await make_service(AETHERA_API_KEYS_FILE=str(keys_file), AETHERA_RATE_LIMIT_PER_S="0")
    acme = {"Authorization": f"Bearer {acme_key}"}
    globex = {"Authorization": f"Bearer {globex_key}"}
    made: dict[str, list[str]] = {"acme": [], "globex": []}
    for i in range(7):  # interleaved, so each tenant's index is not simply a slice of one list
        for tenant, headers in (("acme", acme), ("globex", globex)):
            resp = await svc.client.post("/projects", json={"name": f"{tenant} {i}"}, headers=headers)
            assert resp.status == 201
            made[tenant].insert(0, (await resp.json())["id"])
    # an upload under a project is no project (the old listing walked into projects/*/uploads/)
    resp = await svc.client.put(
        f"/projects/{made['acme'][0]}/uploads/site.geojson", headers=acme, data=json.dumps(aoi_feature()).encode()
    )
    assert resp.status == 201, await resp.text()

    for tenant, headers in (("acme", acme), ("globex", globex)):
        ids, pages = await walk(svc.client, "/projects?limit=3", headers)
        assert ids == made[tenant] and pages == 3  # newest first: 3 + 3 + 1
        whole, pages = await walk(svc.client, "/projects", headers)
        assert whole == made[tenant] and pages == 1


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=501", "limit"), ("cursor=x", "cursor")])
async def test_bad_project_page_arguments_are_422(make_service: Any, query: str, field: str) -> None:
    svc = await make_service()
    resp = await svc.client.get(f"/projects?{query}")
    body = await resp.json()
    assert resp.status == 422 and body["field"] == field, body


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_projects_stored_before_the_index_are_listed_and_served(make_service: Any, backend: str) -> None:
    svc = await make_service(backend)
    # written the way an earlier version wrote it: the record alone, no index marker
    old = Project(id=uuid.uuid4().hex, name="from before", created_at="2025-03-01T12:00:00.000+00:00")
    storage = await open_storage(svc.settings)
    try:
        await storage.save(keys.project_key(old.id), msgspec.json.encode(old))
    finally:
        await storage.close()
    resp = await svc.client.post("/projects", json={"name": "new"})
    new = (await resp.json())["id"]
    ids, _ = await walk(svc.client, "/projects?limit=1")
    assert ids == [new, old.id]
    resp = await svc.client.get(f"/projects/{old.id}")
    assert resp.status == 200 and (await resp.json())["name"] == "from before"
