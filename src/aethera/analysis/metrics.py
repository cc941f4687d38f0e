"""The screening metrics: the one list of names the legal rule packs may use, and how a run fills it.

`METRICS` is the single declaration of every metric name (type, unit, description). The rule-pack
loader refuses a pack that names anything else, and `screening_metrics()` must produce exactly these
keys (a test checks both), so a pack can never reference a value the pipeline does not compute. A value
the run could not compute is None, and the rules that need it become `not_evaluable`.

This module stays import-light (no GIS libraries at import time) because the legal package reads
`METRICS` when it loads its packs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:  # only for types: importing results must not pull GIS libraries in with METRICS
    from aethera.analysis.indices import IndexFeatures
    from aethera.analysis.results import LandCoverClass, Results


class MetricSpec(NamedTuple):
    type: type  # float (int accepted), int or str
    unit: str  # "" for counts, categories and dimensionless ratios
    description: str


METRICS: dict[str, MetricSpec] = {
    "project_type": MetricSpec(str, "", "technology of the project: solar or wind"),
    "capacity_mw": MetricSpec(float, "MW", "installed capacity (given, or from the configured density)"),
    "buffer_km": MetricSpec(float, "km", "radius of the zone of influence around the AOI"),
    "aoi_area_ha": MetricSpec(float, "ha", "AOI area in an equal-area CRS"),
    "protected_overlap_ha": MetricSpec(float, "ha", "area of the AOI inside any protected area (dissolved)"),
    "protected_overlap_pct": MetricSpec(float, "%", "share of the AOI inside any protected area, 0-100"),
    "distance_to_protected_km": MetricSpec(float, "km", "AOI boundary to the nearest protected area (0 inside)"),
    "protected_areas_in_buffer": MetricSpec(int, "", "protected areas within the zone of influence"),
    "natura2000_overlap_ha": MetricSpec(float, "ha", "area of the AOI inside Natura 2000 sites (dissolved)"),
    "distance_to_natura2000_km": MetricSpec(float, "km", "AOI boundary to the nearest Natura 2000 site in the zone of influence (0 inside; null when none is in the zone)"),
    "natura2000_sites_in_buffer": MetricSpec(int, "", "Natura 2000 sites within the zone of influence"),
    "distance_to_settlement_km": MetricSpec(float, "km", "AOI boundary to the nearest settlement"),
    "settlements_within_1km": MetricSpec(int, "", "settlements within 1 km of the AOI"),
    "distance_to_water_km": MetricSpec(float, "km", "AOI boundary to the nearest river, lake or water body"),
    "water_ratio": MetricSpec(float, "", "share of the AOI in CORINE water bodies (5xx), 0-1"),
    "wetland_ratio": MetricSpec(float, "", "share of the AOI in CORINE wetlands (4xx), 0-1"),
    "agricultural_ratio": MetricSpec(float, "", "share of the AOI in CORINE agricultural areas (2xx), 0-1"),
    "forest_ratio": MetricSpec(float, "", "share of the AOI in CORINE forests (31x), 0-1"),
    "forest_area_ha": MetricSpec(float, "ha", "area of CORINE forest (31x) inside the AOI"),
    "wetland_area_ha": MetricSpec(float, "ha", "area of CORINE wetlands (4xx) inside the AOI"),
    "shrub_ratio": MetricSpec(float, "", "share of the AOI in CORINE shrub and herbaceous vegetation (32x), 0-1"),
    "artificial_ratio": MetricSpec(float, "", "share of the AOI in CORINE artificial surfaces (1xx), 0-1"),
    "natural_habitat_ratio": MetricSpec(float, "", "share of the AOI in CORINE forest, semi-natural, wetland and water classes (3xx-5xx), 0-1"),
    "mean_slope_deg": MetricSpec(float, "deg", "mean terrain slope over the AOI; needs an elevation layer"),
    "land_use_change_tco2e": MetricSpec(float, "tCO2e", "carbon released by converting the project footprint"),
    "biodiversity_sensitivity_score": MetricSpec(float, "", "biodiversity sensitivity index, 0-100"),
    "resm_score": MetricSpec(float, "", "renewable-energy site suitability index, 0-100"),
    "ahsm_score": MetricSpec(float, "", "asset hazard susceptibility index, 0-100"),
    "cim_score": MetricSpec(float, "", "cumulative impact index, 0-100"),
}


class _Params(Protocol):
    project_type: str
    capacity_mw: float | None
    buffer_km: float | None


# CORINE level-2 / level-1 code prefixes of the land-cover figures the ratios do not carry
_SHRUB_PREFIX = 32  # 321 natural grassland, 322 moors and heathland, 323 sclerophyllous, 324 woodland-shrub
_FOREST_PREFIX = 31
_WETLAND_PREFIX = 4


def _class_sum(classes: Sequence[LandCoverClass], prefix: int, attr: str) -> float:
    digits = len(str(prefix))
    return sum(getattr(c, attr) for c in classes if c.code is not None and c.code // 10 ** (3 - digits) == prefix)


def _score(index: Any) -> float | None:
    if index is None:
        return None
    score = index.get("score") if isinstance(index, dict) else getattr(index, "score", None)
    return float(score) if score is not None else None


def _count_within(results: Results, km: float, attr: str) -> int | None:
    for c in results.receptor_distances.counts:
        if abs(c.within_km - km) < 1e-9:
            value: int | None = getattr(c, attr)
            return value
    return None


def natura_sites(results: Results) -> list[dict[str, Any]] | None:
    """The Natura 2000 sites in the zone of influence (nearest first), or None when not determined."""
    bio = results.biodiversity
    if not bio.available:
        return None
    overlaps = {s.site_code: s.overlap_ha for s in bio.sites_overlapping if s.natura2000}
    return [
        {"site_code": s.site_code, "name": s.name, "distance_km": s.distance_km, "site_type": s.type,
         "overlap_ha": overlaps.get(s.site_code, s.overlap_ha)}
        for s in bio.sites_in_buffer if s.natura2000
    ]


def screening_metrics(results: Results, params: _Params | None = None) -> dict[str, Any]:
    """Every metric of `METRICS` for one run, by name; None where the run could not compute it.

    Run parameters come from `results.parameters` (capacity already resolved from the density);
    `params` only fills what the results lack.
    """
    run = results.parameters
    lc = results.land_cover
    bio = results.biodiversity
    rec = results.receptor_distances
    classes = lc.aoi.classes
    aoi_ha = results.aoi.aoi_area_ha
    sites = natura_sites(results)

    def dist(receptor: Any) -> float | None:
        return None if receptor is None else float(receptor.distance_km)

    values: dict[str, Any] = {
        "project_type": run.project_type or (params.project_type if params else None),
        "capacity_mw": run.capacity_mw if run.capacity_mw is not None else (params.capacity_mw if params else None),
        "buffer_km": run.buffer_km,
        "aoi_area_ha": aoi_ha,
        "protected_overlap_ha": bio.protected_overlap_ha,
        "protected_overlap_pct": bio.protected_overlap_pct,
        "distance_to_protected_km": dist(rec.nearest_protected_area),
        "protected_areas_in_buffer": len(bio.sites_in_buffer) if bio.available else None,
        "natura2000_overlap_ha": bio.natura2000_overlap_ha,
        "distance_to_natura2000_km": min((s["distance_km"] for s in sites), default=None) if sites else None,
        "natura2000_sites_in_buffer": bio.natura2000_sites_in_buffer,
        "distance_to_settlement_km": dist(rec.nearest_settlement),
        "settlements_within_1km": _count_within(results, 1.0, "settlements"),
        "distance_to_water_km": dist(rec.nearest_water_body),
        "water_ratio": lc.ratios.get("water"),
        "wetland_ratio": lc.ratios.get("wetland"),
        "agricultural_ratio": lc.ratios.get("agricultural"),
        "forest_ratio": lc.ratios.get("forest"),
        "forest_area_ha": _class_sum(classes, _FOREST_PREFIX, "area_ha"),
        "wetland_area_ha": _class_sum(classes, _WETLAND_PREFIX, "area_ha"),
        "shrub_ratio": _class_sum(classes, _SHRUB_PREFIX, "share"),
        "artificial_ratio": lc.ratios.get("artificial"),
        "natural_habitat_ratio": lc.ratios.get("natural_habitat"),
        "mean_slope_deg": results.terrain.mean_slope_deg,
        "land_use_change_tco2e": results.emissions.land_use_change_tco2e,
        "biodiversity_sensitivity_score": _score(bio.sensitivity),
        "resm_score": _score(results.resm),
        "ahsm_score": _score(results.ahsm),
        "cim_score": _score(results.cim),
    }
    assert values.keys() == METRICS.keys(), "screening_metrics and METRICS disagree"  # a test checks it too
    return values


def metric_reasons(results: Results) -> dict[str, str]:
    """Why a metric is None, in words the legal result can quote (e.g. "no elevation layer")."""
    reasons: dict[str, str] = {}
    bio = results.biodiversity
    rec = results.receptor_distances
    if not bio.available and bio.reason:
        for name in ("protected_overlap_ha", "protected_overlap_pct", "protected_areas_in_buffer",
                     "natura2000_overlap_ha", "natura2000_sites_in_buffer"):
            reasons[name] = bio.reason
    for metric, key in (("distance_to_protected_km", "protected_area"), ("distance_to_settlement_km", "settlement"),
                        ("settlements_within_1km", "settlement"), ("distance_to_water_km", "water_body")):
        if key in rec.reasons:
            reasons[metric] = rec.reasons[key]
    if results.terrain.mean_slope_deg is None and results.terrain.reason:
        reasons["mean_slope_deg"] = results.terrain.reason
    reasons.setdefault("distance_to_natura2000_km", "no Natura 2000 site in the zone of influence")
    return reasons


def index_features(results: Results) -> IndexFeatures:
    """The named inputs of the indices, from a run's results (None where a value is missing)."""
    from aethera.analysis.indices import IndexFeatures

    m = screening_metrics(results)
    rec = results.receptor_distances
    fallback = tuple(
        name for name, receptor in (("distance_to_settlement_km", rec.nearest_settlement),
                                    ("distance_to_water_km", rec.nearest_water_body),
                                    ("distance_to_protected_km", rec.nearest_protected_area))
        if receptor is not None and receptor.source != "layer"
    )
    luc = m["land_use_change_tco2e"]
    aoi_ha = m["aoi_area_ha"]
    return IndexFeatures(
        project_type=m["project_type"],
        protected_overlap_pct=m["protected_overlap_pct"],
        distance_to_protected_km=m["distance_to_protected_km"],
        natura2000_sites_in_buffer=m["natura2000_sites_in_buffer"],
        distance_to_settlement_km=m["distance_to_settlement_km"],
        distance_to_water_km=m["distance_to_water_km"],
        water_ratio=m["water_ratio"],
        wetland_ratio=m["wetland_ratio"],
        forest_ratio=m["forest_ratio"],
        shrub_ratio=m["shrub_ratio"],
        agricultural_ratio=m["agricultural_ratio"],
        artificial_ratio=m["artificial_ratio"],
        natural_habitat_ratio=m["natural_habitat_ratio"],
        mean_slope_deg=m["mean_slope_deg"],
        land_use_change_tco2e_per_ha=(luc / aoi_ha) if luc is not None and aoi_ha else None,
        fallback_features=fallback,
        missing_reasons={k: v for k, v in metric_reasons(results).items() if m.get(k) is None},
    )
