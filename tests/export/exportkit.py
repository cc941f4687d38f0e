"""What the export tests share: a COMPLETED run written into storage the way the worker writes one
(run record, AOI, every output through `save_artifact`), and the environment of the real API.

The run's results and legal verdict below are FIXTURE DATA: realistic in shape and units, written by
hand for these tests, not computed by the pipeline.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import msgspec
from botocore.config import Config

from aethera.report import REPORT_MEDIA_TYPE, render_report
from aethera.storage.artifacts import artifact_key, save_artifact
from aethera.storage.base import Storage

S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
FINISHED_AT = "2025-03-14T09:26:53.589+00:00"

# --- fixture data (hand-written, not pipeline output) ---------------------------------------------

AOI = {
    "type": "Feature",
    "properties": {"name": "Lanjarón solar site (fixture)"},
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[-3.4912, 36.9105], [-3.4741, 36.9102], [-3.4738, 36.9221], [-3.4829, 36.9260],
                         [-3.4915, 36.9218], [-3.4912, 36.9105]]],
    },
}


def fixture_results(run_id: str, project_id: str) -> dict[str, Any]:
    """A results document shaped like the pipeline's (analysis.md), with hand-written values."""
    return {
        "_fixture": "hand-written test data, not computed by the pipeline",
        "run_id": run_id,
        "project_id": project_id,
        "project_type": "solar",
        "created_at": "2025-03-14T09:20:00.000+00:00",
        "aoi": {
            "aoi_area_ha": 172.4381, "perimeter_km": 5.2317, "centroid": {"lon": -3.4826, "lat": 36.9174},
            "bbox": [-3.4915, 36.9102, -3.4738, 36.926], "part_count": 1, "repairs": [],
        },
        "land_cover": {
            "aoi": [
                {"code": "211", "label": "Non-irrigated arable land", "group": "agricultural",
                 "area_ha": 98.2113, "share": 0.569547},
                {"code": "243", "label": "Land principally occupied by agriculture, with significant areas "
                 "of natural vegetation", "group": "agricultural", "area_ha": 41.0172, "share": 0.237867},
                {"code": "323", "label": "Sclerophyllous vegetation", "group": "forest and semi-natural",
                 "area_ha": 33.2096, "share": 0.192586},
            ],
            "buffer": [
                {"code": "311", "label": "Broad-leaved forest", "group": "forest and semi-natural",
                 "area_ha": 2210.5, "share": 0.41},
                {"code": "112", "label": "Discontinuous urban fabric", "group": "artificial",
                 "area_ha": 120.25, "share": 0.0223},
            ],
        },
        "biodiversity": {
            "protected_overlap_ha": 12.3456, "protected_overlap_pct": 7.1594,
            "intersecting_sites": [{"site_code": "ES6140004", "name": "Sierra Nevada", "type": "SCI",
                                    "overlap_ha": 12.3456}],
            "sites_in_buffer": [{"site_code": "ES6140004", "name": "Sierra Nevada", "distance_km": 0.0},
                                {"site_code": "ES6140005", "name": "Sierras de Tejeda <&> Almijara",
                                 "distance_km": 3.8712}],
            "sensitivity": {
                "score": 64.25, "category": "high", "confidence": 0.85,
                "drivers": [
                    {"feature": "protected_overlap_pct", "value": 7.1594, "contribution": 21.5,
                     "normalised": 0.72, "weight": 0.3, "direction": "up"},
                    {"feature": "natural_habitat_ratio", "value": 0.1926, "contribution": 9.6,
                     "normalised": 0.19, "weight": 0.25, "direction": "up"},
                ],
                "model": {"name": "biodiversity_sensitivity", "version": "1.0"},
            },
        },
        "receptor_distances": {
            "nearest_protected_area": {"receptor_type": "protected_area", "receptor_id": "ES6140004",
                                       "receptor_name": "Sierra Nevada", "distance_km": 0.0},
            "nearest_settlement": {"receptor_type": "settlement", "receptor_id": "18114",
                                   "receptor_name": "Lanjarón", "distance_km": 1.4273},
            "nearest_water_body": None,
            "reasons": {"nearest_water_body": "no water layer in the catalog"},
            "counts_within_km": {"0.5": 0, "1": 0, "2": 1, "5": 3},
        },
        "emissions": {
            "construction_tco2e": 41560.0, "land_use_change_tco2e": 3112.75,
            "operation_tco2e_per_year": 120.5, "avoided_tco2e_per_year": 28433.1,
            "net_balance_tco2e": -805893.25, "carbon_payback_years": 1.58, "lifetime_years": 30,
            "factors": {"grid_emission_factor_t_per_mwh": 0.19, "source": "fixture"},
        },
        "kpis": {
            "ghg_intensity": {"value": 28.4, "unit": "gCO2e/kWh", "definition": "lifecycle emissions per kWh"},
            "land_use_efficiency": {"value": 0.5, "unit": "MW/ha", "definition": "capacity per hectare"},
        },
        "resm": {"score": 71.0, "category": "high", "confidence": 0.9,
                 "drivers": [{"feature": "mean_slope_deg", "value": 6.2, "contribution": 18.0}],
                 "model": {"name": "resm", "version": "1.0"}},
        "ahsm": {"score": 22.5, "category": "low", "confidence": 0.6,
                 "drivers": [{"feature": "flood", "value": None, "contribution": None,
                              "note": "no flood layer"}],
                 "model": {"name": "ahsm", "version": "1.0"}},
        "cim": {"score": 48.0, "category": "moderate", "confidence": 0.7, "drivers": [],
                "model": {"name": "cim", "version": "1.0"}},
        "datasets": {"land_cover": {"name": "CORINE Land Cover", "version": "2018"},
                     "protected_areas": {"name": "Natura 2000", "version": "2022"}},
        "warnings": ["no water layer: nearest water body not computed"],
        "step_durations_s": {"aoi": 0.012, "land_cover": 0.84, "protected_areas": 0.31, "emissions": 0.002},
    }


def fixture_legal() -> dict[str, Any]:
    return {
        "country_code": "ESP",
        "overall_compliant": False,
        "summary": "1 critical rule triggered",
        "statuses": [
            {"rule_id": "ESP-N2K-01", "rule_name": "Overlap with Natura 2000", "passed": False,
             "message": "The AOI overlaps Natura 2000 sites by 12.35 ha", "severity": "critical",
             "category": "biodiversity", "details": {},
             "references": ["Directive 92/43/EEC Art. 6(3)", "Ley 42/2007 art. 46"]},
            {"rule_id": "EU-WATER-01", "rule_name": "Distance to water", "passed": None,
             "status": "not_evaluable", "message": "distance to water: n/a", "severity": "medium",
             "category": "water", "details": {}},
        ],
        "critical_violations": ["ESP-N2K-01"],
        "warnings": [],
        "informational": [],
        "screening": {"art_6_3": "appropriate assessment required",
                      "natura2000_sites": ["ES6140004", "ES6140005"]},
    }


def geojson_layer(seed: int, target_bytes: int) -> bytes:
    """A FeatureCollection of random small polygons in EPSG:4326, about `target_bytes` long."""
    rng = random.Random(seed)
    features: list[bytes] = []
    size = 0
    while size < target_bytes:
        lon, lat = -3.5 + rng.random() * 0.05, 36.9 + rng.random() * 0.05
        ring = [[round(lon + 0.001 * rng.random(), 6), round(lat + 0.001 * rng.random(), 6)] for _ in range(12)]
        ring.append(ring[0])
        feature = msgspec.json.encode({
            "type": "Feature", "properties": {"id": len(features), "score": round(rng.random() * 100, 2)},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        })
        features.append(feature)
        size += len(feature) + 1
    return b'{"type":"FeatureCollection","features":[' + b",".join(features) + b"]}"


@dataclass
class StoredRun:
    run_id: str
    project_id: str
    record: dict[str, Any]
    results: dict[str, Any]
    legal: dict[str, Any]
    members: dict[str, bytes] = field(default_factory=dict)  # archive name -> stored bytes (not manifest)


def run_record(run_id: str, project_id: str, status: str = "COMPLETED") -> dict[str, Any]:
    return {
        "run_id": run_id, "task_id": uuid.uuid4().hex, "project_id": project_id, "project_type": "solar",
        "params": {"project_type": "solar", "country": "ESP", "capacity_mw": 86.2, "buffer_km": 5.0},
        "config": {"capacity_mw": 86.2}, "aoi_source": "geojson",
        "created_at": "2025-03-14T09:20:00.000+00:00", "updated_at": FINISHED_AT, "status": status,
        "attempts": 1, "job_id": "internal-job-id", "started_at": "2025-03-14T09:20:01.000+00:00",
        "finished_at": FINISHED_AT if status == "COMPLETED" else None,
        "idempotency_key_sha256": "0" * 64,
    }


async def write_run(
    storage: Storage, *, status: str = "COMPLETED", layer_bytes: int = 600_000, seed: int = 1
) -> StoredRun:
    """Write a run the way the worker does: record, AOI, then every output through save_artifact."""
    run_id, project_id = uuid.uuid4().hex, uuid.uuid4().hex
    record = run_record(run_id, project_id, status)
    results = fixture_results(run_id, project_id)
    legal = fixture_legal()
    run = StoredRun(run_id, project_id, record, results, legal)
    aoi = msgspec.json.encode(AOI)
    await storage.save(artifact_key(run_id, "aoi.geojson"), aoi)
    run.members["aoi.geojson"] = aoi
    if status != "COMPLETED":
        await storage.save(artifact_key(run_id, "run.json"), msgspec.json.encode(record))
        return run
    outputs: list[tuple[str, bytes, str]] = [
        ("layers/natura.geojson", geojson_layer(seed, layer_bytes), "application/geo+json"),
        ("layers/overlap.geojson", geojson_layer(seed + 1, layer_bytes // 7), "application/geo+json"),
        ("layers/sensitivity.geojson", geojson_layer(seed + 2, 3_000), "application/geo+json"),
        ("results.json", msgspec.json.encode(results), "application/json"),
        ("legal.json", msgspec.json.encode(legal), "application/json"),
        ("run.log", b"".join(f"2025-03-14T09:2{i % 6}:00Z step {i} done\n".encode() for i in range(40)),
         "text/plain"),
        ("report.html", render_report(results, legal, record, aoi_geojson=AOI), REPORT_MEDIA_TYPE),
    ]
    for name, data, media_type in outputs:
        await save_artifact(storage, run_id, name, data, media_type)
        run.members[name] = data
    await storage.save(artifact_key(run_id, "run.json"), msgspec.json.encode(record))
    return run


# --- the service ----------------------------------------------------------------------------------


async def new_bucket(endpoint: str) -> str:
    name = f"exp-{uuid.uuid4().hex[:16]}"
    session = aioboto3.Session(**S3_CREDENTIALS)
    async with session.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})) as c:
        await c.create_bucket(Bucket=name)
    return name


def service_env(
    tmp_path: Path, redis_url: str, backend: str, endpoint: str | None, bucket: str | None
) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "STORAGE_BACKEND": backend,
        "STORAGE_BASE_PATH": str(tmp_path / "storage"),
        "AETHERA_DATASETS": str(tmp_path / "no-catalog.toml"),  # the export reads storage only
        "AETHERA_LOG_LEVEL": "WARNING",
        # these tests are about the export: 64 simultaneous downloads from one client are the point
        "AETHERA_RATE_LIMIT_PER_S": "0",
        "AETHERA_AUTH": "off",
    }
    if backend == "s3":
        assert endpoint and bucket
        env.update({"S3_ENDPOINT_URL": endpoint, "S3_BUCKET": bucket, "S3_ACCESS_KEY_ID": "testing",
                    "S3_SECRET_ACCESS_KEY": "testing"})
    return env


def export_url(run_id: str) -> str:
    return f"/runs/{run_id}/export"
