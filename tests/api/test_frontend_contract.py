"""The web frontend's calls, in its order, without a browser: from its dev server's origin
(`http://localhost:3000`) against the default settings (no CORS configuration), every answer carries the
CORS grant, and every value the client renders (each `kpis` and `emissions` entry, `biodiversity.score`,
`resm/ahsm/cim.score`) is a number, a string or null, never an object."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import msgspec
import servicekit as kit

ORIGIN = "http://localhost:3000"


def _renderable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


class Browser:
    """The frontend's axios: every call from ORIGIN, a preflight before the non-simple ones."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, str, int]] = []

    async def call(self, method: str, path: str, *, json_body: Any = None, expect: int = 200) -> Any:
        headers = {"Origin": ORIGIN}
        if method not in ("GET", "HEAD") or json_body is not None:
            pre = await self.client.options(
                path.split("?")[0],
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert pre.status == 200 and pre.headers["Access-Control-Allow-Origin"] == ORIGIN, (method, path)
        resp = await self.client.request(method, path, json=json_body, headers=headers)
        self.calls.append((method, path, resp.status))
        assert resp.status == expect, (method, path, resp.status, await resp.text())
        assert resp.headers.get("Access-Control-Allow-Origin") == ORIGIN, (method, path, dict(resp.headers))
        return resp


async def test_the_frontend_walk(aiohttp_client: Any, tmp_path: Path, redis_db: str, sample_catalog: Path) -> None:
    from aethera.api.app import create_app
    from aethera.api.spec import RunResults

    env = kit.service_env(tmp_path=tmp_path, redis_url=redis_db, catalog=sample_catalog)
    del env["AETHERA_CORS_ORIGINS"]  # the defaults must serve the frontend's dev server
    settings = kit.settings_from(env)
    b = Browser(await aiohttp_client(create_app(settings)))

    project = await (
        await b.call(
            "POST", "/projects", json_body={"name": "frontend", "country": "DEU", "sector": "solar"}, expect=201
        )
    ).json()
    assert any(p["id"] == project["id"] for p in await (await b.call("GET", "/projects")).json())
    resp = await b.call(
        "POST",
        f"/projects/{project['id']}/runs",
        expect=202,
        json_body={"project_type": "solar", "aoi_geojson": kit.aoi_feature(), "config": {"capacity_mw": 4.0}},
    )
    task_id = (await resp.json())["task_id"]
    # while it runs, the results answer 409 with the run's status, readable cross-origin
    body = await (await b.call("GET", f"/runs/{task_id}/results", expect=409)).json()
    assert body["code"] == "conflict" and body["status"] in ("PENDING", "PROCESSING") and body["detail"]

    async with kit.in_process_worker(settings):

        async def finished() -> Any:
            task = await (await b.call("GET", f"/tasks/{task_id}")).json()
            return task if task["status"] in kit.FINAL else None

        task = await kit.wait_for(finished, timeout_s=120, interval_s=0.1)
    assert task["status"] == "COMPLETED", task
    run_id = task["run_id"]

    detail = await (await b.call("GET", f"/runs/{run_id}")).json()
    assert detail["status"] == "COMPLETED"
    listed = await (await b.call("GET", f"/runs?project_id={project['id']}")).json()
    assert [r["run_id"] for r in listed] == [run_id]

    results = await (await b.call("GET", f"/runs/{run_id}/results")).json()
    # the indicator panel: each entry a label and a value
    assert results["kpis"] and all(_renderable(v) for v in results["kpis"].values()), results["kpis"]
    assert any(isinstance(v, float) for v in results["kpis"].values())
    assert set(results["kpi_definitions"]) == set(results["kpis"])
    for name, definition in results["kpi_definitions"].items():
        assert definition["unit"] and definition["definition"], name
        assert results["kpis"][name] is not None or definition["reason"], name  # null says why
    assert results["emissions"] and all(_renderable(v) for v in results["emissions"].values()), results["emissions"]
    assert isinstance(results["emissions"]["net_balance_tco2e"], float)
    assert results["emissions_details"]["factors"] and "land_use_change_by_class" in results["emissions_details"]
    assert isinstance(results["biodiversity"]["score"], float)
    assert results["biodiversity"]["score"] == results["biodiversity"]["sensitivity"]["score"]
    for index in ("resm", "ahsm", "cim"):
        assert isinstance(results[index]["score"], float), index
    msgspec.convert(results, RunResults)  # what the OpenAPI document says is what is served

    legal = await (await b.call("GET", f"/runs/{run_id}/legal")).json()
    assert legal["statuses"] and all(isinstance(s["rule_name"], str) for s in legal["statuses"])
    for layer in ("natura", "overlap", "sensitivity"):
        fc = await (await b.call("GET", f"/runs/{run_id}/biodiversity/{layer}")).json(content_type=None)
        assert fc["type"] == "FeatureCollection"

    # every map: which base layers exist, then the two the client draws
    available = await (await b.call("GET", "/layers/available")).json()
    assert available["natura2000"] is True and available["corine"] is True
    for name in ("natura2000", "corine"):
        resp = await b.call("GET", f"/layers/{name}")
        fc = json.loads(await resp.read())
        assert fc["type"] == "FeatureCollection" and fc["features"]
        assert "X-FEATURES-CAPPED" in resp.headers["Access-Control-Expose-Headers"].upper()

    resp = await b.call("GET", f"/runs/{run_id}/export")
    assert "CONTENT-DISPOSITION" in resp.headers["Access-Control-Expose-Headers"].upper()
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
        stored = json.loads(archive.read("results.json"))
        report = archive.read("report.html").decode()
    assert stored["kpis"] == results["kpis"]
    assert "Indicators" in report and "<script" not in report and 'class="sitemap"' in report

    # errors reach the client too: an unknown run, an unknown route
    await b.call("GET", "/runs/" + "0" * 32 + "/results", expect=404)
    await b.call("GET", "/layers/natura2000/tiles", expect=404)
    await b.call("DELETE", f"/tasks/{task_id}", expect=409)
    assert len(b.calls) >= 17
