"""Request bodies refuse keys they do not know: a 422 naming the key, never a silent drop (a misspelt
`contry` would otherwise create a project without its country). Everything the frontend contract
(../shared/docs/api.md) sends is still accepted."""

from __future__ import annotations

from typing import Any

import servicekit as kit


async def _project(client: Any) -> str:
    resp = await client.post("/projects", json={"name": "fields", "country": "DEU", "sector": "solar"})
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def test_an_unknown_project_field_is_a_422_naming_it(make_service: Any) -> None:
    svc = await make_service()
    resp = await svc.client.post("/projects", json={"name": "typo", "contry": "DEU"})
    assert resp.status == 422
    body = await resp.json()
    assert body["code"] == "invalid_input" and body["field"] == "contry"
    assert "contry" in body["detail"] and "name, country, sector" in body["detail"]
    # nothing was created
    assert [p for p in await (await svc.client.get("/projects")).json() if p["name"] == "typo"] == []


async def test_an_unknown_run_field_is_a_422_naming_it(make_service: Any) -> None:
    svc = await make_service()
    project_id = await _project(svc.client)
    resp = await svc.client.post(
        f"/projects/{project_id}/runs",
        json={"project_type": "solar", "aoi_geojson": kit.aoi_feature(), "capacity_mw": 20},
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["field"] == "capacity_mw"
    assert "capacity_mw" in body["detail"] and "config" in body["detail"]  # the accepted keys are listed
    # a long client-chosen name is cut in the answer
    resp = await svc.client.post(
        f"/projects/{project_id}/runs", json={"project_type": "solar", "aoi_geojson": kit.aoi_feature(), "x" * 5000: 1}
    )
    assert resp.status == 422 and len((await resp.json())["detail"]) < 300


async def test_every_field_of_the_frontend_contract_is_accepted(make_service: Any) -> None:
    svc = await make_service()
    resp = await svc.client.post("/projects", json={"name": "all fields", "country": "DEU", "sector": "wind"})
    assert resp.status == 201, await resp.text()
    project_id = (await resp.json())["id"]
    resp = await svc.client.post(
        f"/projects/{project_id}/runs",
        json={
            "project_type": "solar",
            "aoi_geojson": kit.aoi_feature(),
            "aoi_path": None,
            "country": "DEU",
            "config": {"capacity_mw": 5},
        },
    )
    assert resp.status == 202, await resp.text()
