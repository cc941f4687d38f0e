"""`read_sites`: every feature of a GeoJSON, GeoPackage, zipped Shapefile or KML file (written here by
GDAL) as its own Feature with its properties, each loadable as an AOI in its own CRS; hostile and
unusable files refused as a whole."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from servicekit import aoi_feature
from shapely.geometry import shape

from aethera.analysis.aoi import load_aoi
from aethera.analysis.sites import read_sites, site_name
from aethera.errors import InvalidAOI, UnsafeArchive
from aethera.security.archives import ArchiveLimits

LIMITS = ArchiveLimits()
SQUARES = [(2.0, -6.0, "east"), (-4.0, 3.0, "west"), (5.0, 5.0, "north")]


def frame(crs: str = "EPSG:4326") -> Any:
    import geopandas as gpd

    geoms = [shape(aoi_feature(e, n, 0.6)["geometry"]) for e, n, _ in SQUARES]
    names = [name for _, _, name in SQUARES]
    return gpd.GeoDataFrame({"name": names, "rank": [1, 2, 3]}, geometry=geoms, crs="EPSG:4326").to_crs(crs)


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    return buf.getvalue()


def site_files(tmp_path: Path) -> dict[str, tuple[str, bytes]]:
    """The same three sites in every accepted format, projected ones in other CRSs than EPSG:4326."""
    frame("EPSG:3035").to_file(tmp_path / "sites.gpkg", driver="GPKG")
    frame().to_file(tmp_path / "sites.kml", driver="KML")
    (tmp_path / "shp").mkdir()
    frame("EPSG:25833").to_file(tmp_path / "shp" / "sites.shp")
    collection = {"type": "FeatureCollection", "features": msgspec.json.decode(frame().to_json())["features"]}
    return {
        "geopackage": ("sites.gpkg", (tmp_path / "sites.gpkg").read_bytes()),
        "kml": ("sites.kml", (tmp_path / "sites.kml").read_bytes()),
        "shapefile_zip": ("sites.zip", zipped(tmp_path / "shp")),
        "geojson": ("sites.geojson", json.dumps(collection).encode()),
    }


@pytest.mark.parametrize("fmt", ["geopackage", "kml", "shapefile_zip", "geojson"])
def test_every_feature_is_a_site_with_its_properties(fmt: str, tmp_path: Path) -> None:
    filename, data = site_files(tmp_path)[fmt]
    features = read_sites(data, filename, limits=LIMITS, max_features=10)
    assert [site_name(f, i, "name") for i, f in enumerate(features)] == ["east", "west", "north"]
    for feature, (e, n, _) in zip(features, SQUARES, strict=True):
        aoi = load_aoi(msgspec.json.encode(feature))  # its own CRS travels with it
        assert aoi.area_m2 == pytest.approx(360_000, rel=2e-3)
        expected = load_aoi(aoi_feature(e, n, 0.6))
        assert aoi.wgs84.symmetric_difference(expected.wgs84).area < 1e-3 * expected.wgs84.area


def test_more_features_than_the_limit_are_refused_before_reading(tmp_path: Path) -> None:
    for filename, data in site_files(tmp_path).values():
        with pytest.raises(InvalidAOI, match="2"):
            read_sites(data, filename, limits=LIMITS, max_features=2)


def make_zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


HOSTILE: dict[str, tuple[str, bytes, type[Exception], str]] = {
    "zip bomb": ("sites.zip", make_zip([("sites.dbf", b"\0" * (8 << 20))]), UnsafeArchive, "bomb"),
    "traversal": ("sites.zip", make_zip([("../sites.shp", b"x")]), UnsafeArchive, r"\.\."),
    "not geo at all": ("sites.geojson", b"just some words, no JSON here", InvalidAOI, "content is text"),
    "binary junk": ("sites.gpkg", bytes(range(256)) * 8, InvalidAOI, "binary"),
    "XML entities": (
        "sites.kml",
        b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY x SYSTEM "file:///etc/passwd">]><kml>&x;</kml>',
        InvalidAOI,
        "DOCTYPE",
    ),
    "a lone geometry": ("sites.geojson", json.dumps(aoi_feature()["geometry"]).encode(), InvalidAOI, "Collection"),
    "no features": ("sites.geojson", b'{"type": "FeatureCollection", "features": []}', InvalidAOI, "no features"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_or_unusable_files_are_refused(case: str, tmp_path: Path) -> None:
    filename, data, error, words = HOSTILE[case]
    with pytest.raises(error, match=words) as caught:
        read_sites(data, filename, limits=LIMITS, max_features=10)
    assert "/tmp" not in caught.value.detail and str(tmp_path) not in caught.value.detail


def test_a_shapefile_without_its_prj_is_refused(tmp_path: Path) -> None:
    (tmp_path / "shp").mkdir()
    frame().to_file(tmp_path / "shp" / "sites.shp")
    (tmp_path / "shp" / "sites.prj").unlink()
    with pytest.raises(InvalidAOI, match=r"\.prj"):
        read_sites(zipped(tmp_path / "shp"), "sites.zip", limits=LIMITS, max_features=10)


def test_site_names_fall_back_case_insensitively_then_to_the_index() -> None:
    assert site_name({"properties": {"Name": "KML style"}}, 0, "name") == "KML style"
    assert site_name({"properties": {"name": " exact ", "Name": "other"}}, 0, "name") == "exact"
    assert site_name({"properties": {"name": True}}, 7, "name") == "7"
    assert site_name("not a feature", 3, "name") == "3"
