"""The shape of a screening's results: one msgspec Struct per step, and `Results` that holds them all.

Conventions (analysis.md): a name ending in `_ha`, `_km`, `_m`, `_pct`, `_tco2e` carries that unit;
`share` and `*_ratio` are fractions 0..1 of the zone's area; a value that could not be computed is
null and a `reason` (or an entry of `reasons`) says why. Structs are mutable on purpose: a later
pipeline step (the indices) fills fields of an earlier one (`biodiversity.sensitivity`).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# --- step 1: AOI ---------------------------------------------------------------------------------


class AOISummary(msgspec.Struct, kw_only=True):
    """What the AOI is."""

    aoi_area_ha: float  # in the equal-area CRS (`area_crs`)
    perimeter_km: float  # in the AOI-centred equidistant CRS (`metric_crs`)
    centroid_lon: float
    centroid_lat: float
    bbox: list[float]  # [min_lon, min_lat, max_lon, max_lat], EPSG:4326
    part_count: int
    hole_count: int
    vertex_count: int
    repairs: list[str]
    source_format: str
    source_crs: str
    area_crs: str
    metric_crs: str
    # The area as the national administration measures it: planimetric in the CRS the country's rule
    # pack states (national area thresholds compare against this); None with a reason without one.
    aoi_area_national_ha: float | None = None
    national_area_crs: str | None = None
    national_area_basis: str | None = None
    national_area_reason: str | None = None


class Parameters(msgspec.Struct, kw_only=True):
    """The run parameters as used (capacity resolved from the density when not given)."""

    project_type: str
    country: str | None
    capacity_mw: float
    capacity_source: str  # "config" or "density (0.5 MW/ha x AOI area)"
    buffer_km: float
    lifetime_years: float


# --- step 2: land cover --------------------------------------------------------------------------


class LandCoverClass(msgspec.Struct, kw_only=True):
    """One line of a land-cover table. `code` is null for the no-data and outside-the-layer lines."""

    code: int | None
    label: str
    group: str  # artificial | agricultural | forest_semi_natural | wetlands | water | unclassified | nodata | outside
    group_label: str
    area_ha: float
    share: float  # of the zone's area, 0..1


class LandCoverGroup(msgspec.Struct, kw_only=True):
    group: str
    label: str
    area_ha: float
    share: float


class LandCoverZone(msgspec.Struct, kw_only=True):
    """Land cover of one zone: the AOI, or the buffer ring around it (the AOI excluded)."""

    zone: Literal["aoi", "buffer"]
    area_ha: float  # the zone's own area (equal-area CRS)
    classified_ha: float  # sum of the CORINE class lines
    nodata_ha: float  # inside the layer but no data
    outside_layer_ha: float  # not covered by the layer at all
    classes: list[LandCoverClass]  # CORINE classes by area (largest first), then no data / outside lines
    groups: list[LandCoverGroup]  # the five level-1 groups, always all five (shares of the zone's area)
    # Area on a known CORINE class, and its share of the zone (0..1): what the layer says something
    # about. Derived from the other figures when a producer leaves them out.
    covered_ha: float | None = None
    coverage_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.covered_ha is None:
            self.covered_ha = sum(c.area_ha for c in self.classes if c.code is not None and c.group != "unclassified")
        if self.coverage_ratio is None:
            self.coverage_ratio = round(min(1.0, self.covered_ha / self.area_ha), 6) if self.area_ha > 0 else 0.0


class LandCover(msgspec.Struct, kw_only=True):
    source: Literal["raster", "vector"]
    layer: str  # the file's name
    method: str
    resolution_m: float | None  # raster pixel size in its CRS units (metres for a projected CRS)
    aoi: LandCoverZone
    buffer: LandCoverZone | None
    buffer_km: float
    buffer_reason: str | None = None
    # Share of the AOI the layer covers with a known class (0..1), and that area: every ratio below
    # rests on this much land, and the legal rules refuse a verdict when it is too little.
    coverage_ratio: float = 1.0
    covered_ha: float | None = None
    # Fractions (0..1) of the *covered* part of the AOI, keyed: artificial (1xx), agricultural (2xx),
    # forest (31x), shrub (32x), semi_natural (32x, 33x), wetland (4xx), water (5xx), natural_habitat
    # (3xx + 4xx + 5xx). Empty when nothing is covered (`ratios_reason` says so).
    ratios: dict[str, float] = msgspec.field(default_factory=dict)
    ratios_reason: str | None = None

    def __post_init__(self) -> None:
        if self.covered_ha is None:  # a producer that predates coverage: take the AOI zone's figures
            self.covered_ha = self.aoi.covered_ha
            self.coverage_ratio = self.aoi.coverage_ratio if self.aoi.coverage_ratio is not None else 1.0


# --- step 3: protected areas ---------------------------------------------------------------------


class SiteOverlap(msgspec.Struct, kw_only=True):
    site_code: str
    name: str | None
    type: str | None
    natura2000: bool
    overlap_ha: float
    overlap_pct: float  # of the AOI's area


class SiteNearby(msgspec.Struct, kw_only=True):
    site_code: str
    name: str | None
    type: str | None
    natura2000: bool
    distance_km: float  # from the AOI boundary; 0 when the site touches or overlaps the AOI
    overlap_ha: float


class Biodiversity(msgspec.Struct, kw_only=True):
    available: bool  # False when the deployment has no protected_areas layer (then `reason` says so)
    reason: str | None
    buffer_km: float
    protected_overlap_ha: float | None  # dissolved: overlapping sites are counted once
    protected_overlap_pct: float | None  # of the AOI's area; never above 100
    natura2000_overlap_ha: float | None
    natura2000_overlap_pct: float | None
    sites_overlapping: list[SiteOverlap]
    sites_in_buffer: list[SiteNearby]  # every site within buffer_km of the AOI, nearest first
    natura2000_sites_in_buffer: int | None
    # Every site the AOI does *not* overlap within `proximity_search_km` (the zone of influence or 5 km,
    # whichever is larger), nearest first: zone and proximity rules count these, so overlapping one
    # site never hides another one nearby.
    sites_not_overlapped: list[SiteNearby] = msgspec.field(default_factory=list)
    proximity_search_km: float | None = None
    sensitivity: Any = None  # the biodiversity sensitivity index (filled by the indices step)
    sensitivity_reason: str | None = None


# --- step 4: receptors ---------------------------------------------------------------------------


class Receptor(msgspec.Struct, kw_only=True):
    receptor_type: Literal["protected_area", "settlement", "water_body"]
    receptor_id: str
    receptor_name: str | None
    distance_km: float  # from the AOI boundary; 0 when it touches or lies inside
    source: Literal["layer", "land_cover_fallback"]
    kind: str | None = None  # the layer's type attribute (SAC, town, river ...) or the CORINE class
    population: int | None = None


class ReceptorCounts(msgspec.Struct, kw_only=True):
    within_km: float
    protected_areas: int | None
    settlements: int | None
    water_bodies: int | None


class ReceptorDistances(msgspec.Struct, kw_only=True):
    nearest_protected_area: Receptor | None
    nearest_settlement: Receptor | None
    nearest_water_body: Receptor | None
    counts: list[ReceptorCounts]  # features within 0.5, 1, 2 and 5 km of the AOI boundary
    # Why a nearest_* or a count is null, or how it was derived (a CORINE fallback), by receptor type.
    reasons: dict[str, str] = msgspec.field(default_factory=dict)
    population_within_1km: int | None = None
    # What each receptor type was searched in: "layer", or "land_cover_fallback" (CORINE classes stand in)
    sources: dict[str, str] = msgspec.field(default_factory=dict)
    # Receptor types whose layer was searched without finding one: the radius searched, km. The nearest
    # is farther than that (a lower bound the indices use, so "none within 100 km" is never scored as
    # if it were nearer than a receptor found at 60 km).
    not_found_within_km: dict[str, float] = msgspec.field(default_factory=dict)


# --- terrain (elevation layer) -------------------------------------------------------------------


class Terrain(msgspec.Struct, kw_only=True):
    available: bool
    reason: str | None
    mean_elevation_m: float | None = None
    min_elevation_m: float | None = None
    max_elevation_m: float | None = None
    mean_slope_deg: float | None = None
    max_slope_deg: float | None = None
    steep_area_pct: float | None = None  # share of the AOI with slope above `steep_threshold_deg`
    steep_threshold_deg: float = 15.0
    resolution_m: float | None = None


# --- step 5: emissions ---------------------------------------------------------------------------


class FactorUsed(msgspec.Struct, kw_only=True):
    value: float
    unit: str
    source: str
    overridden: bool = False


class LandUseChangeLine(msgspec.Struct, kw_only=True):
    code: int
    label: str
    footprint_ha: float
    carbon_loss_tco2e_per_ha: float
    land_use_change_tco2e: float
    # the annual carbon uptake the cleared footprint no longer provides (biome-dependent for forests)
    uptake_tco2e_per_ha_year: float = 0.0
    lost_sequestration_tco2e_per_year: float = 0.0


class AvoidedYear(msgspec.Struct, kw_only=True):
    """One operating year on the grid trajectory (`share` < 1 for a last, partial year)."""

    year: int
    grid_tco2e_per_mwh: float
    avoided_tco2e: float
    share: float = 1.0


class Emissions(msgspec.Struct, kw_only=True):
    technology: str
    capacity_mw: float
    lifetime_years: float
    construction_tco2e: float
    land_use_change_tco2e: float
    footprint_ha: float
    land_use_change_by_class: list[LandUseChangeLine]
    # Share of the AOI whose land cover the land-use change rests on (0..1); below 1 the figure is
    # extrapolated from the covered part's class mix (a note says so).
    land_use_change_coverage_ratio: float = 1.0
    operation_tco2e_per_year: float
    capacity_factor: float
    annual_generation_mwh: float
    grid_factor_tco2e_per_mwh: float
    avoided_tco2e_per_year: float
    lifetime_emissions_tco2e: float  # construction + land-use change + (operation + lost sequestration) x lifetime
    lifetime_avoided_tco2e: float
    net_balance_tco2e: float  # lifetime emissions - lifetime avoided: negative is a net saving
    payback_years: float | None
    payback_reason: str | None
    factors: dict[str, FactorUsed]
    notes: list[str] = msgspec.field(default_factory=list)
    # Avoided emissions summed on the country's grid trajectory, year by year, from the first operating
    # year: `avoided_tco2e_per_year` is their lifetime mean, `grid_factor_tco2e_per_mwh` the data-year
    # factor the trajectory starts from.
    first_operating_year: int | None = None
    avoided_first_year_tco2e: float | None = None
    grid_factor_mean_tco2e_per_mwh: float | None = None
    grid_trajectory_source: str | None = None
    avoided_by_year: list[AvoidedYear] = msgspec.field(default_factory=list)
    # the carbon uptake the cleared footprint would have kept providing, counted in the lifetime
    # emissions and the payback
    lost_sequestration_tco2e_per_year: float = 0.0
    lifetime_lost_sequestration_tco2e: float = 0.0
    # the biome whose forest carbon and uptake factors were used, and the rule that chose it
    biome: str | None = None
    biome_reason: str | None = None


# --- step 6: KPIs --------------------------------------------------------------------------------


class KPI(msgspec.Struct, kw_only=True):
    value: float | None
    unit: str
    definition: str
    source: str | None = None  # where the coefficients or factors behind it come from
    reason: str | None = None  # why value is null, or a caveat on how it was computed
    # For a KPI derived from the land-cover layer: the share of the AOI (0..1) that layer covers.
    coverage_ratio: float | None = None


# --- land eligibility ----------------------------------------------------------------------------


class EligibilityRuleResult(msgspec.Struct, kw_only=True):
    """One exclusion rule as applied: its effective parameters, its source, and what it excluded."""

    rule: str  # land_cover | protected_areas | settlements | water | slope | elevation | min_area
    status: Literal["applied", "not_applied", "disabled"]  # not_applied: its layer is missing (`reason`)
    reason: str | None
    parameters: dict[str, Any]  # the effective thresholds and buffers
    source: str
    screening_default: bool  # True: a screening threshold of this service, not a number from a law
    overridden: list[str]  # parameters the run's config.eligibility replaced
    method: str | None  # "exact geometry" or "gridded: ..." (with resolution_m)
    resolution_m: float | None
    excluded_ha: float | None  # what the rule excludes on its own (null when not applied)
    excluded_share: float | None  # of the AOI, 0..1
    exclusive_ha: float | None  # excluded by this rule and by no other: what relaxing it alone would free
    unassessed_ha: float | None = None  # AOI land the rule's layer says nothing about (no data, outside)


class EligiblePatchClass(msgspec.Struct, kw_only=True):
    min_ha: float
    max_ha: float | None  # null: no upper bound
    count: int
    area_ha: float


class EligiblePatches(msgspec.Struct, kw_only=True):
    count: int
    min_ha: float | None
    median_ha: float | None
    mean_ha: float | None
    max_ha: float | None
    size_classes: list[EligiblePatchClass]


class Eligibility(msgspec.Struct, kw_only=True):
    """Where in the AOI the project could be built: the AOI minus every exclusion rule (`eligibility.py`)."""

    technology: str
    rule_set: dict[str, Any]  # id, version, name, overlays, overrides (the effective rules are in `rules`)
    method: str
    crs: str  # the local equal-area CRS every area and buffer is computed in
    aoi_area_ha: float
    eligible_ha: float
    eligible_share: float  # of the AOI, 0..1
    excluded_ha: float  # by any rule (min_area included)
    overlap_ha: float  # excluded by two or more rules: excluded_ha = sum(exclusive_ha) + overlap_ha
    upper_bound: bool  # True when a rule could not be applied: the eligible land is at most this
    confidence: float  # 0..1: the share of the enabled rules' evidence that was there
    rules: list[EligibilityRuleResult]
    binding_constraints: list[str]  # rules by exclusive area, largest first (those that exclude anything)
    patches: EligiblePatches
    mw_per_ha: float
    capacity_mw: float  # eligible_ha x mw_per_ha
    notes: list[str] = msgspec.field(default_factory=list)


# --- the whole run -------------------------------------------------------------------------------


class DatasetStatus(msgspec.Struct, kw_only=True):
    layer: str
    required: bool
    configured: bool
    available: bool
    title: str | None = None
    files: list[str] = msgspec.field(default_factory=list)  # file names only, never directories
    format: str | None = None
    crs: str | None = None
    synthetic: bool = False
    attribution: str | None = None
    reason: str | None = None  # why it is not available, and what that lowers


class Results(msgspec.Struct, kw_only=True):
    aoi: AOISummary
    parameters: Parameters
    land_cover: LandCover
    biodiversity: Biodiversity
    receptor_distances: ReceptorDistances
    terrain: Terrain
    emissions: Emissions
    kpis: dict[str, KPI]
    resm: Any = None  # filled by the indices step
    ahsm: Any = None
    cim: Any = None
    eligibility: Eligibility | None = None  # null only for results stored before the step existed
    datasets: list[DatasetStatus] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    step_durations_s: dict[str, float] = msgspec.field(default_factory=dict)


# --- the published document (results.json, GET /runs/{id}/results) ------------------------------

# Emission entries that qualify the figures rather than being one: they go to `emissions_details`.
EMISSION_DETAIL_KEYS = frozenset(
    {"technology", "land_use_change_by_class", "land_use_change_coverage_ratio", "factors", "notes", "payback_reason"}
)


def _is_figure(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def document(results: Results) -> dict[str, Any]:
    """`results` as stored and served: every map a client renders entry by entry holds scalars only.

    - `kpis`: KPI name -> number or null; each KPI's unit, definition, source, reason and coverage are
      in `kpi_definitions` under the same name.
    - `emissions`: figure name -> number or null (tCO2e, MWh, years ...); the breakdown by class, the
      factors used, the notes, the technology, the coverage and the payback reason are in
      `emissions_details`.
    - `biodiversity.score` and `biodiversity.category` mirror the sensitivity index
      (`biodiversity.sensitivity`, which keeps its drivers, confidence and model).
    """
    doc: dict[str, Any] = msgspec.to_builtins(results)
    kpis: dict[str, dict[str, Any]] = doc.pop("kpis")
    doc["kpis"] = {name: kpi.get("value") for name, kpi in kpis.items()}
    doc["kpi_definitions"] = {name: {k: v for k, v in kpi.items() if k != "value"} for name, kpi in kpis.items()}
    emissions: dict[str, Any] = doc.pop("emissions")
    doc["emissions"] = {
        k: v
        for k, v in emissions.items()
        if k not in EMISSION_DETAIL_KEYS and not k.endswith("_reason") and _is_figure(v)
    }
    doc["emissions_details"] = {k: v for k, v in emissions.items() if k not in doc["emissions"]}
    bio = doc["biodiversity"]
    sensitivity = bio.get("sensitivity") if isinstance(bio.get("sensitivity"), dict) else {}
    bio["score"] = sensitivity.get("score")
    bio["category"] = sensitivity.get("category")
    return doc
