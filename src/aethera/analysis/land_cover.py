"""Step 2: land cover of the AOI and, separately, of the buffer ring around it, per CORINE class.

Raster layers: exact fractional pixel coverage (exactextract's definition): a pixel half inside the zone
counts half, so the class areas plus the no-data cells add up to the zone's area. Only the pixels under the
zone are read. On a projected raster `raster_coverage` counts the interior pixels whole with numpy and asks
exactextract only for the pixels along the boundary (same answer, O(perimeter) exact work); on a lon/lat
raster exactextract weighs every pixel by its spherical area.

Areas are always in the equal-area CRS, never in the layer's: a pixel's area in a projected layer CRS is
scaled by the local ratio of the zone's true (equal-area) area to its area in the layer CRS (UTM, for
example, shrinks areas by up to 0.08 % near the central meridian); for a geographic layer CRS the cells'
spherical areas are used and scaled the same way.

Vector layers: polygon intersection in the layer's CRS, areas measured after reprojecting each piece to
the equal-area CRS. An `AREA_HA`-style column is never used: CORINE's holds the area of the original,
unclipped polygon.

Coverage: the part of a zone outside the layer, on no-data cells or on unclassified codes is not land of
any class. Each zone reports `covered_ha` and `coverage_ratio` (covered / zone area, 0..1), and the
`ratios` the rules and indices read are fractions of the *covered* area, reported beside that coverage:
a gap never dilutes a ratio, and whoever reads a ratio can see how much land it rests on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from aethera.analysis import raster_coverage
from aethera.analysis.aoi import AOI
from aethera.analysis.layers import layer_crs, open_raster, read_source_features
from aethera.analysis.projection import densify, reproject, reproject_many, zone_buffer
from aethera.analysis.results import LandCover, LandCoverClass, LandCoverGroup, LandCoverZone
from aethera.data import corine
from aethera.data.catalog import Catalog, LayerSource

NODATA_LABEL = "No data"
OUTSIDE_LABEL = "Outside the land-cover layer"


@dataclass
class ZoneAreas:
    """Raw per-class areas (m², equal-area CRS) of one zone."""

    zone_m2: float
    by_code: dict[int, float]
    nodata_m2: float
    outside_m2: float


def summarize(aoi: AOI, catalog: Catalog, buffer_km: float) -> LandCover:
    """Land cover of the AOI and of the ring from its boundary out to `buffer_km`."""
    source = catalog.land_cover()
    with ExitStack() as stack:
        # One open of a raster layer for its CRS and every zone (an open costs milliseconds, more on S3).
        ds = stack.enter_context(open_raster(source)) if source.format == "raster" else None
        crs = layer_crs(source, ds)
        aoi_areas = zone_areas(source, crs, aoi.in_crs(crs), aoi.area_geometry, aoi.area_crs, ds=ds)
        buffer_zone = None
        buffer_reason = None
        if buffer_km > 0:
            ring_metric = buffer_ring(aoi, buffer_km)
            ring_layer = reproject(densify(ring_metric, aoi.metric_crs), aoi.metric_crs, crs)
            ring_area = reproject(densify(ring_metric, aoi.metric_crs), aoi.metric_crs, aoi.area_crs)
            buffer_zone = _zone("buffer", zone_areas(source, crs, ring_layer, ring_area, aoi.area_crs, ds=ds))
        else:
            buffer_reason = "buffer_km is 0: no buffer ring"
        resolution = float(abs(ds.res[0])) if ds is not None else None
    aoi_zone = _zone("aoi", aoi_areas)
    return LandCover(
        source=source.format,
        layer=source.display,
        method=(
            "exact fractional pixel coverage (exactextract); areas in the equal-area CRS"
            if source.format == "raster"
            else "polygon intersection; areas of the intersections in the equal-area CRS"
        ),
        resolution_m=resolution if not crs.is_geographic else None,
        aoi=aoi_zone,
        buffer=buffer_zone,
        buffer_km=buffer_km,
        buffer_reason=buffer_reason,
        coverage_ratio=aoi_zone.coverage_ratio or 0.0,
        covered_ha=aoi_zone.covered_ha or 0.0,
        ratios=ratios(aoi_areas),
        ratios_reason=None if covered_m2(aoi_areas) > 0 else "no part of the AOI has land-cover data",
    )


def buffer_ring(aoi: AOI, buffer_km: float) -> BaseGeometry:
    """The ring from the AOI boundary out to `buffer_km`, in the AOI's metric CRS (AOI excluded)."""
    outer = zone_buffer(aoi.metric_geometry, buffer_km * 1000.0)
    return outer.difference(aoi.metric_geometry)


def zone_areas(
    source: LayerSource,
    crs: CRS,
    zone_layer: BaseGeometry,
    zone_area_geom: BaseGeometry,
    area_crs: CRS,
    ds: Any = None,
) -> ZoneAreas:
    """Per-class areas of a zone given in the layer's CRS (and in the equal-area CRS, for its area).

    `ds`: the raster layer already open (else it is opened here).
    """
    if source.format == "raster":
        if ds is None:
            with open_raster(source) as opened:
                return _raster_zone(source, crs, zone_layer, zone_area_geom, area_crs, opened)
        return _raster_zone(source, crs, zone_layer, zone_area_geom, area_crs, ds)
    return _vector_zone(source, crs, zone_layer, zone_area_geom, area_crs)


def _raster_zone(
    source: LayerSource, crs: CRS, zone_layer: BaseGeometry, zone_area_geom: BaseGeometry, area_crs: CRS, ds: Any
) -> ZoneAreas:
    zone_m2 = float(zone_area_geom.area)
    extent = box(*ds.bounds)
    inside = zone_layer.intersection(extent)
    if inside.is_empty or inside.area == 0:
        return ZoneAreas(zone_m2, {}, 0.0, zone_m2)
    inside_m2 = float(reproject(densify(inside, crs), crs, area_crs).area)
    # Nodata cells take the value `fill` instead of being skipped, so one pass gives every class,
    # the nodata cells and the total coverage.
    nodata = ds.nodata
    fill = int(nodata) if nodata is not None and float(nodata).is_integer() else 0
    cell_area = abs(ds.transform.a * ds.transform.e)
    if crs.is_geographic:
        units, all_units = _geographic_units(ds, source.band, inside, fill)
    else:
        # Interior pixels counted whole, exact fractions only along the boundary (raster_coverage).
        units, all_units = raster_coverage.value_coverage(ds, source.band, inside, fill)
    if crs.is_geographic:
        # Spherical cell areas scaled to the ellipsoidal equal-area measure of the same surface.
        m2_per_unit = inside_m2 / all_units if all_units > 0 else 0.0
    else:
        scale = inside_m2 / float(inside.area)  # projection's local area distortion
        m2_per_unit = cell_area * scale
    by_code: dict[int, float] = defaultdict(float)
    nodata_m2 = 0.0
    for value, cells in units.items():
        area = cells * m2_per_unit
        code = None if int(value) == fill else _raster_code(int(value), source)
        if code is None:
            nodata_m2 += area
        else:
            by_code[code] += area
    return ZoneAreas(zone_m2, dict(by_code), nodata_m2, max(zone_m2 - inside_m2, 0.0))


def _geographic_units(ds: Any, band: int, zone: BaseGeometry, fill: int) -> tuple[dict[float, float], float]:
    """Per-value spherical-area-weighted coverage of a zone on a lon/lat raster (exactextract)."""
    from exactextract import exact_extract
    from exactextract.feature import JSONFeatureSource
    from exactextract.raster import RasterioRasterSource

    weight = ",coverage_weight=area_spherical_m2"
    ops = [
        f"unique(default_value={fill}{weight})",
        f"frac(default_value={fill}{weight})",
        f"count(default_value={fill}{weight})",
    ]
    feature = [{"type": "Feature", "properties": {}, "geometry": mapping(zone)}]
    result = exact_extract(RasterioRasterSource(ds, band), JSONFeatureSource(feature), ops)[0]["properties"]
    count = float(result["count"])
    units = {
        float(v): f * count for v, f in zip(np.asarray(result["unique"]).tolist(), np.asarray(result["frac"]).tolist())
    }
    return units, count


def _raster_code(value: int, source: LayerSource) -> int | None:
    if source.code_scheme == "grid_code":
        if value == corine.GRID_CODE_NODATA:
            return None
        return corine.from_grid_code(value) or value  # 49, 50 (unclassified): kept as unknown-class lines
    return value


def _vector_zone(
    source: LayerSource, crs: CRS, zone_layer: BaseGeometry, zone_area_geom: BaseGeometry, area_crs: CRS
) -> ZoneAreas:
    zone_m2 = float(zone_area_geom.area)
    features = read_source_features((source,), zone_layer, crs)
    by_code: dict[int, float] = defaultdict(float)
    nodata_m2 = 0.0
    covered_m2 = 0.0
    if len(features):
        pieces = shapely.intersection(features.geoms, zone_layer)
        keep = ~shapely.is_empty(pieces)
        pieces = np.asarray(pieces)[keep]
        codes = [c for c, k in zip(features.codes, keep) if k]
        pieces = shapely.segmentize(pieces, 1000.0 if not crs.is_geographic else 0.01)
        areas = shapely.area(reproject_many(pieces, crs, area_crs))
        for code, area in zip(codes, areas.tolist()):
            covered_m2 += area
            if code is None:
                nodata_m2 += area
            else:
                by_code[code] += area
    outside = max(zone_m2 - covered_m2, 0.0)
    return ZoneAreas(zone_m2, dict(by_code), nodata_m2, outside)


def _zone(kind: str, z: ZoneAreas) -> LandCoverZone:
    total = z.zone_m2 if z.zone_m2 > 0 else 1.0
    lines: list[LandCoverClass] = []
    for code, m2 in sorted(z.by_code.items(), key=lambda kv: (-kv[1], kv[0])):
        if m2 <= 0:
            continue
        grp = corine.group(code)
        lines.append(
            LandCoverClass(
                code=code,
                label=corine.label(code),
                group=grp.key,
                group_label=grp.label,
                area_ha=round(m2 / 1e4, 4),
                share=round(m2 / total, 6),
            )
        )
    if z.nodata_m2 > 0:
        lines.append(
            LandCoverClass(
                code=None,
                label=NODATA_LABEL,
                group="nodata",
                group_label=NODATA_LABEL,
                area_ha=round(z.nodata_m2 / 1e4, 4),
                share=round(z.nodata_m2 / total, 6),
            )
        )
    if z.outside_m2 > 0.5:  # below half a square metre the "outside" part is rounding noise
        lines.append(
            LandCoverClass(
                code=None,
                label=OUTSIDE_LABEL,
                group="outside",
                group_label=OUTSIDE_LABEL,
                area_ha=round(z.outside_m2 / 1e4, 4),
                share=round(z.outside_m2 / total, 6),
            )
        )
    group_m2: dict[str, float] = defaultdict(float)
    for code, m2 in z.by_code.items():
        group_m2[corine.group(code).key] += m2
    groups = [
        LandCoverGroup(
            group=g.key, label=g.label, area_ha=round(group_m2[g.key] / 1e4, 4), share=round(group_m2[g.key] / total, 6)
        )
        for g in corine.GROUPS
    ]
    if group_m2.get(corine.UNCLASSIFIED.key):
        m2 = group_m2[corine.UNCLASSIFIED.key]
        groups.append(
            LandCoverGroup(
                group=corine.UNCLASSIFIED.key,
                label=corine.UNCLASSIFIED.label,
                area_ha=round(m2 / 1e4, 4),
                share=round(m2 / total, 6),
            )
        )
    classified = sum(z.by_code.values())
    covered = covered_m2(z)
    return LandCoverZone(
        zone=kind,  # type: ignore[arg-type]
        area_ha=round(z.zone_m2 / 1e4, 4),
        classified_ha=round(classified / 1e4, 4),
        nodata_ha=round(z.nodata_m2 / 1e4, 4),
        outside_layer_ha=round(z.outside_m2 / 1e4, 4) if z.outside_m2 > 0.5 else 0.0,
        covered_ha=round(covered / 1e4, 4),
        coverage_ratio=coverage_of(z),
        classes=lines,
        groups=groups,
    )


def covered_m2(z: ZoneAreas) -> float:
    """Area of the zone on a known CORINE class: what the layer actually says something about."""
    return sum(m2 for code, m2 in z.by_code.items() if corine.group(code) is not corine.UNCLASSIFIED)


def coverage_of(z: ZoneAreas) -> float:
    """Share of the zone's area (0..1) the layer covers with a known class."""
    if z.zone_m2 <= 0:
        return 0.0
    return round(min(1.0, covered_m2(z) / z.zone_m2), 6)


def ratios(z: ZoneAreas) -> dict[str, float]:
    """Fractions (0..1) of the zone's *covered* area by broad kind (the names the legal metrics use).

    Empty when nothing of the zone is covered: a ratio of no land is not 0, it is unknown.
    """
    known = {code: m2 for code, m2 in z.by_code.items() if corine.group(code) is not corine.UNCLASSIFIED}
    total = sum(known.values())
    if total <= 0:
        return {}

    def share(pred: Callable[[int], bool]) -> float:
        return round(sum(m2 for code, m2 in known.items() if pred(code)) / total, 6)

    return {
        "artificial": share(lambda c: 100 <= c < 200),
        "agricultural": share(lambda c: 200 <= c < 300),
        "forest": share(lambda c: 310 <= c < 320),
        "shrub": share(lambda c: 320 <= c < 330),
        "semi_natural": share(lambda c: 320 <= c < 340),
        "wetland": share(lambda c: 400 <= c < 500),
        "water": share(lambda c: 500 <= c < 600),
        "natural_habitat": share(lambda c: 300 <= c < 600),
    }
