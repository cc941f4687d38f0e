"""Emissions with hand-computed answers; factor file completeness and sources; per-run overrides."""

from __future__ import annotations

from typing import Any

import pytest

from aethera.analysis.emissions import compute, load_factors
from aethera.analysis.params import RunParams
from aethera.analysis.results import LandCover, LandCoverClass, LandCoverZone
from aethera.data import corine
from aethera.data.countries import EU27


def _land_cover(classes: list[tuple[int | None, float]], area: float) -> LandCover:
    lines = [
        LandCoverClass(
            code=c, label=corine.label(c) if c else "No data", group="g", group_label="g", area_ha=a, share=a / area
        )
        for c, a in classes
    ]
    nodata = sum(a for c, a in classes if c is None)
    zone = LandCoverZone(
        zone="aoi",
        area_ha=area,
        classified_ha=area - nodata,
        nodata_ha=nodata,
        outside_layer_ha=0.0,
        classes=lines,
        groups=[],
    )
    return LandCover(source="raster", layer="x.tif", method="m", resolution_m=100.0, aoi=zone, buffer=None, buffer_km=0)


def _params(ptype: str = "solar", country: str | None = "DEU", config: dict[str, Any] | None = None) -> RunParams:
    return RunParams.from_request(ptype, country, config, None)


def test_solar_known_answer() -> None:
    # 100 ha: 60 arable (0 t/ha), 40 coniferous forest (260 t/ha); 10 MW at 1.6 ha/MW -> footprint share 0.16.
    # Germany, first operating year 2030: the grid trajectory runs straight from 0.14 (2030) to 0 (2045).
    lc = _land_cover([(211, 60.0), (312, 40.0)], 100.0)
    e = compute(
        lc,
        _params(config={"emission_factors": {"first_operating_year": 2030}}),
        capacity_mw=10.0,
        aoi_area_ha=100.0,
        in_europe=True,
    )
    assert e.construction_tco2e == pytest.approx(10 * 1770)
    assert e.footprint_ha == pytest.approx(16.0)
    assert e.land_use_change_tco2e == pytest.approx(40 * 0.16 * 260)  # footprint only: 6.4 ha of forest
    assert e.operation_tco2e_per_year == 0.0
    assert e.capacity_factor == 0.11 and e.grid_factor_tco2e_per_mwh == 0.38  # DEU, data year 2022
    gen = 10 * 0.11 * 8760
    assert e.annual_generation_mwh == pytest.approx(gen)
    # sum over 2030..2059 of 0.14 x (2045 - y) / 15, then 0: 0.14 / 15 x (15 + 14 + ... + 0) = 0.14 x 8 = 1.12
    assert e.lifetime_avoided_tco2e == pytest.approx(gen * 1.12, rel=1e-6)
    assert e.avoided_tco2e_per_year == pytest.approx(gen * 1.12 / 30, rel=1e-6)
    assert e.avoided_first_year_tco2e == pytest.approx(gen * 0.14, rel=1e-6)
    assert [y.year for y in e.avoided_by_year] == list(range(2030, 2060))
    # lost sequestration: 6.4 ha of continental forest x 2.0 tCO2/ha/year, every year of the 30
    assert e.lost_sequestration_tco2e_per_year == pytest.approx(6.4 * 2.0)
    assert e.lifetime_lost_sequestration_tco2e == pytest.approx(6.4 * 2.0 * 30)
    emitted = 17700 + 1664 + 6.4 * 2.0 * 30
    assert e.lifetime_emissions_tco2e == pytest.approx(emitted)
    assert e.net_balance_tco2e == pytest.approx(emitted - gen * 1.12, rel=1e-6)
    # 19,364 t to repay; yearly benefits gen x g(y) - 12.8 sum to less than that over the lifetime and
    # are negative by its end: no payback
    assert e.payback_years is None and "does not repay" in e.payback_reason
    assert not any(f.overridden for name, f in e.factors.items() if name != "first_operating_year")
    assert "IPCC" in e.factors["construction_tco2e_per_mw"].source
    assert "EEG 2023" in e.grid_trajectory_source and e.biome == "continental"


def test_wind_footprint_is_small() -> None:
    lc = _land_cover([(312, 1000.0)], 1000.0)
    e = compute(lc, _params("wind", "ESP"), capacity_mw=30.0, aoi_area_ha=1000.0, in_europe=True)
    assert e.footprint_ha == pytest.approx(9.0)  # 0.3 ha/MW
    assert e.land_use_change_tco2e == pytest.approx(9.0 * 260)
    assert e.capacity_factor == 0.24 and e.grid_factor_tco2e_per_mwh == 0.16 and e.lifetime_years == 25


def test_footprint_never_exceeds_the_aoi() -> None:
    lc = _land_cover([(211, 10.0)], 10.0)
    e = compute(lc, _params(), capacity_mw=100.0, aoi_area_ha=10.0, in_europe=True)
    assert e.footprint_ha == pytest.approx(10.0) and e.factors["footprint_share"].value == 1.0


def test_country_fallbacks_are_named() -> None:
    lc = _land_cover([(211, 10.0)], 10.0)
    eu = compute(lc, _params(country=None), capacity_mw=1.0, aoi_area_ha=10.0, in_europe=True)
    assert eu.grid_factor_tco2e_per_mwh == 0.25 and "EU-27 average" in eu.factors["grid_tco2e_per_mwh"].source
    world = compute(lc, _params(country="BRA"), capacity_mw=1.0, aoi_area_ha=10.0, in_europe=False)
    assert world.grid_factor_tco2e_per_mwh == 0.46 and "no value for BRA" in world.factors["grid_tco2e_per_mwh"].source
    assert any("BRA" in n for n in world.notes)


def test_overrides_are_used_and_marked() -> None:
    lc = _land_cover([(312, 50.0), (211, 50.0)], 100.0)
    p = _params(
        config={
            "lifetime_years": 20,
            "emission_factors": {
                "grid_tco2e_per_mwh": 0.5,
                "capacity_factor": 0.2,
                "construction_tco2e_per_mw": 1000,
                "operation_tco2e_per_mw_year": 2,
                "footprint_share": 0.5,
                "carbon_loss_tco2e_per_ha": {"312": 100},
            },
        }
    )
    e = compute(lc, p, capacity_mw=10.0, aoi_area_ha=100.0, in_europe=True)
    assert e.construction_tco2e == 10_000 and e.operation_tco2e_per_year == 20 and e.lifetime_years == 20
    assert e.land_use_change_tco2e == pytest.approx(25 * 100)
    assert e.avoided_tco2e_per_year == pytest.approx(10 * 0.2 * 8760 * 0.5)
    for name in (
        "grid_tco2e_per_mwh",
        "capacity_factor",
        "construction_tco2e_per_mw",
        "footprint_share",
        "operation_tco2e_per_mw_year",
        "lifetime_years",
        "carbon_loss_tco2e_per_ha",
    ):
        assert e.factors[name].overridden, name


def test_never_pays_back() -> None:
    lc = _land_cover([(211, 10.0)], 10.0)
    p = _params(config={"emission_factors": {"grid_tco2e_per_mwh": 0.0}})
    e = compute(lc, p, capacity_mw=1.0, aoi_area_ha=10.0, in_europe=True)
    assert e.payback_years is None and "does not repay" in e.payback_reason
    assert e.net_balance_tco2e == pytest.approx(e.lifetime_emissions_tco2e)


def test_factor_file_is_complete_and_sourced() -> None:
    data = load_factors()
    assert set(data["carbon_loss_tco2e_per_ha"]) - {"source"} == {str(c) for c in corine.CLASSES}
    for tech in ("solar", "wind"):
        t = data["technology"][tech]
        for key in ("construction_source", "operation_source", "footprint_source"):
            assert t[key]
        for country in EU27:
            # Malta has no onshore wind fleet to derive a factor from: it falls back to EU27 (named in results)
            assert country in data["capacity_factor"][tech] or (tech, country) == ("wind", "MLT"), (tech, country)
    for country in EU27:
        assert country in data["grid_tco2e_per_mwh"]
    assert data["grid_tco2e_per_mwh"]["source"] and data["capacity_factor"]["source"]
    assert data["carbon_loss_tco2e_per_ha"]["source"]


def test_land_use_change_is_extrapolated_over_a_coverage_gap() -> None:
    # 100 ha AOI, half of it no data, the covered half all coniferous forest: the 16 ha footprint is the
    # whole project's, so it is spread over the covered mix (all forest), not cut to the covered half.
    lc = _land_cover([(312, 50.0), (None, 50.0)], 100.0)
    assert lc.coverage_ratio == pytest.approx(0.5) and lc.covered_ha == pytest.approx(50.0)
    e = compute(lc, _params(), capacity_mw=10.0, aoi_area_ha=100.0, in_europe=True)
    assert e.footprint_ha == pytest.approx(16.0)
    assert e.land_use_change_tco2e == pytest.approx(16.0 * 260)  # the old code counted 8 ha
    assert e.land_use_change_coverage_ratio == pytest.approx(0.5)
    assert any("50.00% of the AOI" in n and "extrapolated" in n for n in e.notes)
