"""How a run fills the screening metrics: results -> the named figures the rule packs and indices read.

The names themselves are declared once, in `aethera.legal.metrics.METRICS` (the packs' vocabulary);
`screening_metrics()` must produce exactly those keys (a test checks it). A value the run could not
compute is None, and the rules that need it become `not_evaluable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aethera.legal.metrics import METRICS

if TYPE_CHECKING:  # only for types: importing this module must not pull the GIS libraries in
    from aethera.analysis.indices import IndexFeatures
    from aethera.analysis.results import LandCoverClass, Results


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
        "aoi_area_national_ha": results.aoi.aoi_area_national_ha,
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
    if results.aoi.aoi_area_national_ha is None and results.aoi.national_area_reason:
        reasons["aoi_area_national_ha"] = results.aoi.national_area_reason
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
        not_found_within_km={
            feature: rec.not_found_within_km[kind]
            for feature, kind in (("distance_to_protected_km", "protected_area"),
                                  ("distance_to_settlement_km", "settlement"),
                                  ("distance_to_water_km", "water_body"))
            if kind in rec.not_found_within_km and m[feature] is None
        },
    )
