"""Tenants through the real API: nobody sees another tenant's projects, runs, tasks, uploads or exports.

Another tenant's id must answer exactly what an unknown id answers (status, code and words, once the
id itself is swapped), so a caller cannot even learn that the id exists.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from servicekit import aoi_feature

from aethera.security.apikeys import create_key


class Caller:
    def __init__(self, client: Any, key: str | None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        resp = await self.client.request(method, path, headers=self.headers, **kwargs)
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body


@pytest.fixture
async def tenants(make_service: Any, tmp_path: Path) -> dict[str, Caller]:
    keys_file = tmp_path / "keys.json"
    acme, _ = create_key(keys_file, "acme")
    acme_ro, _ = create_key(keys_file, "acme", ["read"])
    globex, _ = create_key(keys_file, "globex")
    svc = await make_service(AETHERA_API_KEYS_FILE=str(keys_file), AETHERA_RATE_LIMIT_PER_S="0")
    return {
        "acme": Caller(svc.client, acme),
        "acme_ro": Caller(svc.client, acme_ro),
        "globex": Caller(svc.client, globex),
        "anonymous": Caller(svc.client, None),
    }


def same_as_unknown(theirs: tuple[int, Any], unknown: tuple[int, Any], real_id: str, unknown_id: str) -> None:
    status, body = theirs
    assert status == unknown[0], (theirs, unknown)
    if isinstance(body, dict):
        assert {k: str(v).replace(real_id, unknown_id) for k, v in body.items()} == {
            k: str(v) for k, v in unknown[1].items()
        }


async def test_another_tenants_ids_answer_like_unknown_ones(tenants: dict[str, Caller]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    status, project = await acme.call("POST", "/projects", json={"name": "acme site", "country": "DEU"})
    assert status == 201
    pid = project["id"]
    status, created = await acme.call(
        "POST", f"/projects/{pid}/runs", json={"project_type": "solar", "aoi_geojson": aoi_feature()}
    )
    assert status == 202, created
    rid = created["run_id"]
    unknown = uuid.uuid4().hex

    for template in (
        "/projects/{}",
        "/runs/{}",
        "/runs/{}/results",
        "/runs/{}/legal",
        "/runs/{}/biodiversity/natura",
        "/runs/{}/export",
        "/tasks/{}",
    ):
        real_id = pid if template.startswith("/projects") else rid
        theirs = await globex.call("GET", template.format(real_id))
        same_as_unknown(theirs, await globex.call("GET", template.format(unknown)), real_id, unknown)
        assert theirs[0] == 404, (template, theirs)
        assert (await acme.call("GET", template.format(real_id)))[0] != 404 or template.endswith("natura")

    run_body = {"project_type": "solar", "aoi_geojson": aoi_feature()}
    theirs = await globex.call("POST", f"/projects/{pid}/runs", json=run_body)
    same_as_unknown(theirs, await globex.call("POST", f"/projects/{unknown}/runs", json=run_body), pid, unknown)
    theirs = await globex.call("DELETE", f"/tasks/{rid}")
    same_as_unknown(theirs, await globex.call("DELETE", f"/tasks/{unknown}"), rid, unknown)
    assert theirs[0] == 404
    # the failed cancel left acme's run alone
    status, task = await acme.call("GET", f"/tasks/{rid}")
    assert status == 200 and task["status"] == "PENDING" and not task["cancel_requested"]

    # listings hold only the caller's own records
    assert [p["id"] for p in (await globex.call("GET", "/projects"))[1]] == []
    assert [r["run_id"] for r in (await globex.call("GET", "/runs"))[1]] == []
    assert (await globex.call("GET", f"/runs?project_id={pid}"))[1] == []
    assert [p["id"] for p in (await acme.call("GET", "/projects"))[1]] == [pid]
    assert [r["run_id"] for r in (await acme.call("GET", "/runs"))[1]] == [rid]
    assert [r["run_id"] for r in (await acme.call("GET", f"/runs?project_id={pid}"))[1]] == [rid]


async def test_read_only_keys_read_but_never_write(tenants: dict[str, Caller]) -> None:
    acme, ro = tenants["acme"], tenants["acme_ro"]
    status, project = await acme.call("POST", "/projects", json={"name": "acme site"})
    assert status == 201
    assert (await ro.call("GET", f"/projects/{project['id']}"))[0] == 200
    for method, path, body in (
        ("POST", "/projects", {"name": "x"}),
        ("POST", f"/projects/{project['id']}/runs", {"project_type": "solar", "aoi_geojson": aoi_feature()}),
        ("DELETE", f"/tasks/{uuid.uuid4().hex}", None),
    ):
        status, answer = await ro.call(method, path, json=body)
        assert status == 403 and answer["code"] == "forbidden", (method, path, answer)
    status, _ = await ro.call("POST", "/uploads", data=b"x")
    assert status == 403


async def test_no_key_no_data_but_public_routes_stay_open(tenants: dict[str, Caller]) -> None:
    anonymous = tenants["anonymous"]
    for method, path in (
        ("GET", "/projects"),
        ("POST", "/projects"),
        ("GET", "/runs"),
        ("GET", f"/tasks/{uuid.uuid4().hex}"),
        ("POST", "/uploads"),
        ("GET", "/metrics"),
    ):
        status, body = await anonymous.call(method, path)
        assert status == 401 and body["code"] == "unauthorized", (path, body)
    for path in ("/health", "/ready", "/openapi.json", "/docs"):
        status, _ = await anonymous.call("GET", path)
        assert status not in (401, 403), path


@pytest.mark.parametrize(
    "aoi_path",
    [
        "/etc/passwd",
        "../../../../etc/passwd",
        "file:///etc/passwd",
        "uploads/../../keys.json",
        "runs/0123456789abcdef0123456789abcdef/aoi.geojson",
        "projects/0123456789abcdef0123456789abcdef.json",
        "uploads/site.geojson\x00.zip",
        "C:\\Windows\\win.ini",
        "0123456789abcdef0123456789abcdef",  # the shape of an upload id, but nobody uploaded it
    ],
)
async def test_aoi_path_never_reads_a_server_file(tenants: dict[str, Caller], aoi_path: str) -> None:
    acme = tenants["acme"]
    status, project = await acme.call("POST", "/projects", json={"name": "acme site"})
    status, answer = await acme.call(
        "POST", f"/projects/{project['id']}/runs", json={"project_type": "solar", "aoi_path": aoi_path}
    )
    assert status == 422, answer
    assert answer["code"] == "invalid_input" and answer.get("field") == "aoi_path", answer


async def test_ids_with_a_trailing_newline_are_unknown_ids(tenants: dict[str, Caller]) -> None:
    # `$` in a Python pattern also matches before a final newline: every id check must refuse "<id>\n"
    acme = tenants["acme"]
    status, project = await acme.call("POST", "/projects", json={"name": "acme site"})
    pid = project["id"]
    for path in (
        f"/projects/{pid}%0A",
        f"/runs/{pid}%0A",
        f"/tasks/{pid}%0A",
        f"/runs/{pid}%0A/export",
        f"/uploads/{pid}%0A",
        f"/runs/{pid}%0A/biodiversity/natura",
    ):
        status, body = await acme.call("GET", path)
        assert (status, body["code"]) == (404, "not_found"), (path, body)
    status, body = await acme.call("GET", f"/runs?project_id={pid}%0A")
    assert status == 422, body
    status, body = await acme.call("POST", "/projects", json={"name": "x", "country": "DEU\n"})
    assert status == 422 and body["field"] == "country", body
