"""The vocabulary of the rule packs: every metric name a pack may use, with its type, unit and meaning.

This is the one declaration of those names. The pack loader refuses a pack that names anything else,
and the pipeline (`aethera.analysis.metrics.screening_metrics`) must produce exactly these keys (a test
checks both), so a pack can never reference a value the pipeline does not compute. A value the run could
not compute is None, and the rules that need it become `not_evaluable`.

Each value may come with its `Provenance`: the source it was measured on, the share of the AOI that
source covered, whether that source can resolve the feature at all, and the bounds the true value must
lie in given the gap. The engine takes a value as exact only when its source resolves the feature and
covers at least the pack's `min_coverage`; otherwise it reasons on the bounds (a stand-in may show a
feature is present; it can never show it is absent).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class MetricSpec(NamedTuple):
    type: type  # float (int accepted), int or str
    unit: str  # "" for counts, categories and dimensionless ratios
    description: str


METRICS: dict[str, MetricSpec] = {
    "project_type": MetricSpec(str, "", "technology of the project: solar or wind"),
    "capacity_mw": MetricSpec(float, "MW", "installed capacity (given, or from the configured density)"),
    "buffer_km": MetricSpec(float, "km", "radius of the zone of influence around the AOI"),
    "aoi_area_ha": MetricSpec(float, "ha", "AOI area in an equal-area CRS"),
    "aoi_area_national_ha": MetricSpec(
        float,
        "ha",
        "AOI area measured planimetrically in the CRS the national pack states its area thresholds in (null without a national pack)",
    ),
    "protected_overlap_ha": MetricSpec(float, "ha", "area of the AOI inside any protected area (dissolved)"),
    "protected_overlap_pct": MetricSpec(float, "%", "share of the AOI inside any protected area, 0-100"),
    "distance_to_protected_km": MetricSpec(float, "km", "AOI boundary to the nearest protected area (0 inside)"),
    "protected_areas_in_buffer": MetricSpec(int, "", "protected areas within the zone of influence"),
    "natura2000_overlap_ha": MetricSpec(float, "ha", "area of the AOI inside Natura 2000 sites (dissolved)"),
    "distance_to_natura2000_km": MetricSpec(
        float,
        "km",
        "AOI boundary to the nearest Natura 2000 site in the zone of influence (0 inside; null when none is in the zone)",
    ),
    "natura2000_sites_in_buffer": MetricSpec(
        int, "", "Natura 2000 sites within the zone of influence (overlapped ones included)"
    ),
    "natura2000_sites_in_buffer_not_overlapped": MetricSpec(
        int, "", "Natura 2000 sites within the zone of influence that the AOI does not overlap"
    ),
    "distance_to_natura2000_not_overlapped_km": MetricSpec(
        float,
        "km",
        "AOI boundary to the nearest Natura 2000 site in the zone of influence that the AOI does not overlap (null when none)",
    ),
    "protected_areas_within_1km_not_overlapped": MetricSpec(
        int, "", "protected areas within 1 km of the AOI boundary that the AOI does not overlap"
    ),
    "distance_to_protected_not_overlapped_km": MetricSpec(
        float,
        "km",
        "AOI boundary to the nearest protected area that the AOI does not overlap, searched within the zone of influence or 5 km, whichever is larger (null when none)",
    ),
    "distance_to_settlement_km": MetricSpec(float, "km", "AOI boundary to the nearest settlement"),
    "settlements_within_1km": MetricSpec(int, "", "settlements within 1 km of the AOI"),
    "distance_to_water_km": MetricSpec(float, "km", "AOI boundary to the nearest river, lake or water body"),
    "water_ratio": MetricSpec(float, "", "share of the covered AOI in CORINE water bodies (5xx), 0-1"),
    "wetland_ratio": MetricSpec(float, "", "share of the covered AOI in CORINE wetlands (4xx), 0-1"),
    "agricultural_ratio": MetricSpec(float, "", "share of the covered AOI in CORINE agricultural areas (2xx), 0-1"),
    "forest_ratio": MetricSpec(float, "", "share of the covered AOI in CORINE forests (31x), 0-1"),
    "forest_area_ha": MetricSpec(float, "ha", "area of CORINE forest (31x) on the covered part of the AOI"),
    "wetland_area_ha": MetricSpec(float, "ha", "area of CORINE wetlands (4xx) on the covered part of the AOI"),
    "shrub_ratio": MetricSpec(
        float, "", "share of the covered AOI in CORINE shrub and herbaceous vegetation (32x), 0-1"
    ),
    "artificial_ratio": MetricSpec(float, "", "share of the covered AOI in CORINE artificial surfaces (1xx), 0-1"),
    "natural_habitat_ratio": MetricSpec(
        float, "", "share of the covered AOI in CORINE forest, semi-natural, wetland and water classes (3xx-5xx), 0-1"
    ),
    "mean_slope_deg": MetricSpec(float, "deg", "mean terrain slope over the AOI; needs an elevation layer"),
    "land_use_change_tco2e": MetricSpec(
        float, "tCO2e", "carbon released by converting the project footprint (extrapolated from the covered land)"
    ),
    "biodiversity_sensitivity_score": MetricSpec(float, "", "biodiversity sensitivity index, 0-100"),
    "resm_score": MetricSpec(float, "", "renewable-energy site suitability index, 0-100"),
    "ahsm_score": MetricSpec(float, "", "asset hazard susceptibility index, 0-100"),
    "cim_score": MetricSpec(float, "", "cumulative impact index, 0-100"),
}


# Sources a provenance may name besides a catalog layer name.
STAND_IN = "corine_stand_in"  # a CORINE class standing in for a missing settlements or water layer
PARAMETERS = "parameters"  # given by the run (or derived from the AOI geometry alone)
INDICES = "indices"  # a screening index, itself resting on the land-cover ratios


class Provenance(msgspec.Struct, kw_only=True, frozen=True):
    """Where one metric value comes from and how far it can be trusted.

    `coverage_ratio`: the share of the AOI (0..1) its source covered; None when the source has no
    extent to measure (a vector layer of features is taken as complete where the deployment uses it).
    `resolves`: False when the source cannot show the feature the metric tests (CORINE's 25 ha minimum
    mapping unit cannot show a stream or a hamlet). `lower` / `upper`: the range the true whole-AOI
    value must lie in, given the uncovered part or the stand-in (None = unbounded on that side).
    """

    source: str
    coverage_ratio: float | None = None
    resolves: bool = True
    lower: float | None = None
    upper: float | None = None
    note: str | None = None
