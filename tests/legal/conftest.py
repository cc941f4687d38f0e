"""Screening metrics of a plain, unremarkable project; tests change only what they are about."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aethera.legal.metrics import METRICS

# A 8 ha solar park on farmland and a car park, far from every sensitive feature.
FINE: dict[str, Any] = {
    "project_type": "solar",
    "capacity_mw": 4.0,
    "buffer_km": 5.0,
    "aoi_area_ha": 8.0,
    "aoi_area_national_ha": 8.0,
    "protected_overlap_ha": 0.0,
    "protected_overlap_pct": 0.0,
    "distance_to_protected_km": 12.0,
    "protected_areas_in_buffer": 0,
    "natura2000_overlap_ha": 0.0,
    "distance_to_natura2000_km": 15.0,
    "natura2000_sites_in_buffer": 0,
    "natura2000_sites_in_buffer_not_overlapped": 0,
    "distance_to_natura2000_not_overlapped_km": None,
    "protected_areas_within_1km_not_overlapped": 0,
    "distance_to_protected_not_overlapped_km": None,
    "distance_to_settlement_km": 2.5,
    "settlements_within_1km": 0,
    "distance_to_water_km": 1.2,
    "water_ratio": 0.0,
    "wetland_ratio": 0.0,
    "agricultural_ratio": 0.3,
    "forest_ratio": 0.0,
    "forest_area_ha": 0.0,
    "wetland_area_ha": 0.0,
    "shrub_ratio": 0.0,
    "artificial_ratio": 0.7,
    "natural_habitat_ratio": 0.0,
    "mean_slope_deg": 2.0,
    "land_use_change_tco2e": 15.0,
    "biodiversity_sensitivity_score": 8.0,
    "resm_score": 85.0,
    "ahsm_score": 12.0,
    "cim_score": 10.0,
}
assert set(FINE) == set(METRICS)

MetricsFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def metrics() -> MetricsFactory:
    def make(**changes: Any) -> dict[str, Any]:
        unknown = set(changes) - set(METRICS)
        assert not unknown, unknown
        if "aoi_area_ha" in changes and "aoi_area_national_ha" not in changes:
            # the national planimetric area differs from the ellipsoidal one by under 0.1 %: a test
            # about another figure gets the same number for both (test_national_area is about the gap)
            changes["aoi_area_national_ha"] = changes["aoi_area_ha"]
        return {**FINE, **changes}

    return make


def natura_site(code: str = "DE4450301", distance_km: float = 0.0, overlap_ha: float | None = None) -> dict[str, Any]:
    return {"site_code": code, "name": f"Site {code}", "distance_km": distance_km, "overlap_ha": overlap_ha}


@pytest.fixture
def site() -> Callable[..., dict[str, Any]]:
    return natura_site
