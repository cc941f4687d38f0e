"""GeoJSON output layers: FeatureCollections in EPSG:4326 (RFC 7946 order: longitude, latitude)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from aethera.analysis.projection import WGS84, reproject, round_coords

MEDIA_TYPE = "application/geo+json"
_DECIMALS = 7  # 1e-7 degree is about 1 cm: more digits would only add bytes


def feature_collection(
    features: Iterable[tuple[BaseGeometry | None, Mapping[str, Any]]],
    crs: CRS,
    **members: Any,
) -> bytes:
    """Encode (geometry in `crs`, properties) pairs as a FeatureCollection in EPSG:4326.

    Extra keyword `members` become foreign members of the collection (e.g. `reason` for an empty one).
    """
    out = []
    for geom, props in features:
        gj = None
        if geom is not None and not geom.is_empty:
            g = round_coords(reproject(geom, crs, WGS84), _DECIMALS)
            gj = msgspec.json.decode(shapely.to_geojson(g))
        out.append({"type": "Feature", "properties": dict(props), "geometry": gj})
    fc: dict[str, Any] = {"type": "FeatureCollection", **members, "features": out}
    return msgspec.json.encode(fc)
