"""AOI parsing in every accepted format, repairs, CRS handling and the step-1 summary."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import geokit
import geopandas as gpd
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Polygon, box

from aethera.analysis.aoi import AOI, check_within_catalog, load_aoi
from aethera.errors import InvalidAOI

LONLAT_BOX = box(14.30, 51.70, 14.34, 51.73)
RING = [list(c) for c in LONLAT_BOX.exterior.coords]


def _geodesic_ha(geom: Polygon) -> float:
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geom)
    return abs(area) / 1e4


def _files(tmp_path: Path, driver: str, suffix: str, crs: str | None = "EPSG:4326") -> Path:
    df = gpd.GeoDataFrame({"name": ["site"]}, geometry=[LONLAT_BOX], crs=crs)
    path = tmp_path / f"aoi{suffix}"
    df.to_file(path, driver=driver)
    return path


def _zip_shapefile(tmp_path: Path, with_prj: bool = True, crs: str = "EPSG:4326", geom=LONLAT_BOX) -> bytes:  # type: ignore[no-untyped-def]
    df = gpd.GeoDataFrame({"name": ["site"]}, geometry=[geom], crs=crs)
    shp = tmp_path / "shape" / "site.shp"
    shp.parent.mkdir(exist_ok=True)
    df.to_file(shp)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in shp.parent.iterdir():
            if f.suffix == ".prj" and not with_prj:
                continue
            z.write(f, f"folder/{f.name}")
    return buf.getvalue()


def test_geojson_polygon_dict_str_bytes_agree() -> None:
    geom = {"type": "Polygon", "coordinates": [RING]}
    a = load_aoi(geom)
    b = load_aoi(json.dumps(geom))
    c = load_aoi(json.dumps(geom).encode())
    assert a.area_ha == pytest.approx(_geodesic_ha(LONLAT_BOX), rel=1e-4)
    assert a.area_ha == b.area_ha == c.area_ha
    assert a.source_format == "geojson" and a.repairs == ()


def test_feature_collection_parts_are_merged_and_counted() -> None:
    left = box(14.30, 51.70, 14.31, 51.71)
    right = box(14.32, 51.70, 14.33, 51.71)
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(g)} for g in (left, right)
        ],
    }
    aoi = load_aoi(fc)
    s = aoi.summary()
    assert s.part_count == 2
    assert s.aoi_area_ha == pytest.approx(_geodesic_ha(left) + _geodesic_ha(right), rel=1e-4)
    # overlapping features are unioned: the overlap counts once
    overlapping = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(g)}
            for g in (box(14.30, 51.70, 14.32, 51.71), box(14.31, 51.70, 14.33, 51.71))
        ],
    }
    merged = load_aoi(overlapping)
    assert merged.part_count == 1
    assert merged.area_ha == pytest.approx(_geodesic_ha(box(14.30, 51.70, 14.33, 51.71)), rel=1e-4)
    assert any("merged" in r for r in merged.repairs)


def test_multipolygon_with_hole() -> None:
    outer = box(14.30, 51.70, 14.34, 51.73)
    hole = box(14.31, 51.71, 14.32, 51.72)
    geom = {
        "type": "MultiPolygon",
        "coordinates": [[[list(c) for c in outer.exterior.coords], [list(c) for c in hole.exterior.coords]]],
    }
    aoi = load_aoi(geom)
    assert aoi.summary().hole_count == 1
    assert aoi.area_ha == pytest.approx(_geodesic_ha(outer) - _geodesic_ha(hole), rel=1e-4)


def test_wkt_ewkt_and_crs_argument() -> None:
    utm = shapely.transform(LONLAT_BOX, lambda c: c)  # same coordinates, used as lon/lat
    a = load_aoi(utm.wkt)
    x = geokit.to_lonlat(box(4_600_000, 3_200_000, 4_602_000, 3_201_000))
    b = load_aoi("SRID=3035;" + box(4_600_000, 3_200_000, 4_602_000, 3_201_000).wkt)
    c = load_aoi(box(4_600_000, 3_200_000, 4_602_000, 3_201_000).wkt, crs="EPSG:3035")
    d = load_aoi(x.wkt)
    assert a.source_format == "wkt"
    assert b.summary().source_crs == "EPSG:3035"
    assert b.area_ha == pytest.approx(200.0, rel=1e-9)  # EPSG:3035 is equal-area: 2 km x 1 km
    assert c.area_ha == b.area_ha
    assert d.area_ha == pytest.approx(200.0, rel=1e-4)


def test_geojson_crs_member_is_honoured() -> None:
    geom = {
        "type": "Polygon",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3035"}},
        "coordinates": [
            [
                [4_600_000, 3_200_000],
                [4_601_000, 3_200_000],
                [4_601_000, 3_201_000],
                [4_600_000, 3_201_000],
                [4_600_000, 3_200_000],
            ]
        ],
    }
    aoi = load_aoi(geom)
    assert aoi.summary().source_crs == "EPSG:3035"
    assert aoi.area_ha == pytest.approx(100.0, rel=1e-9)


def test_zipped_shapefile_in_a_folder(tmp_path: Path) -> None:
    aoi = load_aoi(_zip_shapefile(tmp_path), filename="site.zip")
    assert aoi.source_format == "shapefile"
    assert aoi.area_ha == pytest.approx(_geodesic_ha(LONLAT_BOX), rel=1e-4)


def test_zipped_shapefile_in_utm(tmp_path: Path) -> None:
    utm = box(453_000, 4_085_000, 455_000, 4_086_000)
    aoi = load_aoi(_zip_shapefile(tmp_path, crs="EPSG:25830", geom=utm))
    assert aoi.summary().source_crs == "EPSG:25830"
    assert aoi.area_ha == pytest.approx(200.0, rel=0.002)  # UTM is conformal, not equal-area


def test_geopackage_kml_and_kmz(tmp_path: Path) -> None:
    gpkg = _files(tmp_path, "GPKG", ".gpkg").read_bytes()
    kml = _files(tmp_path, "KML", ".kml").read_bytes()
    kmz = io.BytesIO()
    with zipfile.ZipFile(kmz, "w") as z:
        z.writestr("doc.kml", kml)
    expected = _geodesic_ha(LONLAT_BOX)
    for data, name, fmt in (
        (gpkg, None, "geopackage"),
        (kml, "a.kml", "kml"),
        (kml, None, "kml"),
        (kmz.getvalue(), "a.kmz", "kml"),
    ):
        aoi = load_aoi(data, filename=name)
        assert aoi.source_format == fmt
        assert aoi.area_ha == pytest.approx(expected, rel=1e-4)


def test_path_argument(tmp_path: Path) -> None:
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [RING]}))
    assert load_aoi(path).area_ha == pytest.approx(_geodesic_ha(LONLAT_BOX), rel=1e-4)


def test_bowtie_is_repaired_and_said_so() -> None:
    bowtie = [[14.30, 51.70], [14.32, 51.72], [14.32, 51.70], [14.30, 51.72], [14.30, 51.70]]
    aoi = load_aoi({"type": "Polygon", "coordinates": [bowtie]})
    assert aoi.geometry.is_valid
    assert any("make_valid" in r and "Self-intersection" in r for r in aoi.repairs)
    assert aoi.summary().part_count == 2
    triangles = _geodesic_ha(Polygon([(14.30, 51.70), (14.31, 51.71), (14.30, 51.72)])) + _geodesic_ha(
        Polygon([(14.32, 51.70), (14.31, 51.71), (14.32, 51.72)])
    )
    assert aoi.area_ha == pytest.approx(triangles, rel=1e-3)


def test_repairs_travel_with_the_stored_aoi() -> None:
    bowtie = [[14.30, 51.70], [14.32, 51.72], [14.32, 51.70], [14.30, 51.72], [14.30, 51.70]]
    first = load_aoi({"type": "Polygon", "coordinates": [bowtie]})
    stored = first.to_geojson()  # what the API writes to runs/{id}/aoi.geojson
    again = load_aoi(stored, filename="aoi.geojson", client_input=False)  # what the worker reads (its own file)
    assert again.repairs == first.repairs and again.area_ha == pytest.approx(first.area_ha, rel=1e-6)
    assert b"aethera:repairs" not in load_aoi(box(14.3, 51.7, 14.31, 51.71).wkt).to_geojson()


def test_unclosed_ring_is_closed_and_said_so() -> None:
    ring = RING[:-1]
    aoi = load_aoi({"type": "Polygon", "coordinates": [ring]})
    assert any("not closed" in r for r in aoi.repairs)
    assert aoi.area_ha == pytest.approx(_geodesic_ha(LONLAT_BOX), rel=1e-4)


def test_summary_fields() -> None:
    aoi = load_aoi({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [RING]}})
    s = aoi.summary()
    _, perimeter = Geod(ellps="WGS84").geometry_area_perimeter(shapely.segmentize(LONLAT_BOX, 0.001))
    assert s.perimeter_km == pytest.approx(perimeter / 1000, rel=1e-3)
    assert s.centroid_lon == pytest.approx(14.32, abs=1e-3) and s.centroid_lat == pytest.approx(51.715, abs=1e-3)
    assert s.bbox == pytest.approx([14.30, 51.70, 14.34, 51.73], abs=1e-7)
    assert s.part_count == 1 and s.hole_count == 0 and s.vertex_count == 5
    assert s.area_crs == "EPSG:3035" and "aeqd" in s.metric_crs


def test_outside_europe_uses_a_local_equal_area_crs() -> None:
    square = box(-100.0, 40.0, -99.9, 40.1)  # Kansas
    aoi = load_aoi(square.wkt)
    assert "laea" in aoi.summary().area_crs
    assert aoi.area_ha == pytest.approx(_geodesic_ha(shapely.segmentize(square, 0.001)), rel=1e-4)


def test_to_geojson_round_trip() -> None:
    aoi = load_aoi(box(4_600_000, 3_200_000, 4_601_000, 3_201_000).wkt, crs="EPSG:3035")
    again = load_aoi(aoi.to_geojson())
    assert again.area_ha == pytest.approx(aoi.area_ha, rel=1e-6)


def test_check_within_catalog(tmp_path: Path) -> None:
    geokit.uniform_raster(tmp_path)  # 5 km x 5 km from (X0, Y0) down-right
    catalog = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    x0, y0 = geokit.X0, geokit.Y0
    check_within_catalog(geokit.aoi_3035(box(x0 + 100, y0 - 900, x0 + 900, y0 - 100)), catalog)
    check_within_catalog(geokit.aoi_3035(box(x0 + 4500, y0 - 900, x0 + 5500, y0 - 100)), catalog)  # straddles
    far: AOI = load_aoi(box(14.30, 51.70, 14.31, 51.71).wkt)
    with pytest.raises(InvalidAOI, match="outside the land-cover data"):
        check_within_catalog(far, catalog)
