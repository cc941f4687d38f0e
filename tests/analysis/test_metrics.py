"""screening_metrics / index_features: results -> the named figures the rule packs and indices read."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from aethera.analysis import indices
from aethera.analysis.metrics import index_features, metric_provenance, metric_reasons, natura_sites, screening_metrics
from aethera.analysis.results import Results
from aethera.legal.metrics import METRICS


def _receptor(kind: str, rid: str, km: float, source: str = "layer") -> dict[str, Any]:
    return {
        "receptor_type": kind,
        "receptor_id": rid,
        "receptor_name": rid.title(),
        "distance_km": km,
        "source": source,
    }


def _zone(zone: str, area: float, classes: list[tuple[int, float]]) -> dict[str, Any]:
    return {
        "zone": zone,
        "area_ha": area,
        "classified_ha": area,
        "nodata_ha": 0.0,
        "outside_layer_ha": 0.0,
        "classes": [
            {"code": c, "label": str(c), "group": "g", "group_label": "g", "area_ha": a, "share": a / area}
            for c, a in classes
        ],
        "groups": [],
    }


def make_results(**changes: Any) -> Results:
    """A 100 ha wind AOI: 40 ha arable, 30 ha forest, 20 ha scrub, 6 ha marsh, 4 ha lake; one SAC overlapped."""
    raw: dict[str, Any] = {
        "aoi": {
            "aoi_area_ha": 100.0,
            "perimeter_km": 4.0,
            "centroid_lon": 14.3,
            "centroid_lat": 51.6,
            "bbox": [14.29, 51.59, 14.31, 51.61],
            "part_count": 1,
            "hole_count": 0,
            "vertex_count": 5,
            "repairs": [],
            "source_format": "geojson",
            "source_crs": "EPSG:4326",
            "area_crs": "EPSG:3035",
            "metric_crs": "+proj=aeqd",
        },
        "parameters": {
            "project_type": "wind",
            "country": "DEU",
            "capacity_mw": 3.0,
            "capacity_source": "density",
            "buffer_km": 5.0,
            "lifetime_years": 25.0,
        },
        "land_cover": {
            "source": "raster",
            "layer": "clc.tif",
            "method": "exact",
            "resolution_m": 100.0,
            "buffer_km": 5.0,
            "aoi": _zone("aoi", 100.0, [(211, 40.0), (312, 30.0), (324, 15.0), (321, 5.0), (411, 6.0), (512, 4.0)]),
            "buffer": None,
            "ratios": {
                "artificial": 0.0,
                "agricultural": 0.4,
                "forest": 0.3,
                "shrub": 0.2,
                "semi_natural": 0.2,
                "wetland": 0.06,
                "water": 0.04,
                "natural_habitat": 0.6,
            },
        },
        "biodiversity": {
            "available": True,
            "reason": None,
            "buffer_km": 5.0,
            "protected_overlap_ha": 12.5,
            "protected_overlap_pct": 12.5,
            "natura2000_overlap_ha": 12.5,
            "natura2000_overlap_pct": 12.5,
            "sites_overlapping": [
                {
                    "site_code": "DE4450301",
                    "name": "Heide",
                    "type": "SAC",
                    "natura2000": True,
                    "overlap_ha": 12.5,
                    "overlap_pct": 12.5,
                }
            ],
            "sites_in_buffer": [
                {
                    "site_code": "DE4450301",
                    "name": "Heide",
                    "type": "SAC",
                    "natura2000": True,
                    "distance_km": 0.0,
                    "overlap_ha": 12.5,
                },
                {
                    "site_code": "NSG-7",
                    "name": "Moor",
                    "type": "NSG",
                    "natura2000": False,
                    "distance_km": 1.2,
                    "overlap_ha": 0.0,
                },
                {
                    "site_code": "DE4451401",
                    "name": "Teiche",
                    "type": "SPA",
                    "natura2000": True,
                    "distance_km": 3.4,
                    "overlap_ha": 0.0,
                },
            ],
            "natura2000_sites_in_buffer": 2,
            "sites_not_overlapped": [
                {
                    "site_code": "NSG-7",
                    "name": "Moor",
                    "type": "NSG",
                    "natura2000": False,
                    "distance_km": 1.2,
                    "overlap_ha": 0.0,
                },
                {
                    "site_code": "DE4451401",
                    "name": "Teiche",
                    "type": "SPA",
                    "natura2000": True,
                    "distance_km": 3.4,
                    "overlap_ha": 0.0,
                },
                {
                    "site_code": "DE4452401",
                    "name": "Wald",
                    "type": "SAC",
                    "natura2000": True,
                    "distance_km": 5.6,
                    "overlap_ha": 0.0,
                },
            ],
            "proximity_search_km": 5.0,
        },
        "receptor_distances": {
            "nearest_protected_area": _receptor("protected_area", "DE4450301", 0.0),
            "nearest_settlement": _receptor("settlement", "dorf", 0.8),
            "nearest_water_body": _receptor("water_body", "112", 0.0, source="land_cover_fallback"),
            "counts": [
                {"within_km": k, "protected_areas": 1, "settlements": n, "water_bodies": 1}
                for k, n in ((0.5, 0), (1.0, 1), (2.0, 3), (5.0, 9))
            ],
            "reasons": {"water_body": "no water layer: CORINE water classes used"},
        },
        "terrain": {"available": False, "reason": "no elevation layer in the dataset catalog"},
        "emissions": {
            "technology": "wind",
            "capacity_mw": 3.0,
            "lifetime_years": 25.0,
            "construction_tco2e": 2000.0,
            "land_use_change_tco2e": 450.0,
            "footprint_ha": 3.0,
            "land_use_change_by_class": [],
            "operation_tco2e_per_year": 10.0,
            "capacity_factor": 0.25,
            "annual_generation_mwh": 6570.0,
            "grid_factor_tco2e_per_mwh": 0.38,
            "avoided_tco2e_per_year": 2496.6,
            "lifetime_emissions_tco2e": 2700.0,
            "lifetime_avoided_tco2e": 62415.0,
            "net_balance_tco2e": -59715.0,
            "payback_years": 1.1,
            "payback_reason": None,
            "factors": {},
        },
        "kpis": {},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw[section][field] = value
        else:
            raw[section] = value
    return msgspec.convert(raw, Results)


def test_every_metric_is_produced_with_the_right_value() -> None:
    m = screening_metrics(make_results())
    assert set(m) == set(METRICS)
    assert m["project_type"] == "wind" and m["capacity_mw"] == 3.0 and m["buffer_km"] == 5.0
    assert m["aoi_area_ha"] == 100.0
    assert m["protected_overlap_ha"] == 12.5 and m["protected_overlap_pct"] == 12.5
    assert m["distance_to_protected_km"] == 0.0 and m["protected_areas_in_buffer"] == 3
    assert m["natura2000_overlap_ha"] == 12.5 and m["natura2000_sites_in_buffer"] == 2
    assert m["distance_to_natura2000_km"] == 0.0
    # the zone rules see the sites the AOI does not overlap, whatever it overlaps (DE4452401 lies past 5 km)
    assert m["natura2000_sites_in_buffer_not_overlapped"] == 1 and m["distance_to_natura2000_not_overlapped_km"] == 3.4
    assert m["protected_areas_within_1km_not_overlapped"] == 0 and m["distance_to_protected_not_overlapped_km"] == 1.2
    assert m["distance_to_settlement_km"] == 0.8 and m["settlements_within_1km"] == 1
    assert m["distance_to_water_km"] == 0.0
    assert m["water_ratio"] == 0.04 and m["wetland_ratio"] == 0.06 and m["agricultural_ratio"] == 0.4
    assert m["forest_ratio"] == 0.3 and m["artificial_ratio"] == 0.0 and m["natural_habitat_ratio"] == 0.6
    assert m["forest_area_ha"] == pytest.approx(30.0) and m["wetland_area_ha"] == pytest.approx(6.0)
    assert m["shrub_ratio"] == pytest.approx(0.2)  # 324 + 321, not the 33x classes
    assert m["mean_slope_deg"] is None  # no elevation layer: null, not 0
    assert m["land_use_change_tco2e"] == 450.0
    for name in ("biodiversity_sensitivity_score", "resm_score", "ahsm_score", "cim_score"):
        assert m[name] is None  # the indices have not run yet


def test_values_have_the_declared_types() -> None:
    m = screening_metrics(make_results())
    for name, value in m.items():
        if value is None:
            continue
        t = METRICS[name].type
        assert isinstance(value, (int, float) if t is float else t) and not isinstance(value, bool), name


def test_natura_sites_are_only_natura_and_keep_overlap() -> None:
    sites = natura_sites(make_results())
    assert sites is not None
    assert [s["site_code"] for s in sites] == ["DE4450301", "DE4451401"]
    assert sites[0]["overlap_ha"] == 12.5 and sites[1]["distance_km"] == 3.4


def test_no_protected_layer_gives_nulls_with_reasons() -> None:
    res = make_results(
        biodiversity={
            "available": False,
            "reason": "the catalog has no protected_areas layer",
            "buffer_km": 5.0,
            "protected_overlap_ha": None,
            "protected_overlap_pct": None,
            "natura2000_overlap_ha": None,
            "natura2000_overlap_pct": None,
            "sites_overlapping": [],
            "sites_in_buffer": [],
            "natura2000_sites_in_buffer": None,
        },
        receptor_distances__nearest_protected_area=None,
    )
    m = screening_metrics(res)
    for name in (
        "protected_overlap_ha",
        "natura2000_overlap_ha",
        "natura2000_sites_in_buffer",
        "protected_areas_in_buffer",
        "distance_to_natura2000_km",
        "distance_to_protected_km",
    ):
        assert m[name] is None, name
    assert natura_sites(res) is None
    reasons = metric_reasons(res)
    assert reasons["natura2000_overlap_ha"] == "the catalog has no protected_areas layer"
    assert reasons["mean_slope_deg"] == "no elevation layer in the dataset catalog"


def test_scores_are_read_back_once_the_indices_ran() -> None:
    res = make_results()
    all_ = indices.compute_all(index_features(res))
    res.biodiversity.sensitivity, res.resm, res.ahsm, res.cim = (
        all_.biodiversity_sensitivity,
        all_.resm,
        all_.ahsm,
        all_.cim,
    )
    m = screening_metrics(res)
    assert m["biodiversity_sensitivity_score"] == all_.biodiversity_sensitivity.score
    assert m["cim_score"] == all_.cim.score
    # also from plain dicts (results read back from JSON)
    res.resm = msgspec.to_builtins(all_.resm)
    assert screening_metrics(res)["resm_score"] == all_.resm.score


def test_index_features_carry_fallbacks_and_reasons() -> None:
    f = index_features(make_results())
    assert f.project_type == "wind" and f.shrub_ratio == pytest.approx(0.2)
    assert f.land_use_change_tco2e_per_ha == pytest.approx(4.5)
    assert f.fallback_features == ("distance_to_water_km",)
    assert f.mean_slope_deg is None and f.missing_reasons["mean_slope_deg"].startswith("no elevation layer")
    ahsm = indices.ahsm(f)
    slope = next(d for d in ahsm.drivers if d.feature == "mean_slope_deg")
    assert "no elevation layer in the dataset catalog" in (slope.note or "")
    assert ahsm.confidence == pytest.approx(1.0 - 0.25 - 0.15 * 0.5)


def test_provenance_of_partial_land_cover_and_stand_ins() -> None:
    res = make_results(land_cover__coverage_ratio=0.25, land_cover__covered_ha=25.0)
    p = metric_provenance(res)
    assert set(p) == set(METRICS)
    nat = p["natural_habitat_ratio"]
    # 0.6 of a quarter: the whole AOI holds between 0.15 and 0.9 natural habitat
    assert nat.source == "land_cover" and nat.coverage_ratio == 0.25
    assert nat.lower == pytest.approx(0.15) and nat.upper == pytest.approx(0.9)
    forest = p["forest_area_ha"]
    assert forest.lower == pytest.approx(30.0) and forest.upper == pytest.approx(105.0)
    # the water distance comes from a CORINE stand-in: an upper bound, not evidence of absence
    water = p["distance_to_water_km"]
    assert water.source == "corine_stand_in" and water.resolves is False and water.upper == 0.0
    assert p["distance_to_settlement_km"].source == "settlements" and p["distance_to_settlement_km"].resolves
    assert p["biodiversity_sensitivity_score"].coverage_ratio == 0.25
    assert index_features(res).feature_coverage["natural_habitat_ratio"] == 0.25


def test_index_score_bounds_hold_every_score_the_gap_allows() -> None:
    import random

    from aethera.analysis.indices import IndexFeatures
    from aethera.analysis.metrics import index_score_bounds

    res = make_results()
    f = index_features(res)
    c = 0.4  # 40 % of the AOI covered
    ratios = (
        "water_ratio",
        "wetland_ratio",
        "forest_ratio",
        "shrub_ratio",
        "agricultural_ratio",
        "artificial_ratio",
        "natural_habitat_ratio",
    )
    bounds = {n: (getattr(f, n) * c, getattr(f, n) * c + 1 - c) for n in ratios}
    bounds["distance_to_water_km"] = (0.0, 3.0)
    bounds["land_use_change_tco2e_per_ha"] = (1.0, None)
    actual = indices.compute_all(f)
    scores = {
        "biodiversity_sensitivity_score": actual.biodiversity_sensitivity.score,
        "resm_score": actual.resm.score,
        "ahsm_score": actual.ahsm.score,
        "cim_score": actual.cim.score,
    }
    got = index_score_bounds(f, bounds, scores)
    rng = random.Random(12)
    for _ in range(300):  # any whole-AOI truth inside the bounds scores inside the index bounds
        values = {n: rng.uniform(lo, hi if hi is not None else 500.0) for n, (lo, hi) in bounds.items()}
        sample = indices.compute_all(msgspec.structs.replace(f, **values))
        for key, r in (
            ("biodiversity_sensitivity_score", sample.biodiversity_sensitivity),
            ("resm_score", sample.resm),
            ("ahsm_score", sample.ahsm),
            ("cim_score", sample.cim),
        ):
            lo, hi = got[key]
            assert lo is not None and hi is not None and lo - 0.1 <= r.score <= hi + 0.1, key
    # a range of one value is that value
    exact = {n: (getattr(f, n), getattr(f, n)) for n in ratios}
    tight = index_score_bounds(f, exact, scores)
    assert tight["biodiversity_sensitivity_score"] == (scores["biodiversity_sensitivity_score"],) * 2
    assert isinstance(f, IndexFeatures)


def test_index_features_take_the_search_limit_of_a_receptor_not_found() -> None:
    res = make_results(
        receptor_distances__nearest_protected_area=None,
        receptor_distances__not_found_within_km={"protected_area": 100.0},
    )
    f = index_features(res)
    assert f.distance_to_protected_km is None
    assert f.not_found_within_km == {"distance_to_protected_km": 100.0}
    # no receptor layer at all: no bound, the feature stays missing
    res = make_results(receptor_distances__nearest_protected_area=None)
    assert index_features(res).not_found_within_km == {}
