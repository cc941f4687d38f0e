"""Base map layers through HTTP: what can be drawn, bbox filtering, the simplification bound, the cap,
EPSG:4326 output, ETag and 304, streaming in flat memory on a 10,000-feature layer, and both catalog
backends (local files and `s3://`)."""

from __future__ import annotations

import json
import math
import shutil
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import servicekit as kit
import shapely
from pyproj import Transformer
from shapely.geometry import Point, box, shape

from aethera.analysis.basemap import TARGET_PX
from aethera.data.sample import sample_region

ORIGIN = "http://localhost:3000"
N_SITES = 10_000
VERTICES = 96  # per site polygon: a dense outline the simplification must thin


def _write_dense_catalog(directory: Path, sample_catalog: Path) -> Path:
    """The sample land cover, plus a protected-area layer of N_SITES small dense circles (EPSG:3035)."""
    import geopandas as gpd

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample_catalog.parent / "land_cover.tif", directory / "land_cover.tif")
    x0, y0 = sample_region().xy(-14.0, -14.0)
    side = int(math.sqrt(N_SITES))
    rng = np.random.default_rng(7)
    geoms = [
        Point(x0 + (i % side) * 280.0, y0 + (i // side) * 280.0).buffer(
            60.0 + rng.uniform(0, 40), quad_segs=VERTICES // 4
        )
        for i in range(N_SITES)
    ]
    types = ["SAC" if i % 2 == 0 else "nature_reserve" for i in range(N_SITES)]
    gdf = gpd.GeoDataFrame(
        {
            "site_code": [f"T{i:05d}" for i in range(N_SITES)],
            "name": [f"site {i}" for i in range(N_SITES)],
            "type": types,
        },
        geometry=geoms,
        crs="EPSG:3035",
    )
    gdf.to_file(directory / "sites.gpkg", layer="sites", driver="GPKG")
    catalog = directory / "catalog.toml"
    catalog.write_text(
        '[land_cover]\npath = "land_cover.tif"\ncode_scheme = "clc"\n\n'
        '[protected_areas]\npath = "sites.gpkg"\nlayer = "sites"\nid_column = "site_code"\n'
        'name_column = "name"\ntype_column = "type"\n'
    )
    return catalog


@pytest.fixture(scope="module")
def dense_catalog(tmp_path_factory: pytest.TempPathFactory, sample_catalog: Path) -> Path:
    return _write_dense_catalog(tmp_path_factory.mktemp("dense"), sample_catalog)


async def _client(aiohttp_client: Any, tmp_path: Path, redis_db: str, catalog: Path, **env: str) -> Any:
    from aethera.api.app import create_app

    settings = kit.settings_from(
        kit.service_env(tmp_path=tmp_path, redis_url=redis_db, catalog=catalog, AETHERA_CORS_ORIGINS=ORIGIN, **env)
    )
    return await aiohttp_client(create_app(settings))


async def _get(client: Any, path: str, **params: str) -> tuple[Any, dict[str, Any]]:
    resp = await client.get(path, params=params, headers={"Origin": ORIGIN})
    assert resp.headers.get("Access-Control-Allow-Origin") == ORIGIN, (path, resp.status)
    body = await resp.read()
    return resp, (json.loads(body) if body else {})


def _check_wgs84(collection: dict[str, Any]) -> None:
    assert collection["type"] == "FeatureCollection"
    for feature in collection["features"]:
        geom = shape(feature["geometry"])
        assert geom.is_valid or shapely.make_valid(geom).area > 0
        minx, miny, maxx, maxy = geom.bounds
        assert -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90


async def test_available_and_the_sample_layers(
    aiohttp_client: Any, tmp_path: Path, redis_db: str, sample_catalog: Path
) -> None:
    client = await _client(aiohttp_client, tmp_path, redis_db, sample_catalog)
    resp, available = await _get(client, "/layers/available")
    assert resp.status == 200
    assert available["natura2000"] is True and available["corine"] is True
    assert {"land_cover", "protected_areas", "settlements", "water"} <= {k for k, v in available.items() if v}
    assert available["elevation"] is False
    assert all(isinstance(v, bool) for v in available.values())

    resp, corine = await _get(client, "/layers/corine")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/geo+json")
    assert resp.headers["X-Features-Capped"] == "false" and resp.headers.get("Transfer-Encoding") == "chunked"
    _check_wgs84(corine)
    assert len(corine["features"]) > 10
    props = corine["features"][0]["properties"]
    assert isinstance(props["code"], int) and props["label"] and props["colour"].startswith("#")
    # the land cover is polygonised where it is: its features lie in the sample region
    region = shape(corine["features"][0]["geometry"]).bounds
    assert 13.5 < region[0] < 15.5 and 51 < region[1] < 52.5

    resp, natura = await _get(client, "/layers/natura2000")
    assert resp.status == 200
    _check_wgs84(natura)
    assert natura["features"] and all(f["properties"]["natura2000"] for f in natura["features"])
    resp, every_site = await _get(client, "/layers/protected_areas")
    assert len(every_site["features"]) > len(natura["features"])  # the national sites too

    # a bbox keeps the features that reach into it
    lon0, lat0, lon1, lat1 = shapely.unary_union([shape(f["geometry"]) for f in corine["features"]]).bounds
    small = (lon0, lat0, lon0 + (lon1 - lon0) / 4, lat0 + (lat1 - lat0) / 4)
    resp, part = await _get(client, "/layers/corine", bbox=",".join(map(str, small)))
    assert resp.status == 200 and 0 < len(part["features"]) < len(corine["features"])
    for feature in part["features"]:
        assert shape(feature["geometry"]).intersects(box(*small).buffer(0.01))
    # a bbox far away holds nothing
    resp, none = await _get(client, "/layers/corine", bbox="-10,40,-9,41")
    assert resp.status == 200 and none["features"] == []


async def test_bad_requests(aiohttp_client: Any, tmp_path: Path, redis_db: str, sample_catalog: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, redis_db, sample_catalog)
    for bbox, status in (
        ("1,2,3", 400),
        ("a,b,c,d", 400),
        ("10,50,9,51", 422),
        ("10,50,11,91", 422),
        ("nan,50,11,51", 422),
    ):
        resp, body = await _get(client, "/layers/corine", bbox=bbox)
        assert resp.status == status and body["code"] and body["detail"], (bbox, body)
    for name in ("no_such_layer", "elevation"):
        resp, body = await _get(client, f"/layers/{name}")
        assert resp.status == 404 and body["code"] == "not_found" and body["detail"]
        assert "/" + "tmp" not in body["detail"]  # no server path


async def test_cap_etag_and_simplification(
    aiohttp_client: Any, tmp_path: Path, redis_db: str, dense_catalog: Path
) -> None:
    client = await _client(aiohttp_client, tmp_path, redis_db, dense_catalog, AETHERA_BASEMAP_MAX_FEATURES="300")
    resp, capped = await _get(client, "/layers/protected_areas")
    assert resp.status == 200 and resp.headers["X-Features-Capped"] == "true"
    assert len(capped["features"]) == 300
    resp, natura = await _get(client, "/layers/natura2000")
    assert len(natura["features"]) == 300 and all(f["properties"]["type"] == "SAC" for f in natura["features"])

    # a small extent under the cap: nothing cut, and the geometry kept within the extent's tolerance
    to_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    x0, y0 = sample_region().xy(-14.0, -14.0)
    to_4326 = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    lon0, lat0 = to_4326.transform(x0 - 500, y0 - 500)
    lon1, lat1 = to_4326.transform(x0 + 1500, y0 + 1500)
    bbox = f"{lon0},{lat0},{lon1},{lat1}"
    resp, part = await _get(client, "/layers/protected_areas", bbox=bbox)
    assert resp.headers["X-Features-Capped"] == "false" and 0 < len(part["features"]) < 300
    side_m = max(np.ptp(to_3035.transform([lon0, lon1, lon0, lon1], [lat0, lat0, lat1, lat1])[i]) for i in (0, 1))
    import pyogrio

    original = pyogrio.read_dataframe(dense_catalog.parent / "sites.gpkg", layer="sites").set_index("site_code")
    for feature in part["features"]:
        drawn = shapely.transform(
            shape(feature["geometry"]), lambda c: np.column_stack(to_3035.transform(c[:, 0], c[:, 1]))
        )
        source = original.loc[feature["properties"]["id"]].geometry
        assert drawn.hausdorff_distance(source) <= side_m / TARGET_PX * 1.05 + 0.5
    # a whole-layer extent simplifies these small circles to a handful of vertices
    resp, whole = await _get(client, "/layers/protected_areas")
    vertices = [len(shape(f["geometry"]).exterior.coords) for f in whole["features"]]
    assert max(vertices) < VERTICES / 4

    # ETag: the same request answers 304; another bbox is another answer
    etag = resp.headers["ETag"]
    again = await client.get("/layers/protected_areas", headers={"If-None-Match": etag, "Origin": ORIGIN})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = await client.get("/layers/protected_areas", params={"bbox": bbox}, headers={"If-None-Match": etag})
    assert other.status == 200 and other.headers["ETag"] != etag


async def _stream_peak(client: Any, bbox: str) -> tuple[int, int]:
    """(bytes streamed, traced memory peak of the process while serving and reading them)."""
    tracemalloc.start()
    try:
        resp = await client.get("/layers/protected_areas", params={"bbox": bbox})
        assert resp.status == 200 and resp.headers["X-Features-Capped"] == "false"
        total = 0
        head = tail = b""
        async for chunk in resp.content.iter_chunked(1 << 16):  # read and dropped, as a browser parses
            total += len(chunk)
            head = head if len(head) >= 64 else (head + chunk)[:64]
            tail = (tail + chunk)[-64:]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert head.startswith(b'{"type":"FeatureCollection","features":[{') and tail.endswith(b"}]}")
    return total, peak


async def test_a_10000_feature_layer_streams_in_flat_memory(
    aiohttp_client: Any, tmp_path: Path, redis_db: str, dense_catalog: Path
) -> None:
    import pyogrio

    client = await _client(
        aiohttp_client, tmp_path, redis_db, dense_catalog, AETHERA_BASEMAP_MAX_FEATURES=str(N_SITES + 1)
    )
    await _get(client, "/layers/available")  # the catalog index is built outside the measurement
    layer_bytes = int(
        sum(
            len(shapely.to_wkb(g))
            for g in pyogrio.read_dataframe(dense_catalog.parent / "sites.gpkg", layer="sites").geometry.values
        )
    )
    x0, y0 = sample_region().xy(-14.0, -14.0)
    to_4326 = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)

    def bbox(side_m: float) -> str:
        lon0, lat0 = to_4326.transform(x0 - 200, y0 - 200)
        lon1, lat1 = to_4326.transform(x0 + side_m, y0 + side_m)
        return f"{lon0},{lat0},{lon1},{lat1}"

    quarter_total, quarter_peak = await _stream_peak(client, bbox(14_000))  # about 2,500 sites
    total, peak = await _stream_peak(client, bbox(28_200))  # all 10,000
    print(
        f"\n10,000-feature layer ({layer_bytes / 1e6:.1f} MB of geometry): {total / 1e6:.1f} MB streamed, "
        f"traced peak {peak / 1e6:.2f} MB; a quarter of it: {quarter_total / 1e6:.1f} MB, "
        f"peak {quarter_peak / 1e6:.2f} MB"
    )
    assert total > 2 * quarter_total  # four times the sites (each a little coarser: a larger extent)
    assert peak < layer_bytes / 5 and peak < total / 1.5
    # flat: four times the features, about the same peak (one batch at a time)
    assert peak < 1.5 * quarter_peak + 200_000


# --- a catalog on S3 -----------------------------------------------------------------------------


async def test_layers_of_a_catalog_on_s3(
    aiohttp_client: Any,
    tmp_path: Path,
    redis_db: str,
    sample_catalog: Path,
    s3_endpoint_process: str,
    gdal_settings: Any,  # GDAL's options are process-wide: back to the defaults afterwards
) -> None:
    import boto3
    from botocore.config import Config

    bucket = f"layers-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint_process,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=bucket)
    for name in ("land_cover.tif", "protected_areas.gpkg"):
        s3.upload_file(str(sample_catalog.parent / name), bucket, f"sample/{name}")
    catalog = tmp_path / "s3-catalog.toml"
    catalog.write_text(
        f'[land_cover]\npath = "s3://{bucket}/sample/land_cover.tif"\ncode_scheme = "clc"\n\n'
        f'[protected_areas]\npath = "s3://{bucket}/sample/protected_areas.gpkg"\nlayer = "protected_areas"\n'
        'id_column = "site_code"\nname_column = "name"\ntype_column = "type"\n'
    )
    local = await _client(aiohttp_client, tmp_path / "local", redis_db, sample_catalog)
    # GDAL reads the layers with the service's own S3 settings (create_app configures it from them)
    remote = await _client(
        aiohttp_client,
        tmp_path / "remote",
        redis_db,
        catalog,
        S3_ENDPOINT_URL=s3_endpoint_process,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        S3_REGION="us-east-1",
    )
    _, available = await _get(remote, "/layers/available")
    assert available["natura2000"] and available["corine"]
    for name in ("natura2000", "corine"):
        resp, from_s3 = await _get(remote, f"/layers/{name}")
        assert resp.status == 200
        _check_wgs84(from_s3)
        _, from_disk = await _get(local, f"/layers/{name}")
        # the same files give the same features, wherever they are stored
        assert [f["geometry"] for f in from_s3["features"]] == [f["geometry"] for f in from_disk["features"]]
