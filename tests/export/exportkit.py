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

from aethera.analysis.results import Results
from aethera.analysis.results import document as results_document
from aethera.legal.engine import LegalResult
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
        "coordinates": [
            [
                [-3.4912, 36.9105],
                [-3.4741, 36.9102],
                [-3.4738, 36.9221],
                [-3.4829, 36.9260],
                [-3.4915, 36.9218],
                [-3.4912, 36.9105],
            ]
        ],
    },
}


def fixture_results_struct() -> Results:
    """The hand-written screening (FIXTURE DATA) as the pipeline's own Results type, so the shape is
    exactly what the worker stores; the indices are computed from it by the real index models."""
    from aethera.analysis import results as r
    from aethera.analysis.indices import IndexFeatures, compute_all

    lc_aoi = r.LandCoverZone(
        zone="aoi",
        area_ha=172.4381,
        classified_ha=172.4381,
        nodata_ha=0.0,
        outside_layer_ha=0.0,
        classes=[
            r.LandCoverClass(
                code=211,
                label="Non-irrigated arable land",
                group="agricultural",
                group_label="Agricultural areas",
                area_ha=98.2113,
                share=0.569547,
            ),
            r.LandCoverClass(
                code=243,
                label="Land principally occupied by agriculture, with significant areas of natural vegetation",
                group="agricultural",
                group_label="Agricultural areas",
                area_ha=41.0172,
                share=0.237867,
            ),
            r.LandCoverClass(
                code=323,
                label="Sclerophyllous vegetation",
                group="forest_semi_natural",
                group_label="Forest and semi-natural areas",
                area_ha=33.2096,
                share=0.192586,
            ),
        ],
        groups=[
            r.LandCoverGroup(group="agricultural", label="Agricultural areas", area_ha=139.2285, share=0.807414),
            r.LandCoverGroup(
                group="forest_semi_natural", label="Forest and semi-natural areas", area_ha=33.2096, share=0.192586
            ),
        ],
    )
    lc_buffer = r.LandCoverZone(
        zone="buffer",
        area_ha=9391.2,
        classified_ha=9391.2,
        nodata_ha=0.0,
        outside_layer_ha=0.0,
        classes=[
            r.LandCoverClass(
                code=311,
                label="Broad-leaved forest",
                group="forest_semi_natural",
                group_label="Forest and semi-natural areas",
                area_ha=3850.4,
                share=0.41,
            ),
            r.LandCoverClass(
                code=112,
                label="Discontinuous urban fabric",
                group="artificial",
                group_label="Artificial surfaces",
                area_ha=209.4,
                share=0.0223,
            ),
        ],
        groups=[],
    )
    sierra = r.SiteNearby(
        site_code="ES6140004", name="Sierra Nevada", type="SCI", natura2000=True, distance_km=0.0, overlap_ha=12.3456
    )
    results = r.Results(
        aoi=r.AOISummary(
            aoi_area_ha=172.4381,
            perimeter_km=5.2317,
            centroid_lon=-3.4826113,
            centroid_lat=36.9174052,
            bbox=[-3.4915, 36.9102, -3.4738, 36.926],
            part_count=1,
            hole_count=0,
            vertex_count=6,
            repairs=[],
            source_format="geojson",
            source_crs="EPSG:4326",
            area_crs="EPSG:3035",
            metric_crs="+proj=aeqd +lat_0=36.917 +lon_0=-3.483 +units=m",
        ),
        parameters=r.Parameters(
            project_type="solar",
            country="ESP",
            capacity_mw=86.2,
            capacity_source="config",
            buffer_km=5.0,
            lifetime_years=30.0,
        ),
        land_cover=r.LandCover(
            source="raster",
            layer="clc2018_lanjaron.tif",
            method="exact fractional pixel coverage",
            resolution_m=25.0,
            aoi=lc_aoi,
            buffer=lc_buffer,
            buffer_km=5.0,
            ratios={
                "agricultural": 0.807414,
                "semi_natural": 0.192586,
                "forest": 0.0,
                "natural_habitat": 0.192586,
                "water": 0.0,
                "wetland": 0.0,
            },
        ),
        biodiversity=r.Biodiversity(
            available=True,
            reason=None,
            buffer_km=5.0,
            protected_overlap_ha=12.3456,
            protected_overlap_pct=7.1594,
            natura2000_overlap_ha=12.3456,
            natura2000_overlap_pct=7.1594,
            sites_overlapping=[
                r.SiteOverlap(
                    site_code="ES6140004",
                    name="Sierra Nevada",
                    type="SCI",
                    natura2000=True,
                    overlap_ha=12.3456,
                    overlap_pct=7.1594,
                )
            ],
            sites_in_buffer=[
                sierra,
                r.SiteNearby(
                    site_code="ES6170007",
                    name="Sierras de Tejeda <&> Almijara",
                    type="SCI",
                    natura2000=True,
                    distance_km=3.8712,
                    overlap_ha=0.0,
                ),
            ],
            natura2000_sites_in_buffer=2,
        ),
        receptor_distances=r.ReceptorDistances(
            nearest_protected_area=r.Receptor(
                receptor_type="protected_area",
                receptor_id="ES6140004",
                receptor_name="Sierra Nevada",
                distance_km=0.0,
                source="layer",
                kind="SCI",
            ),
            nearest_settlement=r.Receptor(
                receptor_type="settlement",
                receptor_id="18114",
                receptor_name="Lanjarón",
                distance_km=1.4273,
                source="layer",
                kind="town",
                population=3611,
            ),
            nearest_water_body=None,
            counts=[
                r.ReceptorCounts(within_km=k, protected_areas=n, settlements=m, water_bodies=None)
                for k, n, m in ((0.5, 1, 0), (1.0, 1, 0), (2.0, 1, 1), (5.0, 2, 3))
            ],
            reasons={"water_body": "no water layer in the catalog"},
        ),
        terrain=r.Terrain(
            available=True,
            reason=None,
            mean_elevation_m=742.5,
            min_elevation_m=650.2,
            max_elevation_m=861.0,
            mean_slope_deg=6.2,
            max_slope_deg=21.4,
            steep_area_pct=4.1,
            resolution_m=25.0,
        ),
        emissions=r.Emissions(
            technology="solar",
            capacity_mw=86.2,
            lifetime_years=30.0,
            construction_tco2e=41560.0,
            land_use_change_tco2e=3112.75,
            footprint_ha=137.95,
            land_use_change_by_class=[
                r.LandUseChangeLine(
                    code=211,
                    label="Non-irrigated arable land",
                    footprint_ha=78.57,
                    carbon_loss_tco2e_per_ha=12.0,
                    land_use_change_tco2e=942.84,
                )
            ],
            operation_tco2e_per_year=120.5,
            capacity_factor=0.2,
            annual_generation_mwh=151022.4,
            grid_factor_tco2e_per_mwh=0.19,
            avoided_tco2e_per_year=28694.26,
            lifetime_emissions_tco2e=48287.75,
            lifetime_avoided_tco2e=860827.8,
            net_balance_tco2e=-812540.05,
            payback_years=1.58,
            payback_reason=None,
            factors={"grid_factor": r.FactorUsed(value=0.19, unit="tCO2e/MWh", source="fixture")},
        ),
        kpis={
            "ghg_intensity": r.KPI(value=28.4, unit="gCO2e/kWh", definition="lifecycle emissions per kWh"),
            "land_use_efficiency": r.KPI(value=0.5, unit="MW/ha", definition="capacity per hectare"),
        },
        datasets=[
            r.DatasetStatus(
                layer="land_cover",
                required=True,
                configured=True,
                available=True,
                title="CORINE Land Cover 2018",
                files=["clc2018_lanjaron.tif"],
            ),
            r.DatasetStatus(
                layer="water", required=False, configured=False, available=False, reason="no water layer in the catalog"
            ),
        ],
        warnings=["no water layer: nearest water body not computed"],
        step_durations_s={"aoi": 0.012, "land_cover": 0.84, "protected_areas": 0.31, "emissions": 0.002},
    )
    indices = compute_all(
        IndexFeatures(
            project_type="solar",
            protected_overlap_pct=7.1594,
            distance_to_protected_km=0.0,
            natura2000_sites_in_buffer=2,
            distance_to_settlement_km=1.4273,
            agricultural_ratio=0.807414,
            shrub_ratio=0.192586,
            forest_ratio=0.0,
            artificial_ratio=0.0,
            natural_habitat_ratio=0.192586,
            water_ratio=0.0,
            wetland_ratio=0.0,
            mean_slope_deg=6.2,
            land_use_change_tco2e_per_ha=18.05,
            missing_reasons={"distance_to_water_km": "no water layer in the catalog"},
        )
    )
    results.biodiversity.sensitivity = indices.biodiversity_sensitivity
    results.resm, results.ahsm, results.cim = indices.resm, indices.ahsm, indices.cim
    return results


def fixture_results(run_id: str, project_id: str) -> dict[str, Any]:
    """results.json as the worker writes it: run identity, then the (fixture) Results."""
    return {
        "run_id": run_id,
        "project_id": project_id,
        "project_type": "solar",
        "created_at": "2025-03-14T09:20:00.000+00:00",
        "country": "ESP",
        **results_document(fixture_results_struct()),
    }


def fixture_legal_result() -> LegalResult:
    """The real rule packs applied to the fixture results (ESP + EU), typed."""
    from aethera.analysis.metrics import natura_sites, screening_metrics
    from aethera.legal.engine import evaluate

    results = fixture_results_struct()
    return evaluate(screening_metrics(results), "ESP", natura_sites(results))


def fixture_legal() -> dict[str, Any]:
    """legal.json: `fixture_legal_result` as the worker stores it."""
    from aethera.legal.engine import to_builtins

    return to_builtins(fixture_legal_result())


def geojson_layer(seed: int, target_bytes: int) -> bytes:
    """A FeatureCollection of random small polygons in EPSG:4326, about `target_bytes` long."""
    rng = random.Random(seed)
    features: list[bytes] = []
    size = 0
    while size < target_bytes:
        lon, lat = -3.5 + rng.random() * 0.05, 36.9 + rng.random() * 0.05
        ring = [[round(lon + 0.001 * rng.random(), 6), round(lat + 0.001 * rng.random(), 6)] for _ in range(12)]
        ring.append(ring[0])
        feature = msgspec.json.encode(
            {
                "type": "Feature",
                "properties": {"id": len(features), "score": round(rng.random() * 100, 2)},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
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
        "run_id": run_id,
        "task_id": uuid.uuid4().hex,
        "project_id": project_id,
        "project_type": "solar",
        "params": {"project_type": "solar", "country": "ESP", "capacity_mw": 86.2, "buffer_km": 5.0},
        "config": {"capacity_mw": 86.2},
        "aoi_source": "geojson",
        "created_at": "2025-03-14T09:20:00.000+00:00",
        "updated_at": FINISHED_AT,
        "status": status,
        "attempts": 1,
        "job_id": "internal-job-id",
        "started_at": "2025-03-14T09:20:01.000+00:00",
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
        ("run.log", b"".join(f"2025-03-14T09:2{i % 6}:00Z step {i} done\n".encode() for i in range(40)), "text/plain"),
        (
            "report.html",
            render_report(fixture_results_struct(), fixture_legal_result(), record, aoi_geojson=AOI),
            REPORT_MEDIA_TYPE,
        ),
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
        # deadlines have their own tests (tests/faults/test_hung_backends.py); here a storage call on a machine
        # whose cores are busy elsewhere must not be cut at the 5 s production default
        "AETHERA_BACKEND_DEADLINE_S": "60",
    }
    if backend == "s3":
        assert endpoint and bucket
        env.update(
            {
                "S3_ENDPOINT_URL": endpoint,
                "S3_BUCKET": bucket,
                "S3_ACCESS_KEY_ID": "testing",
                "S3_SECRET_ACCESS_KEY": "testing",
            }
        )
    return env


def export_url(run_id: str) -> str:
    return f"/runs/{run_id}/export"
