"""A file of many candidate sites: every feature of a GeoJSON, GeoPackage, zipped Shapefile or KML file
as its own GeoJSON Feature, its properties kept (so a batch can name each site by one of them).

The file passes the same gates as a single AOI (`analysis.aoi.load_aoi`): the content decides the
format and a name promising another is refused, a zip passes `check_zip` (names, links, nesting, sizes,
compression ratio) before a member is read and is read only through `CheckedZip`, and KML is checked
for entity declarations and a `<kml>` root before GDAL parses it. The number of features is checked
against the caller's limit before GDAL reads them into memory. Features are returned as the file holds
them, neither checked nor repaired: the caller checks each one as an AOI, so a bad feature is that
site's reason, not the whole file's. A feature GDAL read carries its layer's CRS as a GeoJSON `crs`
member, which `load_aoi` honours (areas and checks then happen in the AOI's own CRS).

Parsing, GDAL and temporary files: call `read_sites` in a thread, never on the event loop.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec
from pyproj import CRS

from aethera.analysis.aoi import read_ogr_frames, unpack_zip_layer
from aethera.errors import InvalidAOI
from aethera.security.archives import ArchiveLimits, CheckedZip
from aethera.security.content import Kind, check_xml, identify

FORMATS = "a GeoJSON FeatureCollection, a GeoPackage, a zipped Shapefile or a KML file"


def read_sites(data: bytes, filename: str | None, *, limits: ArchiveLimits, max_features: int) -> list[dict[str, Any]]:
    """Every feature of the file as a GeoJSON Feature dict (properties kept), in file order.

    InvalidAOI (or UnsafeArchive, its kind) says what is wrong with the file as a whole: an unknown or
    mislabelled format, an unsafe archive, no features, more than `max_features`."""
    if not data.strip():
        raise InvalidAOI("the file of sites is empty")
    kind = identify(data, filename)  # before any reader, and before a zip is even opened
    with tempfile.TemporaryDirectory(prefix="aethera-sites-") as tmp:
        folder = Path(tmp)
        if kind is Kind.ZIP:
            fmt, path, prj_missing = unpack_zip_layer(CheckedZip(data, limits), folder)
            if fmt == "kml":
                return _features_of(path, "KML", max_features)
            return _features_of(path, "Shapefile", max_features, prj_missing=prj_missing)
        if kind is Kind.SQLITE:
            path = folder / "sites.gpkg"
            path.write_bytes(data)
            return _features_of(path, "GeoPackage", max_features)
        if kind is Kind.XML:
            check_xml(data)
            path = folder / "sites.kml"
            path.write_bytes(data)
            return _features_of(path, "KML", max_features)
    if kind is Kind.JSON:
        return _geojson_features(data, max_features)
    raise InvalidAOI(f"a file of sites must be {FORMATS}")


def site_name(feature: Any, index: int, prop: str) -> str:
    """The feature's `prop` property as its site name (case-insensitive when no property has that exact
    name: KML's name reads as `Name`), else its index."""
    props = feature.get("properties") if isinstance(feature, dict) else None
    if not isinstance(props, dict):
        return str(index)
    value = props.get(prop)
    if value is None:
        value = next((v for k, v in props.items() if isinstance(k, str) and k.lower() == prop.lower()), None)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()[:200]
    return str(index)


def _geojson_features(data: bytes, max_features: int) -> list[dict[str, Any]]:
    try:
        doc = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        raise InvalidAOI("the file is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise InvalidAOI("a GeoJSON file of sites must be a FeatureCollection")
    features: list[Any] = doc["features"]
    _check_count(len(features), max_features)
    crs = doc.get("crs")
    if crs is not None:  # the collection's CRS applies to every feature, checked with each
        features = [{**f, "crs": crs} if isinstance(f, dict) and "crs" not in f else f for f in features]
    return features


def _features_of(path: Path, label: str, max_features: int, *, prj_missing: bool = False) -> list[dict[str, Any]]:
    if prj_missing:
        raise InvalidAOI(
            "the Shapefile has no .prj file, so its coordinate reference system is unknown; add the .prj to the ZIP"
        )
    features: list[dict[str, Any]] = []
    for frame in read_ogr_frames(path, label, max_features=max_features):
        crs_member = None if label == "KML" else _crs_member(frame.crs)
        # GeoPandas turns dates, numpy numbers and missing values into plain JSON
        collection = msgspec.json.decode(frame.to_json(na="null", drop_id=True))
        for feature in collection["features"]:
            feature.pop("bbox", None)
            if crs_member is not None:
                feature["crs"] = crs_member
            features.append(feature)
    _check_count(len(features), max_features)
    return features


def _crs_member(crs: Any) -> dict[str, Any] | None:
    """A GeoJSON `crs` member naming the layer's CRS (EPSG code when it has one, else its WKT); None for
    EPSG:4326, GeoJSON's own. A layer without a CRS is refused: its coordinates cannot be placed."""
    if crs is None:
        raise InvalidAOI("the layer has no coordinate reference system; its coordinates cannot be placed")
    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg(min_confidence=90)
    if epsg == 4326:
        return None
    name = f"EPSG:{epsg}" if epsg else parsed.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def _check_count(count: int, max_features: int) -> None:
    if count == 0:
        raise InvalidAOI("the file holds no features")
    if count > max_features:
        raise InvalidAOI(f"a batch holds at most {max_features} sites; the file holds {count}")
