"""Step 5: the project's greenhouse-gas balance, from the factors in `data/emission_factors.toml`.

- construction: capacity x life-cycle (non-operational) factor per MW of the technology
- land-use change: on the project's footprint only. The footprint is capacity x the technology's
  directly altered area per MW (at most the AOI), spread over the AOI's land-cover classes in
  proportion to their areas; each class loses its carbon-loss factor per hectare. Coverage rule: the
  footprint is the whole project's, so when land-cover data cover only part of the AOI the footprint is
  spread over the *covered* classes' proportions (extrapolated: the uncovered part is assumed to hold the
  same mix), and `land_use_change_coverage_ratio` and a note say on how much land that rests
- operation per year: capacity x direct operational factor
- avoided per year: capacity x capacity factor (country, technology) x 8,760 h x grid factor (country)
- net balance over the lifetime: (construction + land-use change + operation x lifetime) - avoided x
  lifetime; negative means the project saves more than it emits
- carbon payback: (construction + land-use change) / (avoided - operation) per year; null with a reason
  when the project never pays back

A run may override any factor (`config.emission_factors`); the output lists every factor used, its
source and whether it was overridden.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any

from aethera.analysis.params import RunParams
from aethera.analysis.results import Emissions, FactorUsed, LandCover, LandUseChangeLine
from aethera.data import corine
from aethera.data.countries import EU27
from aethera.errors import ConfigError

HOURS_PER_YEAR = 8760.0


@lru_cache(maxsize=1)
def load_factors() -> dict[str, Any]:
    """The emission factor file, parsed once."""
    text = resources.files("aethera.analysis").joinpath("data/emission_factors.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # a packaging mistake, not a user error
        raise ConfigError(f"emission_factors.toml is invalid: {exc}") from None
    for tech in ("solar", "wind"):
        if tech not in data.get("technology", {}):
            raise ConfigError(f"emission_factors.toml lacks [technology.{tech}]")
    return data


def _by_country(table: dict[str, Any], country: str | None, in_europe: bool) -> tuple[float, str]:
    if country and country in table:
        return float(table[country]), country
    if country in EU27 or in_europe:
        return float(table["EU27"]), "EU27"
    return float(table["WORLD"]), "WORLD"


def compute(
    land_cover: LandCover,
    params: RunParams,
    *,
    capacity_mw: float,
    aoi_area_ha: float,
    in_europe: bool,
) -> Emissions:
    data = load_factors()
    tech = data["technology"][params.project_type]
    over = params.factor_overrides
    factors: dict[str, FactorUsed] = {}
    notes: list[str] = []

    def use(name: str, default: float, unit: str, source: str) -> float:
        if name in over:
            factors[name] = FactorUsed(value=float(over[name]), unit=unit, source="run configuration", overridden=True)
            return float(over[name])
        factors[name] = FactorUsed(value=float(default), unit=unit, source=source)
        return float(default)

    lifetime = params.lifetime_years or float(tech["lifetime_years"])
    factors["lifetime_years"] = FactorUsed(
        value=lifetime, unit="years",
        source="run configuration" if params.lifetime_years else f"default of {tech['label']}",
        overridden=params.lifetime_years is not None,
    )
    construction_f = use("construction_tco2e_per_mw", tech["construction_tco2e_per_mw"], "tCO2e/MW",
                         tech["construction_source"])
    operation_f = use("operation_tco2e_per_mw_year", tech["operation_tco2e_per_mw_year"], "tCO2e/MW/year",
                      tech["operation_source"])
    cf_value, cf_basis = _by_country(data["capacity_factor"][params.project_type], params.country, in_europe)
    cf_source = data["capacity_factor"]["source"] + _basis_note(cf_basis, params.country)
    capacity_factor = use("capacity_factor", cf_value, "fraction of 8,760 h", cf_source)
    grid_value, grid_basis = _by_country(data["grid_tco2e_per_mwh"], params.country, in_europe)
    grid_source = data["grid_tco2e_per_mwh"]["source"] + _basis_note(grid_basis, params.country)
    grid = use("grid_tco2e_per_mwh", grid_value, "tCO2e/MWh", grid_source)
    if cf_basis != params.country or grid_basis != params.country:
        notes.append(
            f"no national factor for {params.country or 'an unknown country'}: "
            f"capacity factor from {cf_basis}, grid factor from {grid_basis}"
        )

    # Footprint: the directly altered land, never more than the AOI.
    if "footprint_share" in over:
        share = float(over["footprint_share"])
        factors["footprint_share"] = FactorUsed(value=share, unit="fraction of AOI", source="run configuration",
                                                overridden=True)
    else:
        per_mw = float(tech["footprint_ha_per_mw"])
        share = min(1.0, capacity_mw * per_mw / aoi_area_ha) if aoi_area_ha > 0 else 0.0
        factors["footprint_ha_per_mw"] = FactorUsed(value=per_mw, unit="ha/MW", source=tech["footprint_source"])
        factors["footprint_share"] = FactorUsed(
            value=round(share, 6), unit="fraction of AOI",
            source=f"capacity {capacity_mw:g} MW x {per_mw:g} ha/MW / AOI {aoi_area_ha:.2f} ha (at most 1)",
        )
    loss_table = {int(k): float(v) for k, v in data["carbon_loss_tco2e_per_ha"].items() if k != "source"}
    # Keys arrive as ints from RunParams, as strings after a JSON round trip through the job queue.
    loss_over = {int(k): float(v) for k, v in over.get("carbon_loss_tco2e_per_ha", {}).items()}
    coverage = land_cover.coverage_ratio
    covered_ha = land_cover.covered_ha or 0.0
    # Extrapolation (see the module docstring): each covered class stands for its share of the covered
    # land, so the footprint's class mix is taken over the covered part and applied to the whole footprint.
    scale = (aoi_area_ha / covered_ha) if covered_ha > 0 else 0.0
    lines: list[LandUseChangeLine] = []
    for cls in land_cover.aoi.classes:
        if cls.code is None or cls.group == "unclassified":
            continue
        footprint = cls.area_ha * scale * share
        if cls.code in loss_over:
            factor = loss_over[cls.code]
        elif cls.code in loss_table:
            factor = loss_table[cls.code]
        else:
            factor = 0.0
            notes.append(f"no carbon-loss factor for class {cls.code} ({cls.label}); counted as 0")
        lines.append(
            LandUseChangeLine(
                code=cls.code, label=corine.label(cls.code), footprint_ha=round(footprint, 4),
                carbon_loss_tco2e_per_ha=factor, land_use_change_tco2e=round(footprint * factor, 3),
            )
        )
    if coverage < 1.0:
        if covered_ha > 0:
            notes.append(
                f"land-cover data cover {coverage:.2%} of the AOI: the land-use change is extrapolated to the "
                "whole footprint from the class mix of the covered part (the uncovered land is assumed alike)"
            )
        else:
            notes.append("no part of the AOI has land-cover data: the land-use change cannot be estimated and "
                         "counts as 0")

    construction = capacity_mw * construction_f
    luc = sum(line.land_use_change_tco2e for line in lines)
    # The project's footprint, whatever the land-cover data cover (the lines spread it over the classes).
    footprint_ha = share * aoi_area_ha
    lines_ha = sum(line.footprint_ha for line in lines)
    factors["carbon_loss_tco2e_per_ha"] = FactorUsed(
        value=round(luc / lines_ha, 3) if lines_ha > 0 else 0.0,
        unit="tCO2e/ha, footprint-weighted mean of the class factors (see land_use_change_by_class)",
        source=data["carbon_loss_tco2e_per_ha"]["source"]
        + ("; some classes overridden by the run configuration" if loss_over else ""),
        overridden=bool(loss_over),
    )
    operation = capacity_mw * operation_f
    generation = capacity_mw * capacity_factor * HOURS_PER_YEAR
    avoided = generation * grid
    lifetime_emissions = construction + luc + operation * lifetime
    lifetime_avoided = avoided * lifetime
    payback: float | None = None
    payback_reason = None
    if avoided - operation > 0:
        payback = (construction + luc) / (avoided - operation)
        if payback > lifetime:
            payback_reason = f"payback ({payback:.1f} years) is longer than the lifetime ({lifetime:g} years)"
    else:
        payback_reason = "the project avoids no more than it emits each year, so it never pays back its carbon"
    return Emissions(
        technology=params.project_type,
        capacity_mw=round(capacity_mw, 4),
        lifetime_years=lifetime,
        construction_tco2e=round(construction, 3),
        land_use_change_tco2e=round(luc, 3),
        footprint_ha=round(footprint_ha, 4),
        land_use_change_by_class=sorted(lines, key=lambda line: -line.land_use_change_tco2e),
        land_use_change_coverage_ratio=round(coverage, 6),
        operation_tco2e_per_year=round(operation, 3),
        capacity_factor=capacity_factor,
        annual_generation_mwh=round(generation, 3),
        grid_factor_tco2e_per_mwh=grid,
        avoided_tco2e_per_year=round(avoided, 3),
        lifetime_emissions_tco2e=round(lifetime_emissions, 3),
        lifetime_avoided_tco2e=round(lifetime_avoided, 3),
        net_balance_tco2e=round(lifetime_emissions - lifetime_avoided, 3),
        payback_years=round(payback, 3) if payback is not None else None,
        payback_reason=payback_reason,
        factors=factors,
        notes=notes,
    )


def _basis_note(basis: str, country: str | None) -> str:
    if basis == country:
        return f" ({basis} value)"
    label = "EU-27 average" if basis == "EU27" else "world average"
    return f" ({label}; no value for {country or 'an unknown country'})"
