"""How a run fills the screening metrics: results -> the named figures the rule packs and indices read.

The names themselves are declared once, in `aethera.legal.metrics.METRICS` (the packs' vocabulary);
`screening_metrics()` must produce exactly those keys (a test checks it). A value the run could not
compute is None, and the rules that need it become `not_evaluable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aethera.legal.metrics import INDICES, METRICS, PARAMETERS, STAND_IN, Provenance

if TYPE_CHECKING:  # only for types: importing this module must not pull the GIS libraries in
    from aethera.analysis.indices import IndexFeatures
    from aethera.analysis.results import LandCoverClass, Results


class _Params(Protocol):
    # read-only members: RunParams is a frozen Struct with narrower types (a Literal project type)
    @property
    def project_type(self) -> str: ...
    @property
    def capacity_mw(self) -> float | None: ...
    @property
    def buffer_km(self) -> float | None: ...


# CORINE level-2 / level-1 code prefixes of the land-cover figures the ratios do not carry
_FOREST_PREFIX = 31
_WETLAND_PREFIX = 4


def _class_sum(classes: Sequence[LandCoverClass], prefix: int, attr: str) -> float:
    digits = len(str(prefix))
    return float(
        sum(getattr(c, attr) for c in classes if c.code is not None and c.code // 10 ** (3 - digits) == prefix)
    )


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
        {
            "site_code": s.site_code,
            "name": s.name,
            "distance_km": s.distance_km,
            "site_type": s.type,
            "overlap_ha": overlaps.get(s.site_code, s.overlap_ha),
        }
        for s in bio.sites_in_buffer
        if s.natura2000
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
        "natura2000_sites_in_buffer_not_overlapped": (
            sum(1 for s in bio.sites_not_overlapped if s.natura2000 and s.distance_km <= bio.buffer_km)
            if bio.available
            else None
        ),
        "distance_to_natura2000_not_overlapped_km": min(
            (s.distance_km for s in bio.sites_not_overlapped if s.natura2000 and s.distance_km <= bio.buffer_km),
            default=None,
        ),
        "protected_areas_within_1km_not_overlapped": (
            sum(1 for s in bio.sites_not_overlapped if s.distance_km <= 1.0) if bio.available else None
        ),
        "distance_to_protected_not_overlapped_km": min((s.distance_km for s in bio.sites_not_overlapped), default=None),
        "distance_to_settlement_km": dist(rec.nearest_settlement),
        "settlements_within_1km": _count_within(results, 1.0, "settlements"),
        "distance_to_water_km": dist(rec.nearest_water_body),
        "water_ratio": lc.ratios.get("water"),
        "wetland_ratio": lc.ratios.get("wetland"),
        "agricultural_ratio": lc.ratios.get("agricultural"),
        "forest_ratio": lc.ratios.get("forest"),
        "forest_area_ha": _class_sum(classes, _FOREST_PREFIX, "area_ha") if lc.ratios else None,
        "wetland_area_ha": _class_sum(classes, _WETLAND_PREFIX, "area_ha") if lc.ratios else None,
        "shrub_ratio": lc.ratios.get("shrub"),
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
        for name in (
            "protected_overlap_ha",
            "protected_overlap_pct",
            "protected_areas_in_buffer",
            "natura2000_overlap_ha",
            "natura2000_sites_in_buffer",
        ):
            reasons[name] = bio.reason
    for metric, key in (
        ("distance_to_protected_km", "protected_area"),
        ("distance_to_settlement_km", "settlement"),
        ("settlements_within_1km", "settlement"),
        ("distance_to_water_km", "water_body"),
    ):
        if key in rec.reasons:
            reasons[metric] = rec.reasons[key]
    if results.terrain.mean_slope_deg is None and results.terrain.reason:
        reasons["mean_slope_deg"] = results.terrain.reason
    if not bio.available and bio.reason:
        for name in ("natura2000_sites_in_buffer_not_overlapped", "protected_areas_within_1km_not_overlapped"):
            reasons[name] = bio.reason
    if results.land_cover.ratios_reason:
        for name in _LAND_COVER_RATIOS + _LAND_COVER_AREAS:
            reasons[name] = results.land_cover.ratios_reason
    reasons.setdefault("distance_to_natura2000_km", "no Natura 2000 site in the zone of influence")
    reasons.setdefault(
        "distance_to_natura2000_not_overlapped_km",
        "no Natura 2000 site the AOI does not overlap in the zone of influence",
    )
    reasons.setdefault(
        "distance_to_protected_not_overlapped_km",
        "no protected area the AOI does not overlap within the proximity search radius",
    )
    return reasons


_LAND_COVER_RATIOS = (
    "water_ratio",
    "wetland_ratio",
    "agricultural_ratio",
    "forest_ratio",
    "shrub_ratio",
    "artificial_ratio",
    "natural_habitat_ratio",
)
_LAND_COVER_AREAS = ("forest_area_ha", "wetland_area_ha")
_INDEX_SCORES = ("biodiversity_sensitivity_score", "resm_score", "ahsm_score", "cim_score")
_PROTECTED = (
    "protected_overlap_ha",
    "protected_overlap_pct",
    "distance_to_protected_km",
    "protected_areas_in_buffer",
    "natura2000_overlap_ha",
    "distance_to_natura2000_km",
    "natura2000_sites_in_buffer",
    "natura2000_sites_in_buffer_not_overlapped",
    "distance_to_natura2000_not_overlapped_km",
    "protected_areas_within_1km_not_overlapped",
    "distance_to_protected_not_overlapped_km",
)
# What a CORINE stand-in cannot show: its 25 ha minimum mapping unit and class scheme miss these.
_STAND_IN_BLIND = {
    "water_body": "CORINE water and wetland polygons (25 ha minimum mapping unit) stand in for the missing water "
    "layer and cannot show streams, ditches or small ponds: a distance to them is only an upper "
    "bound, and finding none near is not evidence that there is none",
    "settlement": "CORINE urban-fabric polygons (25 ha minimum mapping unit) stand in for the missing settlements "
    "layer and cannot show hamlets or isolated dwellings: a distance to them is only an upper bound, "
    "and finding none near is not evidence that there is none",
}


def metric_provenance(results: Results) -> dict[str, Provenance]:
    """Each metric's source, the share of the AOI that source covered, and the bounds of its true value.

    Land-cover figures rest on `land_cover.coverage_ratio`: a ratio r over the covered share c means the
    whole AOI's share lies in [r c, r c + (1 - c)]; a class area a means [a, a + uncovered ha]. The
    indices rest on the land-cover ratios too (bounds from `index_score_bounds`). A CORINE stand-in for
    water or settlements does not resolve them: a distance to it is an upper bound only, a count of its
    patches shows at least one settlement.
    """
    m = screening_metrics(results)
    lc = results.land_cover
    c = lc.coverage_ratio
    uncovered_ha = max(0.0, results.aoi.aoi_area_ha - (lc.covered_ha or 0.0))
    layer = "land_cover"
    out: dict[str, Provenance] = {
        name: Provenance(source=PARAMETERS)
        for name in ("project_type", "capacity_mw", "buffer_km", "aoi_area_ha", "aoi_area_national_ha")
    }
    for name in _LAND_COVER_RATIOS:
        r = m[name]
        out[name] = Provenance(
            source=layer,
            coverage_ratio=c,
            lower=None if r is None else r * c,
            upper=None if r is None else r * c + (1 - c),
        )
    for name in _LAND_COVER_AREAS:
        a = m[name]
        out[name] = Provenance(source=layer, coverage_ratio=c, lower=a, upper=None if a is None else a + uncovered_ha)
    luc = m["land_use_change_tco2e"]
    luc_lower = None if luc is None else luc * results.emissions.land_use_change_coverage_ratio
    out["land_use_change_tco2e"] = Provenance(
        source=layer,
        coverage_ratio=results.emissions.land_use_change_coverage_ratio,
        lower=luc_lower,
        note="extrapolated to the whole footprint from the covered land",
    )
    feature_bounds: dict[str, tuple[float | None, float | None]] = {
        name: (out[name].lower, out[name].upper) for name in _LAND_COVER_RATIOS
    }
    aoi_ha = results.aoi.aoi_area_ha
    if luc_lower is not None and aoi_ha:
        feature_bounds["land_use_change_tco2e_per_ha"] = (luc_lower / aoi_ha, None)
    rec = results.receptor_distances
    for feature, receptor in (
        ("distance_to_water_km", rec.nearest_water_body),
        ("distance_to_settlement_km", rec.nearest_settlement),
    ):
        if receptor is not None and receptor.source != "layer":
            feature_bounds[feature] = (0.0, receptor.distance_km)
    scores = {
        "biodiversity_sensitivity_score": _score(results.biodiversity.sensitivity),
        "resm_score": _score(results.resm),
        "ahsm_score": _score(results.ahsm),
        "cim_score": _score(results.cim),
    }
    score_bounds = index_score_bounds(index_features(results), feature_bounds, scores)
    for name in _INDEX_SCORES:
        lower, upper = score_bounds.get(name, (None, None))
        out[name] = Provenance(
            source=INDICES,
            coverage_ratio=c,
            lower=lower,
            upper=upper,
            note="the index rests on the land-cover ratios; bounds: its score with each of "
            "those at the end of its possible range",
        )
    for name in _PROTECTED:
        out[name] = Provenance(source="protected_areas")
    # terrain reports no coverage yet; a `coverage_ratio` there is picked up when it does
    out["mean_slope_deg"] = Provenance(
        source="elevation", coverage_ratio=getattr(results.terrain, "coverage_ratio", None)
    )
    for metric, receptor, kind in (
        ("distance_to_water_km", rec.nearest_water_body, "water_body"),
        ("distance_to_settlement_km", rec.nearest_settlement, "settlement"),
    ):
        if rec.sources.get(kind) == "land_cover_fallback" or (receptor is not None and receptor.source != "layer"):
            out[metric] = Provenance(
                source=STAND_IN,
                resolves=False,
                lower=0.0,
                upper=None if receptor is None else receptor.distance_km,
                note=_STAND_IN_BLIND[kind],
            )
        else:
            out[metric] = Provenance(source="water" if kind == "water_body" else "settlements")
    count = m["settlements_within_1km"]
    if rec.sources.get("settlement") == "land_cover_fallback" or (
        rec.nearest_settlement is not None and rec.nearest_settlement.source != "layer"
    ):
        # Patches of urban fabric, not settlements: one patch shows at least one settlement is there.
        out["settlements_within_1km"] = Provenance(
            source=STAND_IN,
            resolves=False,
            lower=None if count is None else float(min(count, 1)),
            upper=None,
            note=_STAND_IN_BLIND["settlement"],
        )
    else:
        out["settlements_within_1km"] = Provenance(source="settlements")
    assert out.keys() == METRICS.keys(), "metric_provenance and METRICS disagree"
    return out


def index_features(results: Results) -> IndexFeatures:
    """The named inputs of the indices, from a run's results (None where a value is missing)."""
    from aethera.analysis.indices import IndexFeatures

    m = screening_metrics(results)
    rec = results.receptor_distances
    fallback = tuple(
        name
        for name, receptor in (
            ("distance_to_settlement_km", rec.nearest_settlement),
            ("distance_to_water_km", rec.nearest_water_body),
            ("distance_to_protected_km", rec.nearest_protected_area),
        )
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
        feature_coverage={
            name: results.land_cover.coverage_ratio for name in (*_LAND_COVER_RATIOS, "land_use_change_tco2e_per_ha")
        },
        missing_reasons={k: v for k, v in metric_reasons(results).items() if m.get(k) is None},
        not_found_within_km={
            feature: rec.not_found_within_km[kind]
            for feature, kind in (
                ("distance_to_protected_km", "protected_area"),
                ("distance_to_settlement_km", "settlement"),
                ("distance_to_water_km", "water_body"),
            )
            if kind in rec.not_found_within_km and m[feature] is None
        },
    )


def index_score_bounds(
    features: IndexFeatures,
    bounds: dict[str, tuple[float | None, float | None]],
    scores: dict[str, float | None],
) -> dict[str, tuple[float | None, float | None]]:
    """Lowest and highest score each index could take with its features anywhere within `bounds`.

    Each model is a weighted sum of clamped ramps, one per feature, so its extremes lie at the ends of
    the features' ranges, picked per feature by the ramp's direction (an open end is infinite: the ramp
    clamps it). The cumulative model takes the other indices' ranges as the ranges of its score
    features; treating them as independent of its own features makes its range wider, never narrower.
    """
    import math

    from aethera.analysis import indices

    weights = indices.load_weights()
    base: dict[str, object] = {name: getattr(features, name) for name in features.__struct_fields__}
    base.update(
        {
            "biodiversity_sensitivity_score": scores.get("biodiversity_sensitivity_score"),
            "resm_score": scores.get("resm_score"),
            "ahsm_score": scores.get("ahsm_score"),
        }
    )

    def ends(key: str, ranges: dict[str, tuple[float | None, float | None]]) -> tuple[float | None, float | None]:
        low, high = dict(base), dict(base)
        for f in weights.models[key].features:
            if f.feature not in ranges or base.get(f.feature) is None:
                continue
            lo, hi = ranges[f.feature]
            lo = -math.inf if lo is None else lo
            hi = math.inf if hi is None else hi
            low[f.feature], high[f.feature] = (lo, hi) if f.direction == "increasing" else (hi, lo)
        return (
            indices.evaluate_model(key, low, weights=weights).score,
            indices.evaluate_model(key, high, weights=weights).score,
        )

    out: dict[str, tuple[float | None, float | None]] = {}
    if scores.get("biodiversity_sensitivity_score") is not None:
        out["biodiversity_sensitivity_score"] = ends("biodiversity_sensitivity", bounds)
    resm_key = f"resm_{features.project_type}"
    if scores.get("resm_score") is not None and resm_key in weights.models:
        out["resm_score"] = ends(resm_key, bounds)
    if scores.get("ahsm_score") is not None:
        out["ahsm_score"] = ends("ahsm", bounds)
    if scores.get("cim_score") is not None:
        out["cim_score"] = _cim_ends(features, bounds)
    return out


def _cim_ends(
    features: IndexFeatures, bounds: dict[str, tuple[float | None, float | None]]
) -> tuple[float | None, float | None]:
    """CIM's lowest and highest score with its features within `bounds`, computed whole (`compute_all`).

    CIM reads the other indices' scores with the inputs it weighs directly taken out of them, so it is no
    single weighted sum; it is still monotone in each feature, so its extremes lie at the corner where
    every feature sits at the end that lowers (raises) it, the direction measured feature by feature."""
    import msgspec

    from aethera.analysis import indices

    big = 1e6  # an open end: every ramp has clamped long before
    names = [n for n in bounds if getattr(features, n, None) is not None]

    def cim(values: dict[str, float]) -> float | None:
        result = indices.compute_all(msgspec.structs.replace(features, **values)).cim
        return None if result is None else result.score

    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for name in names:
        lo, hi = bounds[name]
        lo_v = -big if lo is None else lo
        hi_v = big if hi is None else hi
        a, b = cim({name: lo_v}), cim({name: hi_v})
        if a is None or b is None:
            return None, None
        low[name], high[name] = (lo_v, hi_v) if b >= a else (hi_v, lo_v)
    return cim(low), cim(high)
