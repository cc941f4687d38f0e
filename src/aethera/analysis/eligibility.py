"""Land eligibility: where in the AOI the project could be built, rule by rule, with the sources.

The AOI minus every exclusion rule of the technology's rule set (`eligibility_rules.py`: the file, the
country's overlay, the run's `config.eligibility`) is the eligible land; patches of it smaller than the
rule set's `min_area` are not sites and are excluded too.

Method, everything in one Lambert azimuthal equal-area CRS centred on the AOI (areas exact, buffer
distances true to < 0.001 % within 50 km):
- vector rules (protected areas, settlements, water; land cover from a vector layer) as exact geometry:
  the features near the AOI are read (bbox, clipped to the AOI plus the buffer), buffered, dissolved and
  intersected with the AOI;
- raster rules (slope and elevation from the elevation raster; land cover from a raster) on the layer's
  own grid: the cells a rule excludes are turned into polygons (cell edges in the layer's CRS) and those
  intersected exactly with the AOI, so a cell half inside counts half. Slope is computed with central
  differences over the cell size in metres (one cell of margin, as in `terrain.py`).
Cells without data and land outside a raster are *unassessed* by that rule: not excluded, reported, and
they make the eligible area an upper bound. A rule whose layer the catalog lacks is `not_applied`, named
in the results and the warnings, never a silent "nothing excluded"; it lowers the confidence.

Per rule the result gives the area it excludes on its own and the area it alone is responsible for
(excluded by it and by no other rule); `excluded_ha = sum(exclusive_ha) + overlap_ha`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Geod
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry

from aethera.analysis.aoi import AOI
from aethera.analysis.eligibility_rules import RULE_KINDS, RULE_LAYERS, RULE_PARAMS, Rule, RuleSet, effective_rules
from aethera.analysis.geojson import feature_collection
from aethera.analysis.layers import layer_crs, open_raster, read_features
from aethera.analysis.params import RunParams
from aethera.analysis.projection import local_equal_area_crs, reproject, reproject_many
from aethera.analysis.protected_areas import is_natura2000
from aethera.analysis.results import (
    Eligibility,
    EligibilityRuleResult,
    EligiblePatchClass,
    EligiblePatches,
)
from aethera.data import corine
from aethera.data.catalog import Catalog, LayerSource

# Segments per quarter circle. A point's buffer is a whole circle: with 128 its polygon has 99.9975 % of
# the circle's area. A line's or an area's buffer has arcs only at its ends and corners, so 32 (an arc
# area error of 0.04 %) is far below 0.01 % of the buffer, at a quarter of the cost.
QUAD_SEGS_POINT = 128
QUAD_SEGS = 32
# Patches below a square metre are floating-point slivers of the differences, not land.
SLIVER_M2 = 1.0
PATCH_CLASSES_HA: tuple[float, ...] = (0.0, 1.0, 5.0, 10.0, 50.0, 100.0)
EXACT = "exact geometry"


@dataclass
class Exclusion:
    """What one rule excluded (in the local CRS, clipped to the AOI), or why it could not be applied."""

    geometry: BaseGeometry | None  # None: not applied
    # the exclusion before clipping to the AOI: the eligible land is the AOI minus these, so a boundary
    # the clip recomputed never leaves floating-point slivers joining patches the rules separate
    raw: BaseGeometry | None = None
    unassessed: BaseGeometry | None = None
    reason: str | None = None
    method: str | None = None
    resolution_m: float | None = None
    layer: str | None = None


def analyse(aoi: AOI, catalog: Catalog, params: RunParams) -> tuple[Eligibility, bytes]:
    """The eligibility of the AOI for `params.project_type`, and the `eligible` layer (GeoJSON, EPSG:4326)."""
    rules = effective_rules(params.project_type, params.country, params.eligibility)
    lon, lat = aoi.centroid_lonlat
    crs = local_equal_area_crs(lon, lat)
    aoi_geom = aoi.in_crs(crs)
    aoi_m2 = float(aoi_geom.area)

    exclusions: dict[str, Exclusion] = {}
    for kind in RULE_KINDS:
        rule = rules.rules[kind]
        if kind == "min_area" or not rule.enabled:
            continue
        layer = RULE_LAYERS[kind]
        if layer is None or not catalog.has(layer):
            exclusions[kind] = Exclusion(
                None,
                reason=f"the dataset catalog has no {layer} layer: rule not applied, "
                "the eligible area is an upper bound",
            )
            continue
        exclusions[kind] = _RULE_FNS[kind](aoi_geom, crs, catalog, rule)

    applied = {k: e.geometry for k, e in exclusions.items() if e.geometry is not None}
    union = _union([e.raw if e.raw is not None else e.geometry for e in exclusions.values()])
    remaining = aoi_geom.difference(union) if union is not None else aoi_geom
    min_rule = rules.rules["min_area"]
    min_area_m2 = max(SLIVER_M2, (min_rule.min_area_ha or 0.0) * 1e4 if min_rule.enabled else 0.0)
    parts = [p for p in shapely.get_parts(remaining) if isinstance(p, Polygon)]
    patches = [p for p in parts if p.area >= min_area_m2]
    small = [p for p in parts if p.area < min_area_m2]
    if min_rule.enabled:
        applied["min_area"] = _union(small) or Polygon()
    eligible_m2 = float(sum(p.area for p in patches))
    excluded_m2 = max(0.0, aoi_m2 - eligible_m2)

    results, exclusive = _rule_results(rules, exclusions, applied, aoi_m2)
    overlap_m2 = max(0.0, excluded_m2 - sum(exclusive.values()))
    confidence, notes = _confidence(results, aoi_m2)
    binding = [k for k, v in sorted(exclusive.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0.5]
    if not binding and excluded_m2 > 0.5:
        binding = [r.rule for r in sorted(results, key=lambda r: -(r.excluded_ha or 0.0)) if (r.excluded_ha or 0.0) > 0]
    density = params.density_mw_per_ha
    eligible_ha = eligible_m2 / 1e4
    result = Eligibility(
        technology=params.project_type,
        rule_set={
            "id": rules.id,
            "version": rules.version,
            "name": rules.name,
            "overlays": list(rules.overlays),
            "overrides": params.eligibility,
        },
        method=(
            "vector rules as exact geometry (buffers, unions, differences); raster rules on the layer's grid, "
            "excluded cells intersected exactly with the AOI (partial cells count by their covered part)"
        ),
        crs=crs.srs or crs.to_wkt(),
        aoi_area_ha=_ha(aoi_m2),
        eligible_ha=_ha(eligible_m2),
        eligible_share=_share(eligible_m2, aoi_m2),
        excluded_ha=_ha(excluded_m2),
        overlap_ha=_ha(overlap_m2),
        upper_bound=confidence < 1.0,
        confidence=confidence,
        rules=results,
        binding_constraints=binding,
        patches=_patch_stats([p.area / 1e4 for p in patches]),
        mw_per_ha=density,
        capacity_mw=round(eligible_ha * density, 3),
        notes=notes,
    )
    patches.sort(key=lambda p: -p.area)
    eligible_layer = feature_collection(
        ((p, {"patch_id": i + 1, "area_ha": _ha(p.area)}) for i, p in enumerate(patches)),
        crs,
        eligible_ha=result.eligible_ha,
        rule_set=rules.id,
        **({"reason": "no land of the AOI is eligible under the rule set"} if not patches else {}),
    )
    return result, eligible_layer


def _rule_results(
    rules: RuleSet, exclusions: dict[str, Exclusion], applied: dict[str, BaseGeometry], aoi_m2: float
) -> tuple[list[EligibilityRuleResult], dict[str, float]]:
    """Each rule's line of the results, and the area each applied rule alone excludes (m²)."""
    results: list[EligibilityRuleResult] = []
    exclusive: dict[str, float] = {}
    for kind in RULE_KINDS:
        rule = rules.rules[kind]
        base: dict[str, Any] = dict(
            rule=kind,
            parameters=_rule_params(kind, rule),
            source=rule.source,
            screening_default=rule.screening_default,
            overridden=list(rules.overridden.get(kind, ())),
        )
        unknown: dict[str, Any] = dict(
            method=None, resolution_m=None, excluded_ha=None, excluded_share=None, exclusive_ha=None
        )
        if not rule.enabled:
            by = " by the run's config.eligibility" if kind in rules.overridden else " in the rule set"
            results.append(EligibilityRuleResult(**base, status="disabled", reason="switched off" + by, **unknown))
            continue
        ex = exclusions.get(kind, Exclusion(applied.get("min_area"), method=EXACT))
        geom = applied.get(kind)
        if geom is None:
            results.append(EligibilityRuleResult(**base, status="not_applied", reason=ex.reason, **unknown))
            continue
        own_m2 = float(geom.area)
        if kind == "min_area":  # the small patches lie outside every other rule's exclusion by construction
            only_m2 = own_m2
        else:
            # E ∩ (∪ others) = ∪ (E ∩ other): clipping each other rule to this one first keeps every
            # overlay small, where a union of all the others per rule would redo the big overlays n times
            shared = _union(
                [
                    geom.intersection(g)
                    for k, g in applied.items()
                    if k not in (kind, "min_area") and _boxes_meet(geom, g)
                ]
            )
            only_m2 = own_m2 - (float(shared.area) if shared is not None else 0.0)
        exclusive[kind] = only_m2
        results.append(
            EligibilityRuleResult(
                **base,
                status="applied",
                reason=ex.reason,
                method=ex.method or EXACT,
                resolution_m=ex.resolution_m,
                excluded_ha=_ha(own_m2),
                excluded_share=_share(own_m2, aoi_m2),
                exclusive_ha=_ha(only_m2),
                unassessed_ha=_ha(float(ex.unassessed.area)) if ex.unassessed is not None else 0.0,
            )
        )
    return results, exclusive


def _confidence(results: list[EligibilityRuleResult], aoi_m2: float) -> tuple[float, list[str]]:
    """The mean share of the AOI each enabled data rule could judge (0 for a rule without its layer), and
    the notes saying what was missing. A rule the run switched off is a choice, not missing evidence."""
    parts: list[float] = []
    notes: list[str] = []
    for r in results:
        if r.rule == "min_area" or r.status == "disabled":
            continue
        if r.status == "not_applied":
            parts.append(0.0)
            notes.append(f"rule {r.rule} not applied: {r.reason}")
            continue
        unassessed_m2 = (r.unassessed_ha or 0.0) * 1e4
        parts.append(max(0.0, 1.0 - unassessed_m2 / aoi_m2) if aoi_m2 > 0 else 0.0)
        if unassessed_m2 > 0.5:
            notes.append(
                f"rule {r.rule}: {r.unassessed_ha:.2f} ha of the AOI have no data in its layer and "
                "count as eligible (upper bound)"
            )
    return (round(sum(parts) / len(parts), 4) if parts else 1.0), notes


# --- the rules -------------------------------------------------------------------------------------


def _rule_params(kind: str, rule: Rule) -> dict[str, Any]:
    return {k: getattr(rule, k) for k in sorted(RULE_PARAMS[kind]) if getattr(rule, k) is not None}


def _vector_rule(layer: str, select: Callable[[Any, int], bool] | None = None) -> Callable[..., Exclusion]:
    def fn(aoi_geom: BaseGeometry, crs: CRS, catalog: Catalog, rule: Rule) -> Exclusion:
        buffer_m = float(rule.buffer_m or 0.0)
        # every point of a feature within buffer_m of the AOI lies in this region, so clipping to it
        # changes nothing inside the AOI
        region = aoi_geom.buffer(buffer_m + 1.0, quad_segs=16) if buffer_m > 0 else aoi_geom
        feats = read_features(catalog, layer, region, crs, clip_to_region=True)
        assert feats is not None  # the caller checked the catalog has the layer
        keep = [i for i in range(len(feats)) if select is None or select(feats, i)]
        if not keep:
            return Exclusion(Polygon(), method=EXACT, layer=layer)
        geoms = feats.geoms[keep]
        geoms = shapely.segmentize(geoms, _seg(feats.crs))
        local = reproject_many(geoms, feats.crs, crs)
        if buffer_m > 0:
            # part by part: GEOS buffers a multi-part geometry as one (a river clipped into dozens of
            # overlapping pieces costs several times more than its pieces buffered one by one)
            parts = shapely.get_parts(local)
            points = shapely.get_type_id(parts) == 0
            local = np.concatenate(
                [
                    shapely.buffer(parts[points], buffer_m, quad_segs=QUAD_SEGS_POINT),
                    shapely.buffer(parts[~points], buffer_m, quad_segs=QUAD_SEGS),
                ]
            )
        else:  # without a buffer, only areas exclude area
            local = np.array([g for g in local if g.geom_type in ("Polygon", "MultiPolygon")], dtype=object)
        union = _union(list(local))
        geom = union.intersection(aoi_geom) if union is not None else Polygon()
        return Exclusion(_polygonal(geom), raw=union, method=EXACT, layer=layer)

    return fn


def _protected(aoi_geom: BaseGeometry, crs: CRS, catalog: Catalog, rule: Rule) -> Exclusion:
    wanted = {t.strip().upper() for t in rule.types or []}

    def select(feats: Any, i: int) -> bool:
        if rule.scope == "natura2000":
            return is_natura2000(feats.types[i], feats.sources[i].natura2000)
        if rule.scope == "types":
            return (feats.types[i] or "").strip().upper() in wanted
        return True

    return _vector_rule("protected_areas", select)(aoi_geom, crs, catalog, rule)


def _land_cover(aoi_geom: BaseGeometry, crs: CRS, catalog: Catalog, rule: Rule) -> Exclusion:
    source = catalog.land_cover()
    excluded_codes = set(rule.exclude or [])
    included_codes = set(rule.include) if rule.include is not None else None

    def excluded(code: int | None) -> bool | None:
        """True/False for a known class; None for no data or an unclassified code (unassessed)."""
        if code is None or corine.lookup(code) is None:
            return None
        return code not in included_codes if included_codes is not None else code in excluded_codes

    if source.format == "raster":

        def masks(data: np.ma.MaskedArray, _t: Any, _d: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
            values = np.unique(data.compressed())
            verdict = {int(v): excluded(_raster_code(int(v), source)) for v in values.tolist()}
            filled = data.filled(0)
            out = np.isin(filled, [v for v, x in verdict.items() if x]) & ~np.ma.getmaskarray(data)
            unknown = np.ma.getmaskarray(data) | np.isin(filled, [v for v, x in verdict.items() if x is None])
            return out, unknown

        return _raster_rule(aoi_geom, crs, source, masks, margin=0)
    region = aoi_geom
    feats = read_features(catalog, "land_cover", region, crs, clip_to_region=True)
    assert feats is not None
    verdicts = [excluded(c) for c in feats.codes]
    geoms = reproject_many(shapely.segmentize(feats.geoms, _seg(feats.crs)), feats.crs, crs)
    out = _union([g for g, v in zip(geoms, verdicts) if v])
    known = _union([g for g, v in zip(geoms, verdicts) if v is not None])
    geom = out.intersection(aoi_geom) if out is not None else Polygon()
    unassessed = aoi_geom.difference(known) if known is not None else aoi_geom
    return Exclusion(_polygonal(geom), raw=out, unassessed=_polygonal(unassessed), method=EXACT, layer="land_cover")


def _raster_code(value: int, source: LayerSource) -> int | None:
    if source.code_scheme == "grid_code":
        return None if value == corine.GRID_CODE_NODATA else corine.from_grid_code(value)
    return value


def _slope(aoi_geom: BaseGeometry, crs: CRS, catalog: Catalog, rule: Rule) -> Exclusion:
    source = catalog.single("elevation")
    assert source is not None

    def masks(data: np.ma.MaskedArray, _t: Any, cell_m: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        z = np.ma.filled(data.astype("float64"), np.nan)
        if z.shape[0] < 2 or z.shape[1] < 2:
            slope = np.full_like(z, np.nan)
        else:
            gy, gx = np.gradient(z, cell_m[1], cell_m[0])
            slope = np.degrees(np.arctan(np.hypot(gx, gy)))
        unknown = np.isnan(slope)
        return np.where(unknown, False, slope > rule.max_deg), unknown

    return _raster_rule(aoi_geom, crs, source, masks, margin=1)


def _elevation(aoi_geom: BaseGeometry, crs: CRS, catalog: Catalog, rule: Rule) -> Exclusion:
    source = catalog.single("elevation")
    assert source is not None

    def masks(data: np.ma.MaskedArray, _t: Any, _d: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        z = np.ma.filled(data.astype("float64"), np.nan)
        unknown = np.isnan(z)
        out = np.zeros(z.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            if rule.min_m is not None:
                out |= z < rule.min_m
            if rule.max_m is not None:
                out |= z > rule.max_m
        return out & ~unknown, unknown

    return _raster_rule(aoi_geom, crs, source, masks, margin=0)


MaskFn = Callable[[np.ma.MaskedArray, Any, tuple[float, float]], tuple[np.ndarray, np.ndarray]]


def _raster_rule(aoi_geom: BaseGeometry, crs: CRS, source: LayerSource, masks: MaskFn, margin: int) -> Exclusion:
    """Cells `masks` excludes (and cells it cannot judge), as polygons intersected exactly with the AOI."""
    from rasterio.windows import Window, from_bounds

    rcrs = layer_crs(source)
    aoi_r = reproject(shapely.segmentize(aoi_geom, 1000.0), crs, rcrs)
    with open_raster(source) as ds:
        extent = box(*ds.bounds)
        resolution = float(abs(ds.res[0]))
        inside = aoi_r.intersection(extent)
        outside_local = aoi_geom.difference(reproject(shapely.segmentize(extent, _seg(rcrs)), rcrs, crs))
        method = (
            f"gridded: the layer's {resolution:g} {'degree' if rcrs.is_geographic else 'm'} cells, "
            "intersected exactly with the AOI"
        )
        if inside.is_empty or inside.area == 0:
            return Exclusion(
                Polygon(),
                unassessed=aoi_geom,
                method=method,
                layer=source.layer,
                reason="the AOI lies outside the layer: nothing assessed",
                resolution_m=None if rcrs.is_geographic else resolution,
            )
        win = from_bounds(*inside.bounds, transform=ds.transform)
        # every cell the AOI touches, plus `margin` cells: the first and last cells by floor and ceil of the
        # window's fractional edges (flooring the offset alone would drop the last partial column)
        col0, row0 = math.floor(win.col_off) - margin, math.floor(win.row_off) - margin
        col1 = math.ceil(win.col_off + win.width) + margin
        row1 = math.ceil(win.row_off + win.height) + margin
        col0, row0, col1, row1 = max(col0, 0), max(row0, 0), min(col1, ds.width), min(row1, ds.height)
        win = Window(col0, row0, col1 - col0, row1 - row0)
        data = ds.read(source.band, window=win, masked=True)
        t = ds.window_transform(win)
    out, unknown = masks(data, t, _cell_m(t, rcrs, data.shape))
    excluded = _cells(out, t, rcrs, crs)
    unknown_geom = _cells(unknown, t, rcrs, crs)
    geom = excluded.intersection(aoi_geom) if not excluded.is_empty else Polygon()
    unassessed = _union([unknown_geom.intersection(aoi_geom), outside_local])
    return Exclusion(
        _polygonal(geom),
        raw=excluded,
        unassessed=_polygonal(unassessed) if unassessed is not None else None,
        method=method,
        resolution_m=None if rcrs.is_geographic else resolution,
        layer=source.layer,
    )


def _cell_m(t: Any, rcrs: CRS, shape: tuple[int, ...]) -> tuple[float, float]:
    """Cell width and height in metres (geodesic at the window's centre for a geographic layer)."""
    if rcrs.is_geographic:
        lon = t.c + t.a * shape[1] / 2
        lat = t.f + t.e * shape[0] / 2
        geod = Geod(ellps="WGS84")
        return geod.inv(lon, lat, lon + t.a, lat)[2], geod.inv(lon, lat, lon, lat + t.e)[2]
    unit = rcrs.axis_info[0].unit_conversion_factor if rcrs.axis_info else 1.0
    return abs(t.a) * unit, abs(t.e) * unit


def _cells(mask: np.ndarray, t: Any, rcrs: CRS, crs: CRS) -> BaseGeometry:
    """The True cells of `mask` as one (multi)polygon in `crs`: connected cells are merged by the raster
    library before reprojection, so the cost follows the number of regions, not of cells."""
    from rasterio.features import shapes

    if not mask.any():
        return Polygon()
    polys = [shape(g) for g, _ in shapes(mask.astype("uint8"), mask=mask, transform=t)]
    geoms = np.array(polys, dtype=object)
    if rcrs.is_geographic:  # cell edges are meridians and parallels: curved in the local CRS
        geoms = shapely.segmentize(geoms, 0.001)
    local = reproject_many(geoms, rcrs, crs)
    # the regions of one mask never share an edge (they would be one region), so they already form a
    # valid MultiPolygon: no union needed, unless reprojection rounding made one invalid
    merged = shapely.multipolygons(local)  # one MultiPolygon from the 1-d array
    if isinstance(merged, MultiPolygon) and merged.is_valid:
        return merged
    return shapely.union_all(local)


def _seg(c: CRS) -> float:
    """Longest segment before a reprojection: 1 km (0.01 degree), as `projection.densify`."""
    return 0.01 if c.is_geographic else 1000.0


_RULE_FNS: dict[str, Callable[..., Exclusion]] = {
    "land_cover": _land_cover,
    "protected_areas": _protected,
    "settlements": _vector_rule("settlements"),
    "water": _vector_rule("water"),
    "slope": _slope,
    "elevation": _elevation,
}


# --- helpers ---------------------------------------------------------------------------------------


def _union(geoms: Sequence[BaseGeometry | None]) -> BaseGeometry | None:
    real = [g for g in geoms if g is not None and not g.is_empty]
    if not real:
        return None
    return shapely.union_all(np.array(real, dtype=object))


def _boxes_meet(a: BaseGeometry, b: BaseGeometry) -> bool:
    if a.is_empty or b.is_empty:
        return False
    ax0, ay0, ax1, ay1 = a.bounds
    bx0, by0, bx1, by1 = b.bounds
    return ax0 <= bx1 and bx0 <= ax1 and ay0 <= by1 and by0 <= ay1


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Only the areal parts (an intersection can leave lines and points where shapes touch)."""
    if geom.is_empty or geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys = [p for p in shapely.get_parts(geom) if isinstance(p, (Polygon, MultiPolygon))]
    return shapely.union_all(np.array(polys, dtype=object)) if polys else Polygon()


def _ha(m2: float) -> float:
    return round(m2 / 1e4, 4)


def _share(part: float, whole: float) -> float:
    return round(min(1.0, part / whole), 6) if whole > 0 else 0.0


def _patch_stats(sizes_ha: list[float]) -> EligiblePatches:
    classes = []
    uppers: list[float | None] = [*PATCH_CLASSES_HA[1:], None]  # the last class has no upper bound
    for low, high in zip(PATCH_CLASSES_HA, uppers):
        inside = [s for s in sizes_ha if s >= low and (high is None or s < high)]
        classes.append(EligiblePatchClass(min_ha=low, max_ha=high, count=len(inside), area_ha=round(sum(inside), 4)))
    if not sizes_ha:
        return EligiblePatches(count=0, min_ha=None, median_ha=None, mean_ha=None, max_ha=None, size_classes=classes)
    return EligiblePatches(
        count=len(sizes_ha),
        min_ha=round(min(sizes_ha), 4),
        median_ha=round(statistics.median(sizes_ha), 4),
        mean_ha=round(statistics.fmean(sizes_ha), 4),
        max_ha=round(max(sizes_ha), 4),
        size_classes=classes,
    )
