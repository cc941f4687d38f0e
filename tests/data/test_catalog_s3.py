"""Layers read from an S3 bucket (s3:// paths in the catalog, read by GDAL over HTTP from a real endpoint)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from shapely.geometry import box

from aethera.analysis import pipeline
from aethera.analysis.aoi import load_aoi
from aethera.analysis.params import RunParams
from aethera.data.catalog import check_catalog, load_catalog
from aethera.data.sample import sample_region


@pytest.fixture()
def s3_sample(s3_endpoint_process: str, sample_catalog_path: Path, gdal_settings: Any, tmp_path: Path) -> Path:
    bucket = f"layers-{uuid.uuid4().hex[:12]}"
    s3_endpoint = s3_endpoint_process
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=bucket)
    for f in sample_catalog_path.parent.iterdir():
        if f.suffix in (".tif", ".gpkg"):
            client.upload_file(str(f), bucket, f"sample/{f.name}")
    # GDAL (rasterio's and pyogrio's) gets its S3 endpoint and credentials from the service's settings
    gdal_settings(s3_endpoint_url=s3_endpoint, s3_access_key_id="testing", s3_secret_access_key="testing")
    text = sample_catalog_path.read_text()
    for name in ("land_cover.tif", "elevation.tif", "protected_areas.gpkg", "settlements.gpkg", "water.gpkg"):
        text = text.replace(f'path = "{name}"', f'path = "s3://{bucket}/sample/{name}"')
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(text)
    return catalog


def test_catalog_on_s3(s3_sample: Path) -> None:
    catalog = load_catalog(s3_sample)
    assert catalog.land_cover().path.startswith("/vsis3/")
    reports = check_catalog(catalog)
    assert all(r.ok for r in reports), [(r.layer, r.problems) for r in reports]
    x, y = sample_region().xy(-8.0, -9.8)
    aoi = load_aoi(box(x, y, x + 2000, y + 1500).wkt, crs="EPSG:3035")
    out = pipeline.run(aoi, RunParams.from_request("solar", "DEU", None, None), catalog, lambda *a: None, lambda: False)
    r = out.results
    assert r.land_cover.aoi.classified_ha == pytest.approx(300.0, rel=0.005)
    assert r.biodiversity.protected_overlap_pct > 50 and r.terrain.available
    assert all(d.available for d in r.datasets)
    assert r.receptor_distances.nearest_settlement.source == "layer"
