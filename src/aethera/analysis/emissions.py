"""Step 5: the project's greenhouse-gas balance, from the factors in `data/emission_factors.toml`.

- construction: capacity x life-cycle (non-operational) factor per MW of the technology
- land-use change: on the project's footprint only. The footprint is capacity x the technology's
  directly altered area per MW (at most the AOI), spread over the AOI's land-cover classes in
  proportion to their areas; each class loses its carbon-loss factor per hectare. Forest classes take
  the factor of the AOI's biome (`biome.py`: Mediterranean, Atlantic, continental, boreal, alpine).
  Coverage rule: the footprint is the whole project's, so when land-cover data cover only part of the
  AOI the footprint is spread over the *covered* classes' proportions (extrapolated: the uncovered part
  is assumed to hold the same mix), and `land_use_change_coverage_ratio` and a note say on how much land
  that rests
- lost sequestration per year: the footprint's classes x their annual uptake (biome-dependent for
  forests): the sink the cleared land no longer provides, every year of operation
- operation per year: capacity x direct operational factor
- avoided: capacity x capacity factor (country, technology) x 8,760 h x the grid factor of each
  operating year, on the country's grid decarbonisation trajectory (`data/grid_trajectory.toml`),
  summed over the lifetime from the first operating year
- net balance over the lifetime: (construction + land-use change + (operation + lost sequestration) x
  lifetime) - avoided; negative means the project saves more than it emits
- carbon payback: the time until the yearly net benefit (avoided - operation - lost sequestration),
  accumulated year by year on the trajectory, repays construction + land-use change; null with a
  reason when it never does

A run may override any factor (`config.emission_factors`); the output lists every factor used, its
source and whether it was overridden.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from aethera.analysis import biome as biome_rule
from aethera.analysis.params import RunParams
from aethera.analysis.results import AvoidedYear, Emissions, FactorUsed, LandCover, LandUseChangeLine
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


@lru_cache(maxsize=1)
def load_trajectories() -> dict[str, Any]:
    """The grid decarbonisation trajectories, parsed and checked once."""
    text = resources.files("aethera.analysis").joinpath("data/grid_trajectory.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid_trajectory.toml is invalid: {exc}") from None
    if "EU27" not in data.get("trajectory", {}):
        raise ConfigError("grid_trajectory.toml lacks [trajectory.EU27]")
    for key, t in data["trajectory"].items():
        years = [p[0] for p in t.get("points", [])]
        if not years or years != sorted(set(years)) or not t.get("source"):
            raise ConfigError(
                f"grid_trajectory.toml: trajectory {key} needs ascending [year, factor] points and a source"
            )
    return data


@dataclass(frozen=True)
class Site:
    """Where the AOI lies, for the biome of its carbon factors."""

    lon: float
    lat: float
    country: str | None
    mean_elevation_m: float | None


@dataclass(frozen=True)
class GridPath:
    """A grid factor per year: straight lines between points, flat outside them."""

    points: tuple[tuple[int, float], ...]
    source: str

    def factor(self, year: float) -> float:
        pts = self.points
        if year <= pts[0][0]:
            return pts[0][1]
        for (y0, f0), (y1, f1) in itertools.pairwise(pts):
            if year <= y1:
                return f0 + (f1 - f0) * (year - y0) / (y1 - y0)
        return pts[-1][1]


def grid_path(country: str | None, basis: str, base_factor: float, overridden: bool) -> tuple[GridPath, str | None]:
    """The grid trajectory of `country` and a note when it is not the country's own.

    `basis` is where the data-year factor came from (the country, EU27 or WORLD); `base_factor` that
    factor (possibly the run's override, which is then held flat).
    """
    if overridden:
        return GridPath(((0, base_factor),), "run configuration (held flat over the lifetime)"), None
    trajectories = load_trajectories()["trajectory"]
    if country in trajectories:
        t = trajectories[country]
        return GridPath(tuple((int(y), float(f)) for y, f in t["points"]), t["source"]), None
    if country in EU27 or basis == "EU27":
        eu = trajectories["EU27"]
        eu_base = float(eu["points"][0][1])
        scale = base_factor / eu_base
        points = tuple((int(y), float(f) * scale) for y, f in eu["points"])
        note = (
            f"no grid trajectory for {country or 'an unknown country'}: the EU-27 path scaled to its "
            f"data-year factor ({base_factor:g} tCO2e/MWh)"
        )
        return GridPath(points, f"EU-27 trajectory scaled to the data-year factor; {eu['source']}"), note
    note = (
        f"no grid trajectory for {country or 'an unknown country'} outside the EU: its data-year grid factor "
        f"is held flat, which overstates avoided emissions if its grid decarbonises"
    )
    return GridPath(((0, base_factor),), "data-year factor held flat (no trajectory)"), note


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
    site: Site | None = None,
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
        value=lifetime,
        unit="years",
        source="run configuration" if params.lifetime_years else f"default of {tech['label']}",
        overridden=params.lifetime_years is not None,
    )
    construction_f = use(
        "construction_tco2e_per_mw", tech["construction_tco2e_per_mw"], "tCO2e/MW", tech["construction_source"]
    )
    operation_f = use(
        "operation_tco2e_per_mw_year", tech["operation_tco2e_per_mw_year"], "tCO2e/MW/year", tech["operation_source"]
    )
    cf_value, cf_basis = _by_country(data["capacity_factor"][params.project_type], params.country, in_europe)
    cf_source = data["capacity_factor"]["source"] + _basis_note(cf_basis, params.country)
    capacity_factor = use("capacity_factor", cf_value, "fraction of 8,760 h", cf_source)
    grid_value, grid_basis = _by_country(data["grid_tco2e_per_mwh"], params.country, in_europe)
    grid_source = data["grid_tco2e_per_mwh"]["source"] + _basis_note(grid_basis, params.country)
    grid = use("grid_tco2e_per_mwh", grid_value, "tCO2e/MWh", grid_source)
    path, path_note = grid_path(params.country, grid_basis, grid, "grid_tco2e_per_mwh" in over)
    if path_note:
        notes.append(path_note)
    if "first_operating_year" in over:
        first_year = int(over["first_operating_year"])
        factors["first_operating_year"] = FactorUsed(
            value=float(first_year), unit="year", source="run configuration", overridden=True
        )
    else:
        first_year = datetime.now(UTC).year + 1
        factors["first_operating_year"] = FactorUsed(
            value=float(first_year),
            unit="year",
            source="default: the year after the screening (construction takes 9-12 months)",
        )
    if cf_basis != params.country or grid_basis != params.country:
        notes.append(
            f"no national factor for {params.country or 'an unknown country'}: "
            f"capacity factor from {cf_basis}, grid factor from {grid_basis}"
        )

    # Footprint: the directly altered land, never more than the AOI.
    if "footprint_share" in over:
        share = float(over["footprint_share"])
        factors["footprint_share"] = FactorUsed(
            value=share, unit="fraction of AOI", source="run configuration", overridden=True
        )
    else:
        per_mw = float(tech["footprint_ha_per_mw"])
        share = min(1.0, capacity_mw * per_mw / aoi_area_ha) if aoi_area_ha > 0 else 0.0
        factors["footprint_ha_per_mw"] = FactorUsed(value=per_mw, unit="ha/MW", source=tech["footprint_source"])
        factors["footprint_share"] = FactorUsed(
            value=round(share, 6),
            unit="fraction of AOI",
            source=f"capacity {capacity_mw:g} MW x {per_mw:g} ha/MW / AOI {aoi_area_ha:.2f} ha (at most 1)",
        )
    if site is not None:
        chosen = biome_rule.choose(site.lon, site.lat, site.country, site.mean_elevation_m)
    else:
        chosen = biome_rule.BiomeChoice("continental", "location not given: temperate continental defaults")
    biome = data["biome"][chosen.biome]
    forest_like = {int(k): float(v) for k, v in data["forest_like"].items() if k != "source"}
    loss_table = {int(k): float(v) for k, v in data["carbon_loss_tco2e_per_ha"].items() if k != "source"}
    loss_table.update({code: biome["forest_carbon_loss_tco2e_per_ha"] * f for code, f in forest_like.items()})
    uptake_table = {int(k): float(v) for k, v in data["uptake_tco2e_per_ha_year"].items() if k != "source"}
    uptake_table.update({code: biome["forest_uptake_tco2e_per_ha_year"] * f for code, f in forest_like.items()})
    factors["forest_carbon_loss_tco2e_per_ha"] = FactorUsed(
        value=float(biome["forest_carbon_loss_tco2e_per_ha"]),
        unit="tCO2e/ha (forest classes 31x; 324 half)",
        source=f"{biome['label']} biome ({chosen.reason}); emission_factors.toml [biome.{chosen.biome}]",
    )
    factors["forest_uptake_tco2e_per_ha_year"] = FactorUsed(
        value=float(biome["forest_uptake_tco2e_per_ha_year"]),
        unit="tCO2e/ha/year (forest classes 31x; 324 half)",
        source=f"{biome['label']} biome; emission_factors.toml [biome.{chosen.biome}]",
    )
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
        uptake = uptake_table.get(cls.code, 0.0)
        lines.append(
            LandUseChangeLine(
                code=cls.code,
                label=corine.label(cls.code),
                footprint_ha=round(footprint, 4),
                carbon_loss_tco2e_per_ha=factor,
                land_use_change_tco2e=round(footprint * factor, 3),
                uptake_tco2e_per_ha_year=uptake,
                lost_sequestration_tco2e_per_year=round(footprint * uptake, 4),
            )
        )
    if coverage < 1.0:
        if covered_ha > 0:
            notes.append(
                f"land-cover data cover {coverage:.2%} of the AOI: the land-use change is extrapolated to the "
                "whole footprint from the class mix of the covered part (the uncovered land is assumed alike)"
            )
        else:
            notes.append(
                "no part of the AOI has land-cover data: the land-use change cannot be estimated and counts as 0"
            )

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
    lost_uptake = sum(line.lost_sequestration_tco2e_per_year for line in lines)
    generation = capacity_mw * capacity_factor * HOURS_PER_YEAR
    years = operating_years(first_year, lifetime)
    by_year = [
        AvoidedYear(
            year=y,
            grid_tco2e_per_mwh=round(path.factor(y), 5),
            avoided_tco2e=round(generation * path.factor(y) * share, 3),
            share=share,
        )
        for y, share in years
    ]
    lifetime_avoided = sum(generation * path.factor(y) * share for y, share in years)
    mean_grid = (
        lifetime_avoided / (generation * lifetime) if generation > 0 and lifetime > 0 else path.factor(first_year)
    )
    factors["grid_trajectory"] = FactorUsed(
        value=round(mean_grid, 5),
        unit="tCO2e/MWh, mean over the lifetime from the first operating year",
        source=path.source,
        overridden="grid_tco2e_per_mwh" in over,
    )
    lifetime_lost_uptake = lost_uptake * lifetime
    lifetime_emissions = construction + luc + (operation + lost_uptake) * lifetime
    debt = construction + luc
    payback, payback_reason = carbon_payback(
        debt, [(share, generation * path.factor(y) - operation - lost_uptake) for y, share in years], lifetime
    )
    avoided = lifetime_avoided / lifetime if lifetime > 0 else 0.0
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
        first_operating_year=first_year,
        avoided_first_year_tco2e=by_year[0].avoided_tco2e if by_year else None,
        grid_factor_mean_tco2e_per_mwh=round(mean_grid, 5),
        grid_trajectory_source=path.source,
        avoided_by_year=by_year,
        lost_sequestration_tco2e_per_year=round(lost_uptake, 4),
        lifetime_lost_sequestration_tco2e=round(lifetime_lost_uptake, 3),
        biome=chosen.biome,
        biome_reason=chosen.reason,
    )


def operating_years(first_year: int, lifetime: float) -> list[tuple[int, float]]:
    """(calendar year, share of it operated): whole years, then the fraction of a last one."""
    whole = math.floor(lifetime)
    years = [(first_year + i, 1.0) for i in range(whole)]
    if lifetime - whole > 1e-9:
        years.append((first_year + whole, lifetime - whole))
    return years


def carbon_payback(
    debt: float, benefits: list[tuple[float, float]], lifetime: float
) -> tuple[float | None, str | None]:
    """Years until the accumulated yearly net benefits repay `debt`, and why it is null or late.

    `benefits`: (share of the year operated, net benefit per full year) for each operating year, in
    order. Inside a year the benefit accrues evenly. Past the lifetime the last year's benefit is
    extended only to say how long payback would take; the reason then says it exceeds the lifetime.
    """
    if debt <= 0:
        return 0.0, None
    paid, elapsed = 0.0, 0.0
    for share, per_year in benefits:
        if per_year > 0 and paid + per_year * share >= debt:
            return elapsed + (debt - paid) / per_year, None
        paid += per_year * share
        elapsed += share
    last = benefits[-1][1] if benefits else 0.0
    if last > 0:
        payback = elapsed + (debt - paid) / last
        return payback, f"payback ({payback:.1f} years) is longer than the lifetime ({lifetime:g} years)"
    return None, (
        "the project does not repay its construction and land-use-change emissions within its lifetime, "
        "and by its last year it avoids no more than it emits and the cleared land no longer absorbs"
    )


def _basis_note(basis: str, country: str | None) -> str:
    if basis == country:
        return f" ({basis} value)"
    label = "EU-27 average" if basis == "EU27" else "world average"
    return f" ({label}; no value for {country or 'an unknown country'})"
