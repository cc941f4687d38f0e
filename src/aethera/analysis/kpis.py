"""Step 6: key performance indicators, each `{value, unit, definition}` (null value with a reason).

Class coefficients (sequestration, ecosystem service value, runoff, erosion cover factor, sealing) live in
`data/kpi_coefficients.toml` with their sources; area-weighted means use the AOI's land-cover areas
(the no-data part is left out of the weights and said so).

Coverage: every KPI derived from the land-cover layer carries `coverage_ratio`, the share of the AOI
(0..1) the layer covers. Means and ratios are over the covered land; sums over the AOI (sequestration,
ecosystem service value) are extrapolated to the whole AOI from the covered part, as the land-use
change is (`emissions.py`), and the reason says so. Ratios are fractions 0..1, like every ratio in the
results; percentages appear only in text.
"""

from __future__ import annotations

import math
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any

from aethera.analysis.landscape import LandscapeMetrics
from aethera.analysis.results import KPI, Emissions, LandCover, ReceptorDistances, Terrain
from aethera.errors import ConfigError


@lru_cache(maxsize=1)
def load_coefficients() -> dict[str, Any]:
    text = resources.files("aethera.analysis").joinpath("data/kpi_coefficients.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"kpi_coefficients.toml is invalid: {exc}") from None
    data["classes"] = {int(k): v for k, v in data["classes"].items()}
    return data


def _weighted(land_cover: LandCover, key: str) -> tuple[float | None, float, list[int]]:
    """Area-weighted mean of a coefficient over the AOI's classes that have it; (mean, weight_ha, missing)."""
    classes = load_coefficients()["classes"]
    total = weight = 0.0
    missing: list[int] = []
    for cls in land_cover.aoi.classes:
        if cls.code is None:
            continue
        coef = classes.get(cls.code, {}).get(key)
        if coef is None:
            if cls.code not in classes:
                missing.append(cls.code)
            continue
        total += coef * cls.area_ha
        weight += cls.area_ha
    return (total / weight if weight > 0 else None), weight, missing


def _summed(land_cover: LandCover, key: str) -> tuple[float, list[int]]:
    classes = load_coefficients()["classes"]
    total = 0.0
    missing = []
    for cls in land_cover.aoi.classes:
        if cls.code is None:
            continue
        if cls.code not in classes:
            missing.append(cls.code)
            continue
        total += classes[cls.code].get(key, 0.0) * cls.area_ha
    return total, missing


def _rusle_s(slope_deg: float) -> float:
    """RUSLE slope steepness factor S (McCool et al. 1987)."""
    theta = math.radians(slope_deg)
    if math.tan(theta) < 0.09:
        return 10.8 * math.sin(theta) + 0.03
    return 16.8 * math.sin(theta) - 0.50


def compute(
    *,
    land_cover: LandCover,
    emissions: Emissions,
    receptors: ReceptorDistances,
    terrain: Terrain,
    landscape: LandscapeMetrics | None,
    aoi_area_ha: float,
    construction_months: float,
) -> dict[str, KPI]:
    coef = load_coefficients()
    src = coef["sources"]
    nodata_note = extrapolated = None
    coverage = land_cover.coverage_ratio
    covered_ha = land_cover.covered_ha or 0.0
    if coverage < 1.0:
        nodata_note = (
            f"land-cover data cover {coverage:.2%} of the AOI ({covered_ha:.2f} ha): figure over the covered part only"
        )
        extrapolated = (
            f"land-cover data cover {coverage:.2%} of the AOI ({covered_ha:.2f} ha): "
            "sum extrapolated to the whole AOI from the covered part"
        )
    scale = aoi_area_ha / covered_ha if covered_ha > 0 else 0.0
    k: dict[str, KPI] = {}

    lifetime_gen = emissions.annual_generation_mwh * emissions.lifetime_years
    if lifetime_gen > 0:
        k["ghg_intensity"] = KPI(
            value=round(emissions.lifetime_emissions_tco2e / lifetime_gen * 1000.0, 3),
            unit="gCO2e/kWh",
            definition="life-cycle emissions (construction, land-use change, operation) per kWh generated",
        )
    else:
        k["ghg_intensity"] = KPI(
            value=None,
            unit="gCO2e/kWh",
            definition="life-cycle emissions per kWh generated",
            reason="the project generates no electricity (capacity or capacity factor is 0)",
        )
    seq, missing = _summed(land_cover, "seq")
    k["carbon_sequestration_potential"] = KPI(
        value=round(seq * scale, 3) if covered_ha > 0 else None,
        unit="tCO2e/year",
        definition="annual CO2 uptake of the AOI's current land cover (forgone where the project replaces it)",
        reason=_join(extrapolated, _missing(missing)) if covered_ha > 0 else "no part of the AOI has land-cover data",
        source=src["seq"],
        coverage_ratio=coverage,
    )
    k["net_carbon_balance"] = KPI(
        value=emissions.net_balance_tco2e,
        unit="tCO2e",
        definition="life-cycle emissions minus avoided grid emissions over the lifetime (negative is a net saving)",
    )
    k["land_use_efficiency"] = KPI(
        value=round(emissions.annual_generation_mwh / aoi_area_ha, 3) if aoi_area_ha > 0 else None,
        unit="MWh/ha/year",
        definition="electricity generated per year per hectare of AOI",
    )
    imperv, _, missing = _weighted(land_cover, "imperv")
    k["impervious_surface_ratio"] = KPI(
        value=round(imperv, 6) if imperv is not None else None,
        unit="fraction (0-1)",
        definition="share of the AOI's land surface that is sealed today (area-weighted class sealing degrees)",
        reason=_join(nodata_note, _missing(missing)) if imperv is not None else "no land-cover class in the AOI",
        source=src["imperv"],
        coverage_ratio=coverage,
    )
    natural = land_cover.ratios.get("natural_habitat")
    k["natural_habitat_ratio"] = KPI(
        value=natural,
        unit="fraction (0-1)",
        definition="share of the AOI covered by forest and semi-natural areas, wetlands and water (CORINE 3xx-5xx)",
        reason=nodata_note if natural is not None else (land_cover.ratios_reason or "no land-cover data"),
        coverage_ratio=coverage,
    )
    if landscape is not None:
        note = landscape.note
        k["habitat_fragmentation"] = KPI(
            value=landscape.effective_mesh_size_ha,
            unit="ha",
            definition="effective mesh size of natural habitat (Jaeger 2000): sum of squared natural patch areas "
            "/ AOI area; smaller means more fragmented",
            reason=note,
            coverage_ratio=coverage,
        )
        k["patch_density"] = KPI(
            value=landscape.patch_density_per_100ha,
            unit="patches/100 ha",
            definition="8-connected land-cover patches per 100 ha of AOI",
            reason=note,
            coverage_ratio=coverage,
        )
        k["edge_density"] = KPI(
            value=landscape.edge_density_m_per_ha,
            unit="m/ha",
            definition="length of boundaries between different land-cover classes per ha of AOI",
            reason=note,
            coverage_ratio=coverage,
        )
        k["connectivity"] = KPI(
            value=round(landscape.largest_natural_patch_share, 6)
            if landscape.largest_natural_patch_share is not None
            else None,
            unit="fraction (0-1)",
            definition="share of the AOI's natural habitat lying in its largest connected patch",
            reason=note if landscape.largest_natural_patch_share is not None else "the AOI holds no natural habitat",
            coverage_ratio=coverage,
        )
    else:
        for name, unit in (
            ("habitat_fragmentation", "ha"),
            ("patch_density", "patches/100 ha"),
            ("edge_density", "m/ha"),
            ("connectivity", "%"),
        ):
            k[name] = KPI(
                value=None,
                unit=unit,
                definition="landscape pattern metric of the AOI's land cover",
                reason="the AOI lies outside the land-cover grid",
            )
    shares = [c.area_ha for c in land_cover.aoi.classes if c.code is not None and c.area_ha > 0]
    total = sum(shares)
    shannon = -sum((a / total) * math.log(a / total) for a in shares) if total > 0 else None
    k["shannon_diversity"] = KPI(
        value=round(shannon, 6) if shannon is not None else None,
        unit="dimensionless (nats)",
        definition="Shannon diversity of the AOI's land-cover classes, -sum(p ln p) over class shares",
        reason=nodata_note if shannon is not None else "no land-cover class in the AOI",
        coverage_ratio=coverage,
    )
    esv, missing = _summed(land_cover, "esv")
    k["ecosystem_service_value"] = KPI(
        value=round(esv * scale, 2) if covered_ha > 0 else None,
        unit="Int$ (2007)/year",
        definition="annual value of the ecosystem services of the AOI's land cover (global unit values by biome)",
        reason=_join(extrapolated, _missing(missing)) if covered_ha > 0 else "no part of the AOI has land-cover data",
        source=src["esv"],
        coverage_ratio=coverage,
    )
    runoff, _, missing = _weighted(land_cover, "runoff")
    k["water_regulation"] = KPI(
        value=round(1.0 - runoff, 4) if runoff is not None else None,
        unit="fraction (0-1)",
        definition="share of a design storm's rain the land surface retains: 1 - area-weighted runoff coefficient "
        "(water surfaces excluded)",
        source=src["runoff"],
        coverage_ratio=coverage,
        reason=_join(nodata_note, _missing(missing))
        if runoff is not None
        else "no land surface with a runoff coefficient in the AOI (water only)",
    )
    c_mean, _, missing = _weighted(land_cover, "c")
    k["cover_management_factor"] = KPI(
        value=round(c_mean, 5) if c_mean is not None else None,
        unit="RUSLE C (0-1)",
        definition="area-weighted RUSLE cover-management factor of the AOI's land cover (water surfaces excluded)",
        source=src["c"],
        coverage_ratio=coverage,
        reason=_join(nodata_note, _missing(missing))
        if c_mean is not None
        else "no land surface with a C factor in the AOI (water only)",
    )
    if c_mean is not None and terrain.mean_slope_deg is not None:
        k["soil_erosion_risk"] = KPI(
            value=round(c_mean * _rusle_s(terrain.mean_slope_deg), 5),
            unit="relative (C x S)",
            definition="RUSLE cover factor C x slope factor S at the AOI's mean slope (McCool et al. 1987); "
            "rainfall, soil and slope-length factors not included",
            reason=nodata_note,
            coverage_ratio=coverage,
        )
    else:
        k["soil_erosion_risk"] = KPI(
            value=None,
            unit="relative (C x S)",
            definition="RUSLE cover factor C x slope factor S at the AOI's mean slope",
            reason=terrain.reason
            if terrain.mean_slope_deg is None
            else "no land surface with a C factor in the AOI (water only)",
        )
    pop = receptors.population_within_1km
    k["air_quality_impact"] = KPI(
        value=float(pop) if pop is not None else None,
        unit="persons",
        definition="population of settlements within 1 km of the AOI boundary, exposed to construction dust and "
        "exhaust",
        reason=None
        if pop is not None
        else receptors.reasons.get("population") or receptors.reasons.get("settlement") or "population unknown",
    )
    dust = coef["dust"]
    k["particulate_potential"] = KPI(
        value=round(emissions.footprint_ha * dust["tsp_t_per_ha_month"] * construction_months, 3),
        unit="t TSP",
        definition=f"uncontrolled total suspended particulates of construction: footprint x "
        f"{dust['tsp_t_per_ha_month']} t/ha/month x {construction_months:g} months",
        source=dust["source"],
    )
    construction = emissions.construction_tco2e
    k["resource_efficiency"] = KPI(
        value=round(lifetime_gen / construction, 3) if construction > 0 else None,
        unit="MWh/tCO2e",
        definition="electricity generated over the lifetime per tonne of embodied (construction) emissions",
        reason=None if construction > 0 else "no construction emissions",
    )
    k["renewable_share"] = KPI(
        value=1.0,
        unit="fraction (0-1)",
        definition="share of the project's generation from renewable sources (solar and wind: all of it)",
    )
    return k


def _missing(codes: list[int]) -> str | None:
    if not codes:
        return None
    return "classes without coefficients left out: " + ", ".join(str(c) for c in sorted(set(codes)))


def _join(*parts: str | None) -> str | None:
    kept = [p for p in parts if p]
    return "; ".join(kept) if kept else None
