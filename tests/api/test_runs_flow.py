"""The whole flow through HTTP with a real worker, on both storage backends, every field against api.md:
create a project, create a run, poll the task until COMPLETED, read results, legal, each layer, the run
detail and the listings."""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from datetime import datetime
from typing import Any

import pytest
import servicekit as kit

ID = re.compile(r"^[0-9a-f]{32}$")
STATUSES = {"PENDING", "PROCESSING", "COMPLETED", "FAILED", "REVOKED"}
RESULT_FIELDS = {
    "run_id",
    "project_id",
    "project_type",
    "created_at",
    "land_cover",
    "biodiversity",
    "emissions",
    "kpis",
    "resm",
    "ahsm",
    "cim",
    "receptor_distances",
}
LEGAL_FIELDS = {
    "country_code",
    "overall_compliant",
    "summary",
    "statuses",
    "critical_violations",
    "warnings",
    "informational",
}
STATUS_FIELDS = {"rule_id", "rule_name", "passed", "message", "severity", "category", "details"}


def ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, value
    return parsed


def check_task_status(body: dict[str, Any], task_id: str, run_id: str, project_id: str) -> None:
    assert {"task_id", "status", "project_id", "run_id", "progress", "error"} <= set(body)
    assert body["task_id"] == task_id and body["run_id"] == run_id and body["project_id"] == project_id
    assert body["status"] in STATUSES
    if body["progress"] is not None:
        p = body["progress"]
        assert isinstance(p["step"], str) and isinstance(p["message"], str)
        assert 0 <= p["percent"] <= 100


async def create_project(client: Any, country: str = "DEU") -> str:
    resp = await client.post("/projects", json={"name": "flow", "country": country, "sector": "energy"})
    assert resp.status == 201
    return (await resp.json())["id"]


async def create_run(client: Any, project_id: str, **body: Any) -> dict[str, Any]:
    payload = {"project_type": "solar", "aoi_geojson": kit.aoi_feature(), "config": {"capacity_mw": 4.0}}
    payload.update(body)
    resp = await client.post(f"/projects/{project_id}/runs", json=payload)
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert resp.headers["Location"] == f"/runs/{answer['run_id']}"
    return answer


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_full_flow(make_service: Any, backend: str) -> None:
    svc = await make_service(backend)
    c = svc.client
    project_id = await create_project(c)
    answer = await create_run(c, project_id)
    assert set(answer) >= {"task_id", "run_id", "status", "message"}
    assert ID.match(answer["task_id"]) and ID.match(answer["run_id"])
    assert answer["status"] == "PENDING" and isinstance(answer["message"], str)
    task_id, run_id = answer["task_id"], answer["run_id"]

    # queued, no worker yet: the task says PENDING and the outputs are not served
    resp = await c.get(f"/tasks/{task_id}")
    assert resp.status == 200
    check_task_status(await resp.json(), task_id, run_id, project_id)
    resp = await c.get(f"/runs/{run_id}/results")
    assert resp.status == 409
    body = await resp.json()
    assert body["code"] == "conflict" and body["status"] == "PENDING" and "PENDING" in body["detail"]

    async with kit.in_process_worker(svc.settings):
        final = await kit.poll_task(c, task_id, timeout_s=90, interval_s=0.05)
    assert final["status"] == "COMPLETED", final
    check_task_status(final, task_id, run_id, project_id)
    assert final["error"] is None and final["attempts"] == 1
    assert final["progress"] is not None  # the last report of the pipeline stays visible
    assert ts(final["created_at"]) <= ts(final["started_at"]) <= ts(final["finished_at"])

    resp = await c.get(f"/runs/{run_id}/results")
    assert resp.status == 200 and resp.content_type == "application/json"
    results = await resp.json()
    assert set(results) >= RESULT_FIELDS
    assert (results["run_id"], results["project_id"], results["project_type"]) == (run_id, project_id, "solar")
    ts(results["created_at"])
    assert results["aoi"]["aoi_area_ha"] == pytest.approx(64.0, rel=0.02)  # 0.8 km x 0.8 km
    for name in ("resm", "ahsm", "cim"):
        assert results[name] is None or 0 <= results[name]["score"] <= 100

    resp = await c.get(f"/runs/{run_id}/legal")
    assert resp.status == 200
    legal = await resp.json()
    assert set(legal) >= LEGAL_FIELDS
    assert legal["country_code"] == "DEU" and isinstance(legal["overall_compliant"], bool)
    assert legal["statuses"], "a DEU screening evaluates rules"
    for status in legal["statuses"]:
        assert set(status) >= STATUS_FIELDS
        assert isinstance(status["passed"], bool) or status["passed"] is None
    for group in ("critical_violations", "warnings", "informational"):
        assert isinstance(legal[group], list)

    for layer in ("natura", "overlap", "sensitivity", "eligible"):
        resp = await c.get(f"/runs/{run_id}/biodiversity/{layer}")
        assert resp.status == 200, (layer, await resp.text())
        fc = await resp.json(content_type=None)
        assert fc["type"] == "FeatureCollection" and isinstance(fc["features"], list)
        if layer == "eligible":  # each patch with its area; together the eligible land of the results
            patches_ha = sum(f["properties"]["area_ha"] for f in fc["features"])
            assert patches_ha == pytest.approx(results["eligibility"]["eligible_ha"], abs=1e-3)
            assert fc["eligible_ha"] == results["eligibility"]["eligible_ha"]

    # the worker stored the whole run: the export holds every member, the report among them
    resp = await c.get(f"/runs/{run_id}/export")
    assert resp.status == 200 and resp.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
        names = set(archive.namelist())
        assert {
            "manifest.json",
            "aoi.geojson",
            "results.json",
            "legal.json",
            "run.log",
            "report.html",
            "layers/eligible.geojson",
        } <= names
        manifest = json.loads(archive.read("manifest.json"))
        assert not manifest.get("not_included"), manifest.get("not_included")
        report = archive.read("report.html").decode()
    assert run_id in report and "DEU" in report

    resp = await c.get(f"/runs/{run_id}")
    assert resp.status == 200
    detail = await resp.json()
    assert {"run_id", "project_id", "project_type", "created_at", "status", "outputs"} <= set(detail)
    assert (detail["run_id"], detail["project_id"], detail["status"]) == (run_id, project_id, "COMPLETED")
    assert detail["project_type"] == "solar"
    assert detail["outputs"]["biodiversity_layers"] == {
        layer: f"/runs/{run_id}/biodiversity/{layer}" for layer in ("natura", "overlap", "sensitivity", "eligible")
    }
    assert detail["outputs"]["results"] == {"results": f"/runs/{run_id}/results", "legal": f"/runs/{run_id}/legal"}
    for group in detail["outputs"].values():  # every advertised output is served
        for url in group.values():
            assert (await c.get(url)).status == 200, url

    resp = await c.get("/runs")
    summaries = await resp.json()
    assert resp.status == 200 and summaries[0]["run_id"] == run_id
    assert set(summaries[0]) >= {"run_id", "project_id", "project_type", "created_at", "status"}
    assert summaries[0]["status"] == "COMPLETED"
    resp = await c.get(f"/runs?project_id={project_id}")
    assert [r["run_id"] for r in await resp.json()] == [run_id]

    # a finished task cannot be cancelled
    resp = await c.delete(f"/tasks/{task_id}")
    assert resp.status == 409 and (await resp.json())["status"] == "COMPLETED"


async def test_listing_newest_first_with_filter_and_cursor(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    p1, p2 = await create_project(c), await create_project(c)
    created = []
    for project in (p1, p2, p1, p1, p2):
        created.append(((await create_run(c, project))["run_id"], project))
        await asyncio.sleep(0.002)  # distinct creation milliseconds
    newest_first = [r for r, _ in reversed(created)]

    seen: list[str] = []
    url = "/runs?limit=2"
    pages = 0
    while url:
        resp = await c.get(url)
        assert resp.status == 200
        page = await resp.json()
        assert len(page) <= 2
        seen += [r["run_id"] for r in page]
        pages += 1
        cursor = resp.headers.get("X-Next-Cursor")
        url = f"/runs?limit=2&cursor={cursor}" if cursor else ""
    assert seen == newest_first and pages == 3

    resp = await c.get(f"/runs?project_id={p1}")
    assert [r["run_id"] for r in await resp.json()] == [r for r, p in reversed(created) if p == p1]
    resp = await c.get(f"/runs?project_id={p2}&limit=1")
    page = await resp.json()
    assert [r["run_id"] for r in page] == [created[4][0]]
    resp2 = await c.get(f"/runs?project_id={p2}&limit=1&cursor={resp.headers['X-Next-Cursor']}")
    assert [r["run_id"] for r in await resp2.json()] == [created[1][0]]


async def test_idempotency_key_returns_the_original_run_even_after_redis_loss(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    project_id = await create_project(c)
    body = {"project_type": "solar", "aoi_geojson": kit.aoi_feature()}
    headers = {"Idempotency-Key": "order-42"}
    first = await c.post(f"/projects/{project_id}/runs", json=body, headers=headers)
    assert first.status == 202
    original = await first.json()
    again = await c.post(f"/projects/{project_id}/runs", json=body, headers=headers)
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["run_id"] == original["run_id"]

    import redis as sync_redis

    sync_redis.Redis.from_url(svc.settings.redis_url).flushdb()  # the mapping lives in storage
    third = await c.post(f"/projects/{project_id}/runs", json=body, headers=headers)
    assert third.status == 202 and (await third.json())["run_id"] == original["run_id"]

    other = await c.post(f"/projects/{project_id}/runs", json={**body, "project_type": "wind"}, headers=headers)
    assert other.status == 409 and (await other.json())["run_id"] == original["run_id"]
    resp = await c.get(f"/runs?project_id={project_id}")
    assert len(await resp.json()) == 1


async def test_aoi_outside_the_datasets_is_refused_before_queueing(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    project_id = await create_project(c)
    resp = await c.post(f"/projects/{project_id}/runs", json={"project_type": "wind", "aoi_geojson": kit.outside_aoi()})
    assert resp.status == 422
    body = await resp.json()
    assert body["code"] == "invalid_aoi" and "outside" in body["detail"]
    assert await (await c.get("/runs")).json() == []  # nothing stored, nothing queued


async def test_run_from_an_uploaded_aoi(make_service: Any) -> None:
    import msgspec

    svc = await make_service()
    c = svc.client
    project_id = await create_project(c)
    resp = await c.put(f"/projects/{project_id}/uploads/site-1.geojson", data=msgspec.json.encode(kit.aoi_feature()))
    assert resp.status == 201
    upload = await resp.json()
    assert upload["aoi_path"] == "uploads/site-1.geojson"
    answer = await create_run(c, project_id, aoi_geojson=None, aoi_path=upload["aoi_path"])
    assert answer["status"] == "PENDING"
    resp = await c.get(f"/runs/{answer['run_id']}")
    assert (await resp.json())["status"] == "PENDING"


async def test_concurrent_requests_with_one_idempotency_key_create_one_run(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    project_id = await create_project(c)
    body = {"project_type": "solar", "aoi_geojson": kit.aoi_feature()}
    answers = await asyncio.gather(
        *(c.post(f"/projects/{project_id}/runs", json=body, headers={"Idempotency-Key": "same"}) for _ in range(6))
    )
    statuses = sorted(r.status for r in answers)
    assert set(statuses) <= {202, 409} and 202 in statuses, statuses
    run_ids = {(await r.json())["run_id"] for r in answers if r.status == 202}
    assert len(run_ids) == 1
    listed = await (await c.get(f"/runs?project_id={project_id}")).json()
    assert [r["run_id"] for r in listed] == list(run_ids)
