"""The site map of `report.html`: inline SVG, nothing fetched, no script.

It shows the AOI, the ring of the zone of influence, the protected areas the run found (its `natura`
layer), the land the eligibility rules leave buildable (its `eligible` layer) and the land-cover classes of the zone in the CORINE legend colours, with a legend, a scale bar
and a north arrow. It is drawn in the AOI's local projection (the run's azimuthal equidistant CRS,
centred on the AOI: distances are true from the centre and north is up there), and every geometry is
simplified to the drawing's pixel before it is written, so the SVG's size follows the map, not the data.

Rendered by the run's child process with the report (`jobs/pipeline_process.py`): it reads the land
cover within the zone through `analysis/basemap.py` (a decimated window), which is CPU and GDAL work.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from aethera.analysis import basemap
from aethera.analysis.projection import metric_crs_for, reproject, reproject_bounds, reproject_many
from aethera.data import corine
from aethera.data.catalog import Catalog

WIDTH_PX = 640
PAD_PX = 12
LAND_COVER_MAX_FEATURES = 3000  # a zone's land-cover patches drawn at most (the largest first)
AOI_COLOUR = "#1f4e79"
ZONE_COLOUR = "#5b6875"
PROTECTED_COLOUR = "#1f7a3a"
ELIGIBLE_COLOUR = "#d4a017"  # amber: apart from the protected green and the land-cover palette


def site_map_svg(
    aoi_geojson: Mapping[str, Any] | None,
    buffer_km: float,
    *,
    protected_geojson: bytes | None = None,
    eligible_geojson: bytes | None = None,
    catalog: Catalog | None = None,
) -> str:
    """The map as an SVG element followed by its legend (HTML); "" when there is no AOI to draw."""
    aoi = _aoi_geometry(aoi_geojson)
    if aoi is None:
        return ""
    centre = aoi.centroid
    local = metric_crs_for(centre.x, centre.y)
    aoi_m = reproject(aoi, basemap.WGS84, local)
    zone_m = (
        aoi_m.buffer(buffer_km * 1000.0, quad_segs=32)
        if buffer_km > 0
        else aoi_m.buffer(max(math.sqrt(aoi_m.area) * 0.25, 100.0))
    )
    minx, miny, maxx, maxy = zone_m.bounds
    span = max(maxx - minx, maxy - miny, 1.0)
    scale = (WIDTH_PX - 2 * PAD_PX) / span
    width, height = (maxx - minx) * scale + 2 * PAD_PX, (maxy - miny) * scale + 2 * PAD_PX
    tol = 0.5 / scale  # half a pixel, in metres

    def path(geom: BaseGeometry) -> str:
        geom = shapely.simplify(geom, tol, preserve_topology=True)
        return _svg_path(geom, lambda x, y: (PAD_PX + (x - minx) * scale, PAD_PX + (maxy - y) * scale))

    layers: list[str] = []
    legend: list[tuple[str, str, str]] = []  # (swatch style, label, kind)
    classes = _land_cover(catalog, zone_m, local)
    shown_codes: dict[int, str] = {}
    for geom, code in classes:
        clipped = geom.intersection(zone_m)
        if clipped.is_empty:
            continue
        d = path(clipped)
        if d:
            layers.append(f'<path d="{d}" fill="{corine.colour(code)}" stroke="none"/>')
            shown_codes.setdefault(code, corine.label(code))
    for code in sorted(shown_codes):
        legend.append((f"background:{corine.colour(code)}", f"{code} {shown_codes[code]}", "class"))

    def overlay(
        data: bytes | None, within: BaseGeometry, colour: str, opacity: float, stroke_px: float, label: str, kind: str
    ) -> None:
        """A run layer (GeoJSON polygons) clipped to `within`, drawn translucent, with its legend line."""
        geom = _polygons(data, local)
        clipped = geom.intersection(within) if geom is not None else None
        d = path(clipped) if clipped is not None and not clipped.is_empty else ""
        if d:
            layers.append(
                f'<path d="{d}" fill="{colour}" fill-opacity="{opacity:g}" stroke="{colour}" '
                f'stroke-width="{stroke_px:g}" fill-rule="evenodd" data-layer="{kind}"/>'
            )
            legend.insert(
                0,
                (
                    f"background:{colour}{int(opacity * 255 + 0.5):02x};border:{stroke_px:g}px solid {colour}",
                    label,
                    kind,
                ),
            )

    overlay(
        protected_geojson,
        zone_m,
        PROTECTED_COLOUR,
        0.3,
        1.2,
        "Protected area (Natura 2000 layer of the run)",
        "protected",
    )
    overlay(
        eligible_geojson,
        aoi_m,
        ELIGIBLE_COLOUR,
        0.45,
        1.0,
        "Eligible land (what no exclusion rule removes)",
        "eligible",
    )
    if buffer_km > 0:
        layers.append(
            f'<path d="{path(zone_m)}" fill="none" stroke="{ZONE_COLOUR}" stroke-width="1.2" stroke-dasharray="6 4"/>'
        )
        legend.insert(0, (f"border:1.5px dashed {ZONE_COLOUR}", f"Zone of influence ({buffer_km:g} km)", "zone"))
    layers.append(f'<path d="{path(aoi_m)}" fill="none" stroke="{AOI_COLOUR}" stroke-width="2.5" fill-rule="evenodd"/>')
    legend.insert(0, (f"border:2.5px solid {AOI_COLOUR}", "Area of interest", "aoi"))
    svg = (
        f'<svg class="sitemap" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="Site map">'
        f'<rect width="100%" height="100%" fill="#ffffff"/>'
        + "".join(layers)
        + _scale_bar(scale, height)
        + _north_arrow(width)
        + "</svg>"
    )
    items = "".join(
        f'<li data-kind="{kind}"><span class="sw" style="{style}"></span>{escape(label)}</li>'
        for style, label, kind in legend
    )
    note = "Land cover from the catalog's layer within the zone; " if shown_codes else "No land cover could be drawn; "
    return (
        f'<figure class="sitemap">{svg}<figcaption><ul class="legend">{items}</ul>'
        f'<p class="sub">{escape(note)}azimuthal equidistant projection centred on the AOI, north up.</p>'
        "</figcaption></figure>"
    )


def _aoi_geometry(geojson: Mapping[str, Any] | None) -> BaseGeometry | None:
    if not isinstance(geojson, Mapping):
        return None
    try:
        if geojson.get("type") == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in geojson.get("features", []) if f.get("geometry")]
            geom = shapely.union_all(geoms) if geoms else None
        elif geojson.get("type") == "Feature":
            geom = shape(geojson["geometry"]) if geojson.get("geometry") else None
        else:
            geom = shape(dict(geojson))
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException):
        return None
    if geom is None or geom.is_empty:
        return None
    return geom if geom.is_valid else shapely.make_valid(geom)


def _land_cover(catalog: Catalog | None, zone_m: BaseGeometry, local: Any) -> list[tuple[BaseGeometry, int]]:
    if catalog is None or not catalog.has("land_cover"):
        return []
    bbox = reproject_bounds(zone_m.bounds, local, basemap.WGS84)
    plan = basemap.plan(basemap.BaseLayer("corine", catalog.sources("land_cover")), bbox, LAND_COVER_MAX_FEATURES)
    features = json.loads(b"[" + b",".join(chunk for chunk in plan.batches() if chunk) + b"]")
    if not features:
        return []
    geoms = np.array([shape(f["geometry"]) for f in features], dtype=object)
    geoms = reproject_many(geoms, basemap.WGS84, local)
    out = []
    for geom, feature in zip(geoms, features):
        code = corine.parse_code(feature["properties"].get("code"))
        if code is not None and geom is not None and not geom.is_empty:
            out.append((geom if geom.is_valid else shapely.make_valid(geom), code))
    return out


def _polygons(data: bytes | None, local: Any) -> BaseGeometry | None:
    """The union of a GeoJSON FeatureCollection's polygons, in the map's CRS; None when there are none."""
    if not data:
        return None
    try:
        features = json.loads(data).get("features", [])
        geoms = [shape(f["geometry"]) for f in features if f.get("geometry")]
    except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.GEOSException):
        return None
    polygons = [g if g.is_valid else shapely.make_valid(g) for g in geoms if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        return None
    return reproject(shapely.union_all(polygons), basemap.WGS84, local)


def _rings(geom: BaseGeometry) -> Iterable[Any]:
    for part in getattr(geom, "geoms", [geom]):
        if part.geom_type == "Polygon":
            yield part.exterior
            yield from part.interiors
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            yield from _rings(part)


def _svg_path(geom: BaseGeometry, to_px: Any) -> str:
    parts = []
    for ring in _rings(geom):
        coords = np.asarray(ring.coords)
        if len(coords) < 4:
            continue
        pts = [to_px(x, y) for x, y in coords[:-1]]
        parts.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + " Z")
    return " ".join(parts)


def _nice_length_m(max_m: float) -> float:
    """The largest 1, 2 or 5 x 10^k metres not above `max_m`."""
    exp: float = 10 ** math.floor(math.log10(max_m))
    for step in (5, 2, 1):
        if step * exp <= max_m:
            return step * exp
    return exp


def _scale_bar(scale: float, height: float) -> str:
    length_m = _nice_length_m((WIDTH_PX / 4) / scale)
    px = length_m * scale
    x0, y0 = PAD_PX + 4, height - PAD_PX - 4
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    return (
        f'<g class="scalebar"><rect x="{x0 - 3}" y="{y0 - 20}" width="{px + 6:.1f}" height="26" fill="#ffffff" '
        f'fill-opacity="0.8"/><path d="M{x0},{y0 - 5} L{x0},{y0} L{x0 + px:.1f},{y0} L{x0 + px:.1f},{y0 - 5}" '
        f'fill="none" stroke="#1d2733" stroke-width="1.5"/><text x="{x0 + px / 2:.1f}" y="{y0 - 8}" '
        f'font-size="11" text-anchor="middle" fill="#1d2733">{label}</text></g>'
    )


def _north_arrow(width: float) -> str:
    x, y = width - PAD_PX - 14, PAD_PX + 6
    return (
        f'<g class="north"><path d="M{x},{y} L{x + 8},{y + 22} L{x},{y + 17} L{x - 8},{y + 22} Z" fill="#1d2733"/>'
        f'<text x="{x}" y="{y + 36}" font-size="12" text-anchor="middle" fill="#1d2733">N</text></g>'
    )
