"""A table of bad AOIs, each with the error it must give (InvalidAOI, a message the user can act on)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point, box

from aethera.analysis.aoi import load_aoi
from aethera.errors import InvalidAOI


def _poly(ring: list[list[Any]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


SQUARE = [[14.30, 51.70], [14.31, 51.70], [14.31, 51.71], [14.30, 51.71], [14.30, 51.70]]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _shapefile_without_prj(tmp: Path) -> bytes:
    df = gpd.GeoDataFrame({"a": [1]}, geometry=[box(14.30, 51.70, 14.31, 51.71)], crs=None)
    path = tmp / "noprj.shp"
    df.to_file(path)
    return _zip({f.name: f.read_bytes() for f in tmp.iterdir() if f.stem == "noprj" and f.suffix != ".prj"})


def _kml_points_only(tmp: Path) -> bytes:
    df = gpd.GeoDataFrame({"name": ["pin"]}, geometry=[Point(14.3, 51.7)], crs="EPSG:4326")
    path = tmp / "pin.kml"
    df.to_file(path, driver="KML")
    return path.read_bytes()


CASES: list[tuple[str, Any, dict[str, Any], str]] = [
    # (id, source, load_aoi keyword arguments, expected message fragment)
    ("empty-bytes", b"", {}, "empty"),
    ("blank-text", "   ", {}, "empty"),
    ("not-json", "{not json", {}, "not valid JSON"),
    ("json-array", "[1, 2, 3]", {}, "must be an object"),
    ("no-type", {"coordinates": []}, {}, "must have a 'type'"),
    ("unknown-type", {"type": "Circle", "coordinates": [0, 0]}, {}, "'Circle'"),
    ("point", {"type": "Point", "coordinates": [14.3, 51.7]}, {}, "Point: an AOI must be a Polygon"),
    ("multipoint", {"type": "MultiPoint", "coordinates": [[14.3, 51.7]]}, {}, "not a point"),
    ("linestring", {"type": "LineString", "coordinates": SQUARE}, {}, "not a line"),
    ("multilinestring", {"type": "MultiLineString", "coordinates": [SQUARE]}, {}, "not a line"),
    ("empty-polygon", {"type": "Polygon", "coordinates": []}, {}, "the AOI is empty"),
    ("empty-collection", {"type": "FeatureCollection", "features": []}, {}, "no features"),
    ("null-geometry", {"type": "Feature", "properties": {}, "geometry": None}, {}, "no geometry"),
    (
        "mixed-collection",
        {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {}, "geometry": _poly(SQUARE)},
                {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [14.3, 51.7]}},
            ],
        },
        {},
        "features[1] is a Point",
    ),
    ("zero-area", _poly([[14.30, 51.70], [14.31, 51.71], [14.32, 51.72], [14.30, 51.70]]), {}, "zero area"),
    ("hole-equals-shell", {"type": "Polygon", "coordinates": [SQUARE, SQUARE]}, {}, "zero area"),
    ("too-few-positions", _poly([[14.30, 51.70], [14.31, 51.70], [14.30, 51.70]]), {}, "at least 4"),
    (
        "longitude-out-of-range",
        _poly([[200, 51.70], [201, 51.70], [201, 51.71], [200, 51.71], [200, 51.70]]),
        {},
        "out of range",
    ),
    (
        "latitude-out-of-range",
        _poly([[14.3, 95], [14.31, 95], [14.31, 96], [14.3, 96], [14.3, 95]]),
        {},
        "latitude within -90..90",
    ),
    (
        "projected-without-crs",
        _poly([[453000, 4085000], [455000, 4085000], [455000, 4086000], [453000, 4086000], [453000, 4085000]]),
        {},
        "give the CRS",
    ),
    (
        "string-coordinate",
        _poly([[14.30, "51.70"], [14.31, 51.70], [14.31, 51.71], [14.30, 51.71], [14.30, 51.70]]),
        {},
        "is not a number",
    ),
    (
        "nan-coordinate",
        '{"type": "Polygon", "coordinates": [[[14.3, NaN], [14.31, 51.7], [14.31, 51.71], [14.3, 51.7]]]}',
        {},
        "not valid JSON",
    ),
    (
        "boolean-coordinate",
        _poly([[True, 51.70], [14.31, 51.70], [14.31, 51.71], [14.30, 51.71], [True, 51.70]]),
        {},
        "is not a number",
    ),
    ("bare-position", _poly([14.30, 51.70, 14.31, 51.70]), {}, "position"),
    ("unknown-crs-argument", _poly(SQUARE), {"crs": "EPSG:999999"}, "unknown CRS"),
    (
        "unknown-crs-member",
        {**_poly(SQUARE), "crs": {"type": "name", "properties": {"name": "EPSG:123456789"}}},
        {},
        "unknown CRS",
    ),
    ("geocentric-crs", _poly(SQUARE), {"crs": "EPSG:4978"}, "neither geographic nor projected"),
    (
        "outside-projection",
        "POLYGON ((0 0, 1e12 0, 1e12 1e12, 0 1e12, 0 0))",
        {"crs": "EPSG:3035"},
        "outside the valid range",
    ),
    ("too-large", box(10, 50, 12, 52).wkt, {}, "at most 10,000 km²"),
    ("too-large-custom-limit", box(14.30, 51.70, 14.40, 51.80).wkt, {"max_area_km2": 50}, "at most 50 km²"),
    ("wkt-point", "POINT (14.3 51.7)", {}, "Point"),
    ("wkt-line", LineString([(14.3, 51.7), (14.4, 51.8)]).wkt, {}, "not a line"),
    ("wkt-garbage", "POLYGON ((14.3 51.7, 14.4", {}, "not valid GeoJSON or WKT"),
    ("wkt-empty", "POLYGON EMPTY", {}, "empty"),
    ("binary-garbage", b"\x00\xff\xfe\x01garbage", {}, "not GeoJSON, WKT, KML"),
    ("zip-without-shp", _zip({"readme.txt": b"hello"}), {"filename": "aoi.zip"}, "no .shp"),
    (
        "zip-two-shapefiles",
        _zip({"a.shp": b"x", "a.shx": b"x", "a.dbf": b"x", "b.shp": b"x", "b.shx": b"x", "b.dbf": b"x"}),
        {},
        "2 Shapefiles",
    ),
    ("zip-shp-without-dbf", _zip({"a.shp": b"x", "a.shx": b"x"}), {}, "lacks its .shx or .dbf"),
    ("gpkg-garbage", b"SQLite format 3\x00" + b"\x00" * 200, {}, "cannot be read as GeoPackage"),
    ("kml-garbage", "<kml><Document></Document></kml>", {}, "KML"),
]


@pytest.mark.parametrize("source,kwargs,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_aoi(source: Any, kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidAOI) as info:
        load_aoi(source, **kwargs)
    message = info.value.detail
    assert expected in message, message
    assert info.value.code == "invalid_aoi"
    assert "/tmp" not in message and "Traceback" not in message and "vsimem" not in message


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 15


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_shapefile_without_prj_needs_a_crs(tmp_path: Path) -> None:
    data = _shapefile_without_prj(tmp_path)
    with pytest.raises(InvalidAOI, match=r"no \.prj"):
        load_aoi(data, filename="aoi.zip")
    # ... and is accepted once the caller says which CRS it is in
    assert load_aoi(data, filename="aoi.zip", crs="EPSG:4326").area_ha > 0


def test_kml_without_polygons(tmp_path: Path) -> None:
    with pytest.raises(InvalidAOI, match="Point"):
        load_aoi(_kml_points_only(tmp_path), filename="pin.kml")


def test_too_many_vertices() -> None:
    import numpy as np

    t = np.linspace(0, 2 * np.pi, 600_000)
    ring = np.column_stack([14.3 + 0.01 * np.cos(t), 51.7 + 0.01 * np.sin(t)]).tolist()
    ring.append(ring[0])
    with pytest.raises(InvalidAOI, match="vertices"):
        load_aoi({"type": "Polygon", "coordinates": [ring]})


def test_message_quotes_only_a_short_excerpt_of_hostile_input() -> None:
    with pytest.raises(InvalidAOI) as info:
        load_aoi({"type": "X" * 10_000, "coordinates": []})
    assert len(info.value.detail) < 300
    with pytest.raises(InvalidAOI) as info:
        load_aoi(json.dumps(_poly(SQUARE)), crs="EPSG:" + "9" * 5000)
    assert len(info.value.detail) < 300
