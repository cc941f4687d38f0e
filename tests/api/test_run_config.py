"""`config` of `POST /projects/{id}/runs` is a typed object (models.RunConfig): every key it had is still
accepted with its meaning, an unknown key is a 422 naming it, and only the declared keys are stored."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import servicekit as kit

from aethera.api.keys import STORAGE
from aethera.storage.artifacts import artifact_key

MiB = 1024 * 1024
FULL_CONFIG = {
    "capacity_mw": 20,
    "buffer_km": 2.5,
    "lifetime_years": 30,
    "emission_factors": {
        "construction_tco2e_per_mw": 900,
        "operation_tco2e_per_mw_year": 2,
        "capacity_factor": 0.12,
        "grid_tco2e_per_mwh": 0.35,
        "footprint_share": 0.6,
        "carbon_loss_tco2e_per_ha": {"312": 300, "211": 12.5},
    },
    "eligibility": {
        "settlements": {"buffer_m": 800},
        "slope": {"max_deg": 15},
        "water": {"enabled": False},
        "land_cover": {"exclude": [111, 112]},
        "protected_areas": {"scope": "natura2000", "buffer_m": 0},
        "elevation": {"enabled": True, "max_m": 1500},
        "min_area": {"min_area_ha": 2},
    },
}


async def _project(client: Any) -> str:
    resp = await client.post("/projects", json={"name": "config", "country": "DEU"})
    assert resp.status == 201
    return (await resp.json())["id"]


def _run(config: Any) -> dict[str, Any]:
    return {"project_type": "solar", "aoi_geojson": kit.aoi_feature(), "config": config}


async def _stored_record(svc: Any, run_id: str) -> dict[str, Any]:
    return msgspec.json.decode(await svc.client.app[STORAGE].read(artifact_key(run_id, "run.json")))


async def test_every_key_is_accepted_and_stored_as_sent(make_service: Any) -> None:
    svc = await make_service()
    project = await _project(svc.client)
    resp = await svc.client.post(f"/projects/{project}/runs", json=_run(FULL_CONFIG))
    assert resp.status == 202, await resp.text()
    run_id = (await resp.json())["run_id"]
    record = await _stored_record(svc, run_id)
    assert record["config"] == FULL_CONFIG
    params = record["params"]
    assert (params["capacity_mw"], params["buffer_km"], params["lifetime_years"]) == (20.0, 2.5, 30.0)
    assert params["factor_overrides"]["carbon_loss_tco2e_per_ha"] == {"312": 300.0, "211": 12.5}
    assert params["factor_overrides"]["capacity_factor"] == 0.12
    assert params["eligibility"] == {
        **FULL_CONFIG["eligibility"],
        "settlements": {"buffer_m": 800.0},
        "slope": {"max_deg": 15.0},
        "protected_areas": {"scope": "natura2000", "buffer_m": 0.0},
        "elevation": {"enabled": True, "max_m": 1500.0},
        "min_area": {"min_area_ha": 2.0},
    }


async def test_nulls_and_no_config_take_the_defaults(make_service: Any) -> None:
    svc = await make_service(AETHERA_DEFAULT_BUFFER_KM="3")
    project = await _project(svc.client)
    for config in (None, {}, {"capacity_mw": None, "buffer_km": None, "emission_factors": None}):
        resp = await svc.client.post(f"/projects/{project}/runs", json=_run(config))
        assert resp.status == 202, await resp.text()
        record = await _stored_record(svc, (await resp.json())["run_id"])
        assert record["config"] == {}
        assert (record["params"]["capacity_mw"], record["params"]["buffer_km"]) == (None, 3.0)


@pytest.mark.parametrize(
    "config,field,words",
    [
        ({"colour": "red"}, "config.colour", "not accepted"),
        ({"capacity_mw": 5, "junk": "x" * (4 * MiB + MiB // 2)}, "config.junk", "not accepted"),
        ({"y" * (4 * MiB): 1}, "config." + "y" * 64 + "…", "not accepted"),
        ({"emission_factors": {"grid": 1}}, "config.emission_factors.grid", "not accepted"),
        ({"capacity_mw": 0}, "config.capacity_mw", "greater than 0 and at most 100000"),
        ({"buffer_km": 50.5}, "config.buffer_km", "from 0 to 50"),
        ({"capacity_mw": True}, "config.capacity_mw", "a number"),
        ({"emission_factors": {"footprint_share": 2}}, "config.emission_factors.footprint_share", "from 0 to 1"),
        (
            {"emission_factors": {"carbon_loss_tco2e_per_ha": {"3120": 1}}},
            "config.emission_factors.carbon_loss_tco2e_per_ha",
            "CORINE code",
        ),
        (
            {"emission_factors": {"carbon_loss_tco2e_per_ha": {str(c): 1 for c in range(100, 200)}}},
            "config.emission_factors.carbon_loss_tco2e_per_ha",
            "at most 64 entries",
        ),
        ("fast", "config", "an object"),
        ({"eligibility": {"roads": {"buffer_m": 5}}}, "config.eligibility.roads", "not accepted"),
        ({"eligibility": {"slope": {"max_deg": 90}}}, "config.eligibility.slope.max_deg", "less than 90"),
        ({"eligibility": {"land_cover": {"exclude": [999]}}}, "config.eligibility.land_cover", "not CORINE"),
        (
            {"eligibility": {"land_cover": {"exclude": [111], "include": [211]}}},
            "config.eligibility.land_cover",
            "exactly one of exclude and include",
        ),
        (
            {"eligibility": {"elevation": {"enabled": True, "min_m": 900, "max_m": 100}}},
            "config.eligibility.elevation",
            "min_m below max_m",
        ),
    ],
    ids=[
        "unknown",
        "4.5MB-junk-key",
        "4MB-key-name",
        "unknown-factor",
        "capacity-0",
        "buffer-too-far",
        "bool",
        "share-2",
        "code-too-long",
        "too-many-codes",
        "string",
        "unknown-rule",
        "slope-90",
        "not-corine",
        "exclude-and-include",
        "elevation-range",
    ],
)
async def test_a_bad_config_is_a_422_naming_the_field(make_service: Any, config: Any, field: str, words: str) -> None:
    svc = await make_service()
    project = await _project(svc.client)
    resp = await svc.client.post(f"/projects/{project}/runs", json=_run(config))
    body = await resp.json()
    assert resp.status == 422, body
    assert body["code"] == "invalid_input" and body["field"] == field
    assert words in body["detail"] and len(body["detail"]) < 400  # the junk is not echoed back
    resp = await svc.client.get(f"/runs?project_id={project}")
    assert await resp.json() == []  # nothing was stored or queued


async def test_the_request_body_keeps_its_size_bound(make_service: Any) -> None:
    svc = await make_service(AETHERA_MAX_BODY_BYTES=str(MiB))
    project = await _project(svc.client)
    resp = await svc.client.post(f"/projects/{project}/runs", json=_run({"capacity_mw": 5, "note": "x" * MiB}))
    assert resp.status == 413


async def test_openapi_shows_the_config_schema(make_service: Any) -> None:
    svc = await make_service()
    resp = await svc.client.get("/openapi.json")
    assert resp.status == 200
    schemas = (await resp.json())["components"]["schemas"]
    config = schemas["RunCreate"]["properties"]["config"]
    assert {"$ref": "#/components/schemas/RunConfig"} in config["anyOf"]
    run_config = schemas["RunConfig"]
    assert run_config["additionalProperties"] is False
    assert set(run_config["properties"]) == {
        "capacity_mw",
        "buffer_km",
        "lifetime_years",
        "emission_factors",
        "eligibility",
        "reuse",
    }
    assert schemas["EligibilityOverrides"]["additionalProperties"] is False
    capacity = next(s for s in run_config["properties"]["capacity_mw"]["anyOf"] if s.get("type") == "number")
    assert (capacity["exclusiveMinimum"], capacity["maximum"]) == (0, 100_000)
    factors = schemas["EmissionFactorOverrides"]
    assert factors["additionalProperties"] is False
    assert factors["properties"]["carbon_loss_tco2e_per_ha"]["maxProperties"] == 64
