"""Emissions on a grid decarbonisation trajectory, lost sequestration in the payback, biome-aware carbon
defaults. Expected figures are worked out by hand here (arithmetic series), not read back from the module."""

from __future__ import annotations

from typing import Any

import pytest

from aethera.analysis import biome
from aethera.analysis.emissions import Site, carbon_payback, compute, load_factors, load_trajectories
from aethera.analysis.params import RunParams
from aethera.analysis.results import LandCover, LandCoverClass, LandCoverZone
from aethera.data import corine
from aethera.data.countries import EU27
from aethera.errors import InvalidInput


def _land_cover(classes: list[tuple[int, float]]) -> LandCover:
    area = sum(a for _, a in classes)
    lines = [
        LandCoverClass(code=c, label=corine.label(c), group="g", group_label="g", area_ha=a, share=a / area)
        for c, a in classes
    ]
    zone = LandCoverZone(
        zone="aoi", area_ha=area, classified_ha=area, nodata_ha=0.0, outside_layer_ha=0.0, classes=lines, groups=[]
    )
    return LandCover(source="raster", layer="x.tif", method="m", resolution_m=100.0, aoi=zone, buffer=None, buffer_km=0)


def _params(ptype: str, country: str | None, **factors: Any) -> RunParams:
    return RunParams.from_request(ptype, country, {"emission_factors": factors} if factors else None, None)


# --- the trajectory ------------------------------------------------------------------------------


def test_spanish_trajectory_sums_year_by_year() -> None:
    # Spain: 0.16 (2022) -> 0.05 (2030) -> 0 (2050). From 2031, 20 years: 0.05 x (2050 - y) / 20.
    lc = _land_cover([(211, 100.0)])
    e = compute(
        lc, _params("solar", "ESP", first_operating_year=2031), capacity_mw=10.0, aoi_area_ha=100.0, in_europe=True
    )
    gen = 10 * 0.19 * 8760
    # y = 2031..2049: 0.05/20 x (19 + 18 + ... + 1) = 0.0025 x 190 = 0.475; 2050..2060: 0
    assert e.lifetime_avoided_tco2e == pytest.approx(gen * 0.475, rel=1e-6)
    assert sum(y.avoided_tco2e for y in e.avoided_by_year) == pytest.approx(gen * 0.475, rel=1e-5)
    assert e.avoided_by_year[0].grid_tco2e_per_mwh == pytest.approx(0.0475)
    assert e.avoided_by_year[-1].year == 2060 and e.avoided_by_year[-1].avoided_tco2e == 0.0
    # the 2022 factor held flat for 30 years, as before the fix, claims 10 times as much
    assert gen * 0.16 * 30 / e.lifetime_avoided_tco2e == pytest.approx(0.16 * 30 / 0.475)


def test_partial_last_year_and_interpolation_between_points() -> None:
    # Spain from 2022, 2.5 years: 0.16 + (0.16 - 0.11/8) + 0.5 x (0.16 - 2 x 0.11/8)
    lc = _land_cover([(211, 10.0)])
    p = RunParams.from_request(
        "solar", "ESP", {"lifetime_years": 2.5, "emission_factors": {"first_operating_year": 2022}}
    )
    e = compute(lc, p, capacity_mw=1.0, aoi_area_ha=10.0, in_europe=True)
    gen = 0.19 * 8760
    step = 0.11 / 8
    expected = gen * (0.16 + (0.16 - step) + 0.5 * (0.16 - 2 * step))
    assert e.lifetime_avoided_tco2e == pytest.approx(expected, rel=1e-6)
    assert [(y.year, y.share) for y in e.avoided_by_year] == [(2022, 1.0), (2023, 1.0), (2024, 0.5)]


def test_eu_country_without_its_own_trajectory_follows_the_scaled_eu_path() -> None:
    # Poland: 0.66 in 2022; the EU-27 path falls from 0.25 to 0.13 by 2030, so Poland's to 0.66 x 0.13 / 0.25
    lc = _land_cover([(211, 10.0)])
    e = compute(
        lc,
        _params(
            "solar",
            "POL",
            first_operating_year=2030,
        ),
        capacity_mw=1.0,
        aoi_area_ha=10.0,
        in_europe=True,
    )
    assert e.avoided_by_year[0].grid_tco2e_per_mwh == pytest.approx(0.66 * 0.13 / 0.25, abs=1e-5)
    assert any("EU-27 path scaled" in n for n in e.notes)


def test_country_outside_the_eu_keeps_its_factor_flat_and_says_so() -> None:
    lc = _land_cover([(211, 10.0)])
    e = compute(
        lc, _params("solar", "BRA", first_operating_year=2030), capacity_mw=1.0, aoi_area_ha=10.0, in_europe=False
    )
    assert {y.grid_tco2e_per_mwh for y in e.avoided_by_year} == {0.46}
    assert any("held flat" in n and "overstates" in n for n in e.notes)


def test_overridden_grid_factor_is_held_flat() -> None:
    lc = _land_cover([(211, 10.0)])
    e = compute(lc, _params("wind", "DEU", grid_tco2e_per_mwh=0.3), capacity_mw=2.0, aoi_area_ha=10.0, in_europe=True)
    assert e.lifetime_avoided_tco2e == pytest.approx(2 * 0.21 * 8760 * 0.3 * 25)
    assert e.factors["grid_trajectory"].overridden


def test_trajectory_file_starts_at_the_factor_file_and_cites_sources() -> None:
    grid = load_factors()["grid_tco2e_per_mwh"]
    for key, t in load_trajectories()["trajectory"].items():
        assert key == "EU27" or key in EU27
        first_year, first_value = t["points"][0]
        assert first_year == 2022 and first_value == grid[key], key  # the EEA data-year value
        assert t["points"][-1][1] == 0.0 and "Screening values" in t["source"]
        values = [v for _, v in t["points"]]
        assert values == sorted(values, reverse=True), key  # decarbonising, never rising
    for country in ("ESP", "DEU", "FRA", "ITA", "GRC"):  # every country with a national rule pack
        assert country in load_trajectories()["trajectory"]


def test_first_operating_year_must_be_a_plausible_whole_year() -> None:
    for bad in (1999, 2101, 2030.5):
        with pytest.raises(InvalidInput, match="first_operating_year"):
            _params("solar", "ESP", first_operating_year=bad)


# --- payback with lost sequestration ---------------------------------------------------------------


def test_payback_counts_the_lost_uptake_of_the_cleared_land() -> None:
    # flat grid 0.4 (override): 1 MW solar in Spain (cf 0.19) on coniferous forest in Mediterranean
    # Spain: forest loss 130 t/ha and uptake 1.5 t/ha/year on the 1.6 ha footprint
    lc = _land_cover([(312, 10.0)])
    site = Site(lon=-3.46, lat=36.95, country="ESP", mean_elevation_m=900.0)
    e = compute(
        lc,
        _params("solar", "ESP", grid_tco2e_per_mwh=0.4),
        capacity_mw=1.0,
        aoi_area_ha=10.0,
        in_europe=True,
        site=site,
    )
    footprint = 1.6  # ha
    assert e.biome == "mediterranean" and "Mediterranean" in e.biome_reason
    assert e.land_use_change_tco2e == pytest.approx(footprint * 130)
    assert e.lost_sequestration_tco2e_per_year == pytest.approx(footprint * 1.5)
    debt = 1770 + footprint * 130
    benefit = 0.19 * 8760 * 0.4 - footprint * 1.5
    assert e.payback_years == pytest.approx(debt / benefit, abs=1e-3)
    without_uptake = debt / (0.19 * 8760 * 0.4)
    assert e.payback_years > without_uptake
    assert e.net_balance_tco2e == pytest.approx(debt + footprint * 1.5 * 30 - 0.19 * 8760 * 0.4 * 30, rel=1e-6)


def test_payback_inside_a_year_and_beyond_the_lifetime() -> None:
    assert carbon_payback(150.0, [(1.0, 100.0), (1.0, 100.0), (1.0, 100.0)], 3) == (1.5, None)
    years, reason = carbon_payback(500.0, [(1.0, 100.0), (1.0, 100.0), (0.5, 100.0)], 2.5)
    assert years == pytest.approx(5.0) and "longer than the lifetime" in reason
    assert carbon_payback(500.0, [(1.0, 100.0), (1.0, -5.0)], 2)[0] is None
    assert carbon_payback(0.0, [(1.0, 10.0)], 1) == (0.0, None)


# --- biomes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lon", "lat", "country", "elevation", "expected"),
    [
        (-3.46, 36.95, "ESP", 900.0, "mediterranean"),  # Lanjarón
        (-3.46, 36.95, "ESP", 2100.0, "alpine"),  # Sierra Nevada summits
        (-3.46, 36.95, "ESP", None, "mediterranean"),  # no elevation layer: the alpine rule cannot apply
        (-8.41, 43.36, "ESP", 100.0, "atlantic"),  # A Coruña
        (-5.85, 43.36, "ESP", 250.0, "atlantic"),  # Oviedo
        (0.88, 41.62, "ESP", 200.0, "mediterranean"),  # Lleida
        (-8.61, 41.15, "PRT", 80.0, "atlantic"),  # Porto
        (-7.93, 37.02, "PRT", 20.0, "mediterranean"),  # Faro
        (5.37, 43.30, "FRA", 50.0, "mediterranean"),  # Marseille
        (-1.68, 48.11, "FRA", 40.0, "atlantic"),  # Rennes
        (4.84, 45.76, "FRA", 200.0, "continental"),  # Lyon
        (13.40, 52.52, "DEU", 40.0, "continental"),  # Berlin
        (8.80, 53.08, "DEU", 10.0, "atlantic"),  # Bremen
        (11.08, 47.49, "DEU", 1700.0, "alpine"),  # Wetterstein
        (12.50, 41.90, "ITA", 30.0, "mediterranean"),  # Rome
        (9.19, 45.46, "ITA", 120.0, "continental"),  # Milan
        (23.73, 37.98, "GRC", 100.0, "mediterranean"),  # Athens
        (24.94, 60.17, "FIN", 20.0, "boreal"),  # Helsinki
        (18.07, 59.33, "SWE", 20.0, "boreal"),  # Stockholm
        (8.0, 61.6, "NOR", 1200.0, "alpine"),  # Jotunheimen
        (-6.26, 53.35, "IRL", 20.0, "atlantic"),  # Dublin
        (21.01, 52.23, "POL", 100.0, "continental"),  # Warsaw
    ],
)
def test_biome_rule(lon: float, lat: float, country: str, elevation: float | None, expected: str) -> None:
    choice = biome.choose(lon, lat, country, elevation)
    assert choice.biome == expected
    assert choice.reason
    if elevation is None:
        assert "no elevation layer" in choice.reason


def test_biome_sets_the_forest_carbon_and_is_reported() -> None:
    lc = _land_cover([(311, 5.0), (324, 5.0)])
    factors = load_factors()["biome"]
    for name, (lon, lat, country, z) in {
        "atlantic": (-6.26, 53.35, "IRL", 20.0),
        "boreal": (24.94, 60.17, "FIN", 20.0),
        "mediterranean": (23.73, 37.98, "GRC", 100.0),
    }.items():
        e = compute(
            lc,
            _params("solar", country, footprint_share=1.0),
            capacity_mw=1.0,
            aoi_area_ha=10.0,
            in_europe=True,
            site=Site(lon=lon, lat=lat, country=country, mean_elevation_m=z),
        )
        loss = factors[name]["forest_carbon_loss_tco2e_per_ha"]
        uptake = factors[name]["forest_uptake_tco2e_per_ha_year"]
        assert e.biome == name
        assert e.land_use_change_tco2e == pytest.approx(5 * loss + 5 * loss / 2)  # 324 counts half
        assert e.lost_sequestration_tco2e_per_year == pytest.approx(5 * uptake + 5 * uptake / 2)
        assert name in e.factors["forest_carbon_loss_tco2e_per_ha"].source.lower()
    # the Mediterranean forest holds less carbon than the Atlantic one, the boreal least
    assert (
        factors["boreal"]["forest_carbon_loss_tco2e_per_ha"]
        < factors["mediterranean"]["forest_carbon_loss_tco2e_per_ha"]
        < factors["continental"]["forest_carbon_loss_tco2e_per_ha"]
        < factors["atlantic"]["forest_carbon_loss_tco2e_per_ha"]
    )


def test_a_run_override_of_a_class_factor_still_wins_over_the_biome() -> None:
    lc = _land_cover([(312, 10.0)])
    p = RunParams.from_request(
        "solar", "GRC", {"emission_factors": {"footprint_share": 1.0, "carbon_loss_tco2e_per_ha": {"312": 50}}}
    )
    e = compute(
        lc,
        p,
        capacity_mw=1.0,
        aoi_area_ha=10.0,
        in_europe=True,
        site=Site(lon=23.73, lat=37.98, country="GRC", mean_elevation_m=100.0),
    )
    assert e.land_use_change_tco2e == pytest.approx(500.0)


def test_a_run_on_real_data_reports_its_biome(lanjaron_raster) -> None:  # type: ignore[no-untyped-def]
    from shapely.geometry import box

    from aethera.analysis import pipeline
    from aethera.analysis.aoi import load_aoi

    # a 1 km square in the valley below Lanjarón (ETRS89 / UTM 30N), with the elevation layer
    aoi = load_aoi(box(455_500, 4_083_500, 456_500, 4_084_500).wkt, crs="EPSG:25830")
    params = RunParams.from_request("solar", "ESP", {"buffer_km": 0}, None)
    out = pipeline.run(aoi, params, lanjaron_raster, lambda *a: None, lambda: False)
    e, t = out.results.emissions, out.results.terrain
    assert t.mean_elevation_m is not None and t.mean_elevation_m < 1500
    assert e.biome == "mediterranean" and f"mean elevation {t.mean_elevation_m:.0f} m" in e.biome_reason
    assert e.factors["forest_carbon_loss_tco2e_per_ha"].value == 130
    assert e.avoided_by_year and "PNIEC" in e.grid_trajectory_source
