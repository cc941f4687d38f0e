"""The area of interest: parse it from whatever the user sent, check it, repair it, describe it.

`load_aoi` accepts GeoJSON (Geometry, Feature, FeatureCollection; dict, str or bytes), WKT or EWKT
text, and the bytes of a zipped Shapefile, a GeoPackage or a KML/KMZ file. The format is decided by the
content (`aethera.security.content.sniff`), never by a file name: a name that promises another format is
refused, every zip passes `aethera.security.archives.check_zip` before anything reads a member, and
members are read only through its bounded `CheckedZip`. The result is an `AOI`: one valid Polygon or
MultiPolygon in the CRS it was given in (EPSG:4326 unless the input or the caller says otherwise), with
the repairs made to it.

Everything wrong with an input is an `InvalidAOI` whose message says what and where: points and lines,
empty or zero-area geometry, malformed coordinates, coordinates out of range for the CRS, an unknown CRS,
an AOI larger than the limit. Invalid rings (self-intersections, bow-ties) are repaired with
`make_valid` and the repair is recorded, never silent.
"""

from __future__ import annotations

import functools
import math
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from aethera.analysis.projection import (
    WGS84,
    area_crs_for,
    densify,
    metric_crs_for,
    parse_crs,
    reproject,
    round_coords,
    transformer,
)
from aethera.analysis.results import AOISummary
from aethera.errors import InvalidAOI
from aethera.security.archives import ArchiveLimits, CheckedZip
from aethera.security.content import Kind, check_name, check_xml, identify

DEFAULT_MAX_AREA_KM2 = 10_000.0
MAX_VERTICES = 500_000
MIN_AREA_M2 = 1.0  # below one square metre an AOI is a sliver, not an area: "zero area"
# carries the service's own earlier repairs through storage (see AOI.to_geojson); read only from
# GeoJSON the service wrote itself, never from a client's (`client_input=True`)
REPAIRS_MEMBER = "aethera:repairs"


@dataclass(frozen=True, eq=False)
class AOI:
    """A valid (Multi)Polygon in `crs`, plus what was done to make it so."""

    geometry: Polygon | MultiPolygon
    crs: CRS
    repairs: tuple[str, ...] = ()
    source_format: str = "geojson"
    _cache: dict[str, BaseGeometry] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def wgs84(self) -> Polygon | MultiPolygon:
        """The AOI in EPSG:4326 (longitude, latitude)."""
        return self.in_crs(WGS84)

    @cached_property
    def _rough_center(self) -> tuple[float, float]:
        c = self.wgs84.centroid  # only picks projection centres; reported centroid is computed exactly
        return c.x, c.y

    @cached_property
    def area_crs(self) -> CRS:
        return area_crs_for(*self._rough_center)

    @cached_property
    def metric_crs(self) -> CRS:
        return metric_crs_for(*self._rough_center)

    def in_crs(self, crs: CRS) -> Polygon | MultiPolygon:
        """The AOI reprojected to `crs` (densified first, so long edges stay on their true course)."""
        if crs == self.crs:
            return self.geometry
        key = crs.srs or crs.to_wkt()
        geom = self._cache.get(key)
        if geom is None:
            geom = reproject(densify(self.geometry, self.crs), self.crs, crs)
            if not geom.is_valid:  # reprojection can pinch a ring that was valid
                geom = _polygonal(shapely.make_valid(geom))
            self._cache[key] = geom
        return geom  # type: ignore[return-value]

    @cached_property
    def area_geometry(self) -> Polygon | MultiPolygon:
        return self.in_crs(self.area_crs)

    @cached_property
    def metric_geometry(self) -> Polygon | MultiPolygon:
        return self.in_crs(self.metric_crs)

    @cached_property
    def area_m2(self) -> float:
        return float(self.area_geometry.area)

    @property
    def area_ha(self) -> float:
        return self.area_m2 / 10_000.0

    @cached_property
    def centroid_lonlat(self) -> tuple[float, float]:
        c = self.area_geometry.centroid
        lon, lat = transformer(self.area_crs, WGS84).transform(c.x, c.y)
        return float(lon), float(lat)

    @property
    def part_count(self) -> int:
        return len(self.geometry.geoms) if isinstance(self.geometry, MultiPolygon) else 1

    def summary(self) -> AOISummary:
        polys = list(self.geometry.geoms) if isinstance(self.geometry, MultiPolygon) else [self.geometry]
        lon, lat = self.centroid_lonlat
        b = self.wgs84.bounds
        return AOISummary(
            aoi_area_ha=round(self.area_ha, 4),
            perimeter_km=round(self.metric_geometry.length / 1000.0, 4),
            centroid_lon=round(lon, 7),
            centroid_lat=round(lat, 7),
            bbox=[round(v, 7) for v in b],
            part_count=len(polys),
            hole_count=sum(len(p.interiors) for p in polys),
            vertex_count=int(shapely.get_num_coordinates(self.geometry)),
            repairs=list(self.repairs),
            source_format=self.source_format,
            source_crs=_crs_name(self.crs),
            area_crs=_crs_name(self.area_crs),
            metric_crs=_crs_name(self.metric_crs),
        )

    def to_geojson(self, properties: Mapping[str, Any] | None = None) -> bytes:
        """A FeatureCollection with the AOI as its one feature, in EPSG:4326 (how runs store it).

        The repairs made when the AOI was first loaded travel with it (foreign member `aethera:repairs`),
        so the worker that loads the stored, already repaired AOI still reports them.
        """
        geom = msgspec.json.decode(shapely.to_geojson(round_coords(self.wgs84, 8)))
        fc: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": dict(properties or {}), "geometry": geom}],
        }
        if self.repairs:
            fc[REPAIRS_MEMBER] = list(self.repairs)
        return msgspec.json.encode(fc)


def _crs_name(crs: CRS) -> str:
    if crs.name == "unknown":
        # a CRS from a PROJ string (the AOI-centred ones): PROJ matches it to an EPSG entry with 70 %
        # confidence at most (names differ), so the search below, ~20 ms of CPU each, would find nothing
        return crs.srs or crs.name
    return _epsg_name(crs.srs or crs.to_wkt()) or crs.srs or crs.name


@functools.lru_cache(maxsize=256)
def _epsg_name(srs: str) -> str | None:
    """'EPSG:n' when the CRS `srs` names is an EPSG one (90 % confidence), once per process and CRS."""
    epsg = CRS.from_user_input(srs).to_epsg(min_confidence=90)
    return f"EPSG:{epsg}" if epsg else None


# --- loading -------------------------------------------------------------------------------------


def load_aoi(
    source: Mapping[str, Any] | str | bytes | Path,
    *,
    crs: object | None = None,
    filename: str | None = None,
    max_area_km2: float = DEFAULT_MAX_AREA_KM2,
    archive_limits: ArchiveLimits | None = None,
    client_input: bool = True,
) -> AOI:
    """Parse, check and repair an AOI; `InvalidAOI` with a message the user can act on when it is bad.

    `crs` overrides the CRS the input declares (GeoJSON `crs` member, .prj, EWKT SRID); without either,
    GeoJSON, WKT and KML coordinates are longitude, latitude (EPSG:4326). `filename` never picks the
    format (the content does): a name whose suffix (".zip", ".kmz", ".gpkg", ".kml", ".geojson",
    ".json", ".wkt") promises another format than the content is refused. A zip is checked against
    `archive_limits` (the defaults of the AETHERA_ARCHIVE_* settings when None) before anything reads
    it; an unsafe one raises `UnsafeArchive`. `client_input=True` for anything a client sent: its
    `aethera:*` foreign members are ignored, so only the service's own repairs are ever reported.
    """
    given_crs: CRS | None = None
    if crs is not None:
        given_crs = parse_crs(crs)
        if given_crs is None:
            raise InvalidAOI(f"unknown CRS {str(crs)[:80]!r}; give an EPSG code such as EPSG:4326")
        _check_usable_crs(given_crs, str(crs))
    if isinstance(source, Path):
        path = source
        filename = filename or path.name
        try:
            source = path.read_bytes()
        except OSError:
            raise InvalidAOI(f"AOI file {path.name!r} cannot be read") from None
    reading = _Reading(filename, archive_limits or ArchiveLimits(), client_input)
    fmt, polygons, declared_crs, repairs = reading.parse(source)
    aoi_crs = given_crs or declared_crs or WGS84
    return _finish(polygons, aoi_crs, repairs, fmt, max_area_km2)


@dataclass(frozen=True)
class _Reading:
    """How one `load_aoi` call reads its source: the name to hold the content to, the archive limits,
    and whether the source came from a client."""

    filename: str | None
    limits: ArchiveLimits
    client_input: bool

    def parse(self, source: Any) -> tuple[str, list[Polygon], CRS | None, list[str]]:
        if isinstance(source, Mapping):
            check_name(Kind.JSON, self.filename)
            return ("geojson", *_from_geojson(source, self.client_input))
        if isinstance(source, (bytes, bytearray, memoryview)):
            return self._parse_bytes(bytes(source))
        if isinstance(source, str):
            text = source.strip().lstrip("\ufeff")
            if not text:
                raise InvalidAOI("the AOI is empty")
            kind = Kind.XML if text.startswith("<") else Kind.JSON if text.startswith(("{", "[")) else Kind.TEXT
            check_name(kind, self.filename)
            return self._parse_text(text, kind)
        raise InvalidAOI("the AOI must be GeoJSON, WKT or the bytes of a file")

    def _parse_bytes(self, data: bytes) -> tuple[str, list[Polygon], CRS | None, list[str]]:
        if not data.strip():
            raise InvalidAOI("the AOI is empty (no bytes)")
        kind = identify(data, self.filename)  # before any reader, and before a zip is even checked
        if kind is Kind.ZIP:
            return _from_zip(CheckedZip(data, self.limits))
        if kind is Kind.SQLITE:
            return ("geopackage", *_from_ogr_file(data, "aoi.gpkg", "GeoPackage"))
        try:
            if kind is Kind.BINARY:
                raise UnicodeDecodeError("utf-8", data[:1], 0, 1, "binary")
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidAOI("the AOI file is not GeoJSON, WKT, KML, a zipped Shapefile or a GeoPackage") from None
        return self._parse_text(text.strip(), kind)

    def _parse_text(self, text: str, kind: Kind) -> tuple[str, list[Polygon], CRS | None, list[str]]:
        if not text:
            raise InvalidAOI("the AOI is empty")
        if kind is Kind.XML:
            return ("kml", *_from_ogr_file(text.encode("utf-8"), "aoi.kml", "KML"))
        if kind is Kind.JSON:
            try:
                obj = msgspec.json.decode(text.encode("utf-8"))
            except msgspec.DecodeError as exc:
                raise InvalidAOI(f"the AOI is not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise InvalidAOI("GeoJSON must be an object with a 'type' member")
            return ("geojson", *_from_geojson(obj, self.client_input))
        return ("wkt", *_from_wkt(text))


# --- GeoJSON ------------------------------------------------------------------------------------

_POINTY = {"Point", "MultiPoint"}
_LINEY = {"LineString", "MultiLineString", "LinearRing"}


def _from_geojson(obj: Mapping[str, Any], client_input: bool) -> tuple[list[Polygon], CRS | None, list[str]]:
    repairs: list[str] = []
    # a client's `aethera:*` members are ignored: its own words must never read as the service's repairs
    earlier = None if client_input else obj.get(REPAIRS_MEMBER)
    if isinstance(earlier, list):  # written by AOI.to_geojson; bounded, text only
        repairs += [str(r)[:300] for r in earlier[:20] if isinstance(r, str)]
    declared = _geojson_crs(obj)
    kind = obj.get("type")
    polygons: list[Polygon] = []
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise InvalidAOI("FeatureCollection needs a 'features' array")
        if not features:
            raise InvalidAOI("the FeatureCollection has no features: the AOI is empty")
        for i, feature in enumerate(features):
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise InvalidAOI(f"features[{i}] is not a GeoJSON Feature")
            polygons += _feature_polygons(feature, f"features[{i}]", repairs)
    elif kind == "Feature":
        polygons = _feature_polygons(obj, "the Feature", repairs)
    elif isinstance(kind, str):
        polygons = _geometry_polygons(obj, "the geometry", repairs)
    else:
        raise InvalidAOI("GeoJSON must have a 'type' (Polygon, MultiPolygon, Feature or FeatureCollection)")
    return polygons, declared, repairs


def _geojson_crs(obj: Mapping[str, Any]) -> CRS | None:
    member = obj.get("crs")
    if member is None:
        return None
    name = member.get("properties", {}).get("name") if isinstance(member, dict) else None
    if not isinstance(name, str):
        raise InvalidAOI('the GeoJSON \'crs\' member must be {"type": "name", "properties": {"name": ...}}')
    crs = parse_crs(name)
    if crs is None:
        raise InvalidAOI(f"unknown CRS {name[:80]!r} in the GeoJSON 'crs' member")
    _check_usable_crs(crs, name)
    return crs


def _feature_polygons(feature: Mapping[str, Any], where: str, repairs: list[str]) -> list[Polygon]:
    geom = feature.get("geometry")
    if geom is None:
        raise InvalidAOI(f"{where} has no geometry: the AOI is empty")
    if not isinstance(geom, dict):
        raise InvalidAOI(f"{where}: 'geometry' must be a GeoJSON geometry object")
    return _geometry_polygons(geom, f"{where}", repairs)


def _geometry_polygons(geom: Mapping[str, Any], where: str, repairs: list[str]) -> list[Polygon]:
    kind = geom.get("type")
    if kind in _POINTY:
        raise InvalidAOI(f"{where} is a {kind}: an AOI must be a Polygon or MultiPolygon (an area, not a point)")
    if kind in _LINEY:
        raise InvalidAOI(f"{where} is a {kind}: an AOI must be a Polygon or MultiPolygon (an area, not a line)")
    if kind == "GeometryCollection":
        members = geom.get("geometries")
        if not isinstance(members, list) or not members:
            raise InvalidAOI(f"{where} is an empty GeometryCollection: the AOI is empty")
        out: list[Polygon] = []
        for i, member in enumerate(members):
            if not isinstance(member, dict):
                raise InvalidAOI(f"{where}.geometries[{i}] is not a GeoJSON geometry")
            out += _geometry_polygons(member, f"{where}.geometries[{i}]", repairs)
        return out
    coords = geom.get("coordinates")
    if kind == "Polygon":
        if not isinstance(coords, (list, tuple)) or not coords:
            raise InvalidAOI(f"{where} is a Polygon without coordinates: the AOI is empty")
        return [_polygon(coords, where, repairs)]
    if kind == "MultiPolygon":
        if not isinstance(coords, (list, tuple)) or not coords:
            raise InvalidAOI(f"{where} is a MultiPolygon without coordinates: the AOI is empty")
        return [_polygon(p, f"{where} polygon {i + 1}", repairs) for i, p in enumerate(coords)]
    raise InvalidAOI(
        f"{where} has type {str(kind)[:40]!r}; an AOI must be a Polygon, MultiPolygon, Feature or FeatureCollection"
    )


def _polygon(rings: Any, where: str, repairs: list[str]) -> Polygon:
    if not isinstance(rings, (list, tuple)) or not rings:
        raise InvalidAOI(f"{where}: a polygon must be an array of linear rings")
    parsed = [_ring(r, f"{where} ring {j + 1}", repairs) for j, r in enumerate(rings)]
    return Polygon(parsed[0], parsed[1:])


def _ring(ring: Any, where: str, repairs: list[str]) -> list[tuple[float, float]]:
    if not isinstance(ring, (list, tuple)):
        raise InvalidAOI(f"{where}: a linear ring must be an array of positions")
    points: list[tuple[float, float]] = []
    for k, pos in enumerate(ring):
        if not isinstance(pos, (list, tuple)) or len(pos) < 2:
            raise InvalidAOI(f"{where} position {k + 1}: a position must be [x, y] (longitude, latitude)")
        x, y = pos[0], pos[1]
        for v in (x, y):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InvalidAOI(f"{where} position {k + 1}: coordinate {str(v)[:20]!r} is not a number")
            if not math.isfinite(v):
                raise InvalidAOI(f"{where} position {k + 1}: coordinate {v!r} is not a finite number")
        points.append((float(x), float(y)))
    if len(points) >= 3 and points[0] != points[-1]:
        points.append(points[0])
        repairs.append(f"{where} was not closed; closed it by repeating its first position")
    if len(points) < 4:
        raise InvalidAOI(f"{where} has {len(ring)} positions; a linear ring needs at least 4 (a closed triangle)")
    return points


# --- WKT -----------------------------------------------------------------------------------------

_EWKT = re.compile(r"^\s*SRID=(\d+)\s*;\s*(.*)$", re.S | re.I)


def _from_wkt(text: str) -> tuple[list[Polygon], CRS | None, list[str]]:
    declared = None
    m = _EWKT.match(text)
    if m:
        declared = parse_crs(f"EPSG:{m.group(1)}")
        if declared is None:
            raise InvalidAOI(f"unknown CRS SRID={m.group(1)} in the EWKT")
        text = m.group(2)
    try:
        geom = shapely.from_wkt(text)
    except shapely.errors.GEOSException as exc:
        reason = str(exc).split("\n")[0][:160]
        raise InvalidAOI(f"the AOI is not valid GeoJSON or WKT: {reason}") from None
    return _shapely_polygons([geom], "the WKT geometry"), declared, []


def _shapely_polygons(geoms: Iterable[BaseGeometry | None], where: str) -> list[Polygon]:
    out: list[Polygon] = []
    for i, g in enumerate(geoms):
        label = where if where.startswith("the ") else f"{where} {i + 1}"
        if g is None or g.is_empty:
            raise InvalidAOI(f"{label} is empty")
        kind = g.geom_type
        if kind in _POINTY:
            raise InvalidAOI(f"{label} is a {kind}: an AOI must be a Polygon or MultiPolygon (an area, not a point)")
        if kind in _LINEY:
            raise InvalidAOI(f"{label} is a {kind}: an AOI must be a Polygon or MultiPolygon (an area, not a line)")
        if kind == "Polygon":
            out.append(g)  # type: ignore[arg-type]
        elif kind in ("MultiPolygon", "GeometryCollection"):
            out += _shapely_polygons(list(g.geoms), f"{label} part")  # type: ignore[attr-defined]
        else:
            raise InvalidAOI(f"{label} has unsupported type {kind}")
    return out


# --- files (Shapefile, GeoPackage, KML) --------------------------------------------------------


def _from_zip(archive: CheckedZip) -> tuple[str, list[Polygon], CRS | None, list[str]]:
    """A zipped Shapefile or a KMZ, read only through the checked archive's bounded reads."""
    with tempfile.TemporaryDirectory(prefix="aethera-aoi-") as tmp:
        fmt, path, prj_missing = unpack_zip_layer(archive, Path(tmp))
        if fmt == "kml":
            polygons, _ = _read_ogr(path, "KML")
            return "kml", polygons, WGS84, []  # KML coordinates are always longitude, latitude on WGS84
        polygons, crs = _read_ogr(path, "Shapefile")
    if crs is None and prj_missing:
        crs = NO_CRS
    return "shapefile", polygons, crs, []


def unpack_zip_layer(archive: CheckedZip, folder: Path) -> tuple[str, Path, bool]:
    """The one KML or zipped Shapefile a checked zip holds, written into `folder` under fixed names (a
    member's name never becomes a path): its format ("kml" or "shapefile"), the file for GDAL to open,
    and whether a Shapefile came without its .prj. A KML is checked (`check_xml`) before it is written."""
    files = [n for n in archive.names if not n.rsplit("/", 1)[-1].startswith(".") and "__macosx" not in n.lower()]
    kml = [f for f in files if f.lower().endswith(".kml")]
    shp = [f for f in files if f.lower().endswith(".shp")]
    if kml and not shp:
        data = archive.read(kml[0])
        check_xml(data)  # before GDAL's XML parser sees it
        path = folder / "aoi.kml"
        path.write_bytes(data)
        return "kml", path, False
    if not shp:
        raise InvalidAOI("the ZIP holds no .shp file; a zipped Shapefile needs .shp, .shx, .dbf and .prj")
    if len(shp) > 1:
        names = ", ".join(sorted(s.rsplit("/", 1)[-1] for s in shp))[:200]
        raise InvalidAOI(f"the ZIP holds {len(shp)} Shapefiles ({names}); send one AOI")
    stem = shp[0][: -len(".shp")]
    parts = {f[len(stem) :].lower(): f for f in files if f.lower().startswith(stem.lower()) and "." in f[len(stem) :]}
    if ".shx" not in parts or ".dbf" not in parts:
        raise InvalidAOI("the zipped Shapefile lacks its .shx or .dbf file")
    for ext, member in parts.items():
        if re.fullmatch(r"\.[a-z0-9.]{1,12}", ext):
            (folder / f"aoi{ext}").write_bytes(archive.read(member))
    return "shapefile", folder / "aoi.shp", ".prj" not in parts


# Sentinel (compared by identity): a Shapefile that came without its .prj, so its CRS is unknown.
NO_CRS = CRS.from_proj4("+proj=longlat +ellps=WGS84 +no_defs +type=crs")


def _from_ogr_file(data: bytes, fname: str, label: str) -> tuple[list[Polygon], CRS | None, list[str]]:
    if label == "KML":
        check_xml(data)  # before GDAL's XML parser sees it, whichever path the KML came by
    with tempfile.TemporaryDirectory(prefix="aethera-aoi-") as tmp:
        path = Path(tmp) / fname
        path.write_bytes(data)
        polygons, crs = _read_ogr(path, label)
    if label == "KML":
        crs = WGS84  # KML coordinates are always longitude, latitude on WGS84
    return polygons, crs, []


def _read_ogr(path: Path, label: str) -> tuple[list[Polygon], CRS | None]:
    frames = read_ogr_frames(path, label)
    if len(frames) > 1:
        raise InvalidAOI(f"the {label} file holds {len(frames)} layers with features; send one AOI layer")
    df = frames[0]
    crs = CRS.from_user_input(df.crs) if df.crs is not None else None
    geoms = list(df.geometry.values)
    polygons = _shapely_polygons(geoms, f"{label} feature")
    return polygons, crs


def read_ogr_frames(path: Path, label: str, max_features: int | None = None) -> list[Any]:
    """Every polygon layer of the file at `path` that holds features, as GeoDataFrames (at least one).

    With `max_features`, a file holding more features than that (all layers together) is refused before
    its features are read: the count comes from the layers' metadata, or from reading one feature past
    the limit where a driver cannot count without reading."""
    import warnings

    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            layers = pyogrio.list_layers(path)
            candidates = [str(n) for n, t in layers if t is None or "Polygon" in str(t) or t == "Unknown"]
            candidates = [c for c in candidates if c not in ("layer_styles",)]
            if not candidates:
                raise InvalidAOI(f"the {label} file holds no polygon layer")
            frames = []
            left = max_features
            for layer in candidates:
                if left is not None:
                    counted = int(pyogrio.read_info(path, layer=layer)["features"])
                    if counted > left:
                        raise InvalidAOI(f"the {label} file holds more than {max_features} features")
                df = pyogrio.read_dataframe(path, layer=layer, max_features=None if left is None else left + 1)
                if left is not None:
                    if len(df) > left:
                        raise InvalidAOI(f"the {label} file holds more than {max_features} features")
                    left -= len(df)
                if len(df):
                    frames.append(df)
    except (DataSourceError, DataLayerError):
        raise InvalidAOI(f"the AOI file cannot be read as {label}") from None
    if not frames:
        raise InvalidAOI(f"the {label} file holds no features: the AOI is empty")
    return frames


# --- checks and repairs --------------------------------------------------------------------------


def _check_usable_crs(crs: CRS, shown: str) -> None:
    if not (crs.is_geographic or crs.is_projected) or crs.is_geocentric:
        raise InvalidAOI(f"CRS {shown[:80]!r} is neither geographic nor projected; give e.g. EPSG:4326")


def _finish(polygons: Sequence[Polygon], crs: CRS, repairs: list[str], fmt: str, max_area_km2: float) -> AOI:
    if crs is NO_CRS:
        raise InvalidAOI(
            "the Shapefile has no .prj file, so its coordinate reference system is unknown; "
            "add the .prj to the ZIP or give the CRS"
        )
    polygons = [p for p in polygons if not p.is_empty]
    if not polygons:
        raise InvalidAOI("the AOI is empty")
    geom: BaseGeometry = shapely.force_2d(MultiPolygon(polygons) if len(polygons) > 1 else polygons[0])
    n_vertices = int(shapely.get_num_coordinates(geom))
    if n_vertices > MAX_VERTICES:
        raise InvalidAOI(f"the AOI has {n_vertices:,} vertices; at most {MAX_VERTICES:,} are accepted (simplify it)")
    _check_coordinates(geom, crs)

    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        repaired = _polygonal(shapely.make_valid(geom, method="structure", keep_collapsed=False))
        if repaired.is_empty:
            raise InvalidAOI(f"the AOI has zero area ({reason})")
        repairs.append(f"invalid geometry ({reason}) repaired with make_valid")
        geom = repaired
    if len(polygons) > 1:
        merged = _polygonal(shapely.union_all(shapely.get_parts(geom)))
        if len(shapely.get_parts(merged)) < len(polygons):
            repairs.append(f"{len(polygons)} overlapping or touching polygons merged into one AOI")
        geom = merged
    aoi = AOI(geometry=geom, crs=crs, repairs=tuple(repairs), source_format=fmt)  # type: ignore[arg-type]
    try:
        area_m2 = aoi.area_m2
    except Exception:  # a projection failure here means coordinates the CRS cannot express
        raise InvalidAOI("the AOI's coordinates cannot be projected; check the CRS") from None
    if not math.isfinite(area_m2):
        raise InvalidAOI("the AOI's coordinates cannot be projected; check the CRS")
    if area_m2 < MIN_AREA_M2:
        raise InvalidAOI("the AOI has zero area (its rings enclose no surface)")
    max_m2 = max_area_km2 * 1e6
    if area_m2 > max_m2:
        raise InvalidAOI(f"the AOI covers {area_m2 / 1e6:,.1f} km²; at most {max_area_km2:,.0f} km² are accepted")
    return aoi


def _check_coordinates(geom: BaseGeometry, crs: CRS) -> None:
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        raise InvalidAOI("the AOI has coordinates that are not finite numbers")
    if crs.is_geographic:
        bad_lon = np.abs(coords[:, 0]) > 180.0
        bad_lat = np.abs(coords[:, 1]) > 90.0
        if bad_lon.any() or bad_lat.any():
            x, y = coords[np.argmax(bad_lon | bad_lat)]
            hint = " (projected coordinates? give the CRS)" if max(abs(x), abs(y)) > 1000 else ""
            raise InvalidAOI(
                f"coordinate ({x:g}, {y:g}) is out of range: longitude must lie within -180..180 and "
                f"latitude within -90..90{hint}"
            )
        return
    # Projected: every vertex must map to a real place and back (a round trip catches coordinates
    # far outside what the projection can express, which PROJ may otherwise map to garbage).
    t = transformer(crs, WGS84)
    lon, lat = t.transform(coords[:, 0], coords[:, 1])
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    if ok.all():
        x2, y2 = transformer(WGS84, crs).transform(lon, lat)
        ok = np.isfinite(x2) & (np.hypot(x2 - coords[:, 0], y2 - coords[:, 1]) < 1.0)
    if not ok.all():
        x, y = coords[np.argmin(ok)]
        raise InvalidAOI(f"coordinate ({x:g}, {y:g}) is outside the valid range of {_crs_name(crs)}")


def _polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """The polygonal part of a geometry (make_valid may add lines or points where rings collapse)."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    parts: list[Polygon] = []
    for g in getattr(geom, "geoms", []):
        if isinstance(g, Polygon) and not g.is_empty:
            parts.append(g)
        elif isinstance(g, MultiPolygon):
            parts.extend(g.geoms)
    if not parts:
        return Polygon()
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


# --- against the catalog -------------------------------------------------------------------------


def check_within_catalog(aoi: AOI, catalog: Any) -> None:
    """`InvalidAOI` when the AOI lies wholly outside the land-cover layer (the API checks before queueing).

    An AOI that straddles the layer's edge is accepted: the part outside is reported as "outside the
    land-cover layer" in the results, with a warning.
    """
    from aethera.analysis.layers import land_cover_extent

    extent_geom, extent_crs = land_cover_extent(catalog)
    aoi_in_layer = aoi.in_crs(extent_crs)
    if not aoi_in_layer.intersects(extent_geom):
        lon0, lat0, lon1, lat1 = (round(v, 3) for v in reproject(extent_geom, extent_crs, WGS84).bounds)
        raise InvalidAOI(
            "the AOI lies outside the land-cover data of this deployment "
            f"(covered: longitude {lon0}..{lon1}, latitude {lat0}..{lat1})"
        )
