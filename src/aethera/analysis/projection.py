"""Which CRS each measurement is made in, and reprojection of shapely geometries.

- Areas: EPSG:3035 (ETRS89-LAEA, equal-area) when the AOI lies in its area of use (Europe), otherwise a
  Lambert azimuthal equal-area CRS centred on the AOI.
- Distances and buffers: an azimuthal equidistant CRS centred on the AOI. Distances from its centre are
  exact and the scale error at 50 km from it is below 0.002 %, so every distance the screening reports
  (AOI to receptors, buffer rings) is right to far better than the 1 % the users need.

Every transformation uses `always_xy=True`: x is easting or longitude whatever axis order a CRS declares
(EPSG:4326 latitude-first, EPSG:3042 northing-first). Coordinates are never swapped by hand.
"""

from __future__ import annotations

import threading
from typing import TypeVar

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

WGS84 = CRS.from_epsg(4326)
ETRS89_LAEA = CRS.from_epsg(3035)

_LAEA_BOUNDS = ETRS89_LAEA.area_of_use.bounds if ETRS89_LAEA.area_of_use else (-35.58, 24.6, 44.83, 84.73)

G = TypeVar("G", bound=BaseGeometry)

# pyproj Transformers must not be shared between threads (the worker runs pipelines in threads).
_local = threading.local()


def to_crs(value: object) -> CRS:
    """A pyproj CRS from a CRS, 'EPSG:xxxx', an EPSG integer, WKT or a rasterio CRS."""
    if isinstance(value, CRS):
        return value
    if hasattr(value, "to_wkt"):  # rasterio.crs.CRS
        return _from_wkt(value.to_wkt())
    return CRS.from_user_input(value)


def _from_wkt(wkt: str) -> CRS:
    """A CRS parsed once per thread and WKT: parsing a dataset's WKT costs PROJ ~5-10 ms of CPU, and a run
    asks each raster for its CRS several times. Per thread, like the transformations."""
    cache: dict[str, CRS] | None = getattr(_local, "crs", None)
    if cache is None:
        cache = _local.crs = {}
    crs = cache.get(wkt)
    if crs is None:
        if len(cache) >= _EPSG_EQUAL_MAX:
            cache.clear()
        crs = cache[wkt] = CRS.from_wkt(wkt)
    return crs


def transformer(src: CRS, dst: CRS) -> Transformer:
    """The transformation from `src` to `dst`, made once per thread and pair of CRSs.

    Making one costs PROJ a search of its database for the operations between the two datums, 10-100 ms
    of CPU each; a small run needs a dozen (issue #14). Two shortcuts give the very transformation the
    full search gives, at a fraction of its cost (`tests/analysis/test_projection.py` checks both):
    - a CRS equal to an EPSG one (a dataset's WKT) is keyed and built as that EPSG CRS, so the pairs the
      forkserver prepared (`jobs/pipeline_preload.py`) serve every run;
    - when one side has no known datum (the AOI-centred CRSs of this module are built from PROJ strings
      with an ellipsoid only), no registered operation can apply, so PROJ's full search ends with the
      same conversion it finds among its own ("PROJ" authority) operations: the search is skipped.
    """
    cache: dict[tuple[str, str], Transformer] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    src, dst = _canonical(src), _canonical(dst)
    key = (src.srs, dst.srs) if src.srs and dst.srs else (src.to_wkt(), dst.to_wkt())
    t = cache.get(key)
    if t is None:
        if _unknown_datum(src) or _unknown_datum(dst):
            t = Transformer.from_crs(src, dst, always_xy=True, authority="PROJ")
        else:
            t = Transformer.from_crs(src, dst, always_xy=True)
        cache[key] = t
    return t


# srs (a WKT) -> the EPSG CRS it equals, or None; a handful of entries (the datasets' and uploads' CRSs)
_EPSG_EQUAL: dict[str, CRS | None] = {}
_EPSG_EQUAL_MAX = 256


def _canonical(crs: CRS) -> CRS:
    """`crs` itself, or the EPSG CRS it equals (identified at full confidence and equivalent)."""
    srs = crs.srs
    if not srs or srs.startswith(("EPSG:", "epsg:", "+proj=")):
        return crs  # already keyed by its code, or one of this module's PROJ-string CRSs
    if srs not in _EPSG_EQUAL:
        code = crs.to_epsg(min_confidence=100)
        same = CRS.from_epsg(code) if code is not None else None
        if len(_EPSG_EQUAL) >= _EPSG_EQUAL_MAX:
            _EPSG_EQUAL.clear()
        _EPSG_EQUAL[srs] = same if same is not None and crs.equals(same) else None
    return _EPSG_EQUAL[srs] or crs


def _unknown_datum(crs: CRS) -> bool:
    """A CRS on an unknown datum ("Unknown based on ... ellipsoid"): a PROJ string with `+ellps` only."""
    datum = crs.datum
    return datum is not None and datum.name.startswith("Unknown based on")


def reproject(geom: G, src: CRS, dst: CRS) -> G:
    """`geom` with its coordinates transformed from `src` to `dst` (identity when they are equal)."""
    if src == dst or geom.is_empty:
        return geom
    t = transformer(src, dst)

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = t.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, fn)


def reproject_many(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    """An array of geometries reprojected in one call."""
    if src == dst or len(geoms) == 0:
        return geoms
    t = transformer(src, dst)

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = t.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, fn)


def reproject_bounds(
    bounds: tuple[float, float, float, float], src: CRS, dst: CRS
) -> tuple[float, float, float, float]:
    """Bounds of a box after reprojection (edges densified, so curved edges are enclosed)."""
    if src == dst:
        return bounds
    return tuple(transformer(src, dst).transform_bounds(*bounds, densify_pts=21))  # type: ignore[return-value]


def area_crs_for(lon: float, lat: float) -> CRS:
    """The equal-area CRS for an AOI centred at lon, lat."""
    west, south, east, north = _LAEA_BOUNDS
    if west <= lon <= east and south <= lat <= north:
        return ETRS89_LAEA
    return CRS.from_proj4(f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")


def local_equal_area_crs(lon: float, lat: float) -> CRS:
    """A Lambert azimuthal equal-area CRS centred on lon, lat (GRS80): areas are exact everywhere and
    distances from the centre are off by less than 0.001 % within 50 km, so buffers drawn in it are true
    to well below the figures' precision and their areas need no second projection."""
    return CRS.from_proj4(f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs")


def metric_crs_for(lon: float, lat: float) -> CRS:
    """The distance CRS for an AOI centred at lon, lat: azimuthal equidistant on that point."""
    return CRS.from_proj4(f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")


def parse_crs(value: object) -> CRS | None:
    """A CRS, or None when `value` names none pyproj knows."""
    try:
        return to_crs(value)
    except (CRSError, TypeError, ValueError):
        return None


def densify(geom: G, crs: CRS, max_segment_m: float = 1000.0) -> G:
    """Insert vertices so no segment is longer than about `max_segment_m` before a reprojection.

    A straight edge in one CRS is curved in another; long edges (a 10 km box side given in lon/lat) would
    otherwise be cut short as chords. 1 km segments keep the area error far below 0.01 %.
    """
    step = max_segment_m / 111_000.0 if crs.is_geographic else max_segment_m
    return shapely.segmentize(geom, step)


def round_coords(geom: G, decimals: int) -> G:
    """Coordinates rounded to `decimals` (7 decimals of a degree are about 1 cm): smaller GeoJSON."""
    return shapely.transform(geom, lambda c: np.round(c, decimals))


# Segments per quarter circle of a buffer's rounded corners. A buffer polygon is inscribed in the true
# buffer: each arc of angle t loses the share 1 - sin(t)/t of its sector, about t²/6. GEOS' default (8 per
# quarter) loses 0.64 % of the pi r² part and shapely's 16 0.16 % (a 5 km ring around a 1 km² AOI 0.1 %
# short); 128 per quarter loses 0.0025 %, well inside the 0.01 % the ring areas must meet.
BUFFER_QUAD_SEGS = 128


def zone_buffer(geom: BaseGeometry, distance_m: float) -> BaseGeometry:
    """`geom` (in a metric CRS, metres) grown by `distance_m`, with corners round to 0.0025 % in area."""
    return geom.buffer(distance_m, quad_segs=BUFFER_QUAD_SEGS)
