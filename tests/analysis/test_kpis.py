"""KPIs: the reference set with units and definitions; coefficients file; landscape metrics known answers."""

from __future__ import annotations

import math
from pathlib import Path

import geokit
import numpy as np
import pytest
from geokit import X0, Y0
from shapely.geometry import box

from aethera.analysis import kpis, landscape
from aethera.analysis.emissions import compute as compute_emissions
from aethera.analysis.land_cover import summarize
from aethera.analysis.params import RunParams
from aethera.analysis.results import ReceptorDistances, Terrain
from aethera.data import corine


def test_coefficients_cover_every_class_and_cite_sources() -> None:
    data = kpis.load_coefficients()
    assert set(data["classes"]) == set(corine.CLASSES)
    for code, row in data["classes"].items():
        assert {"seq", "esv", "imperv"} <= set(row), code
        assert ("runoff" in row) == ("c" in row) == (code < 500), code  # water surfaces have neither
        assert 0 <= row.get("c", 0) <= 1 and 0 <= row["imperv"] <= 1
    assert set(data["sources"]) == {"seq", "esv", "runoff", "c", "imperv"}
    assert all(len(v) > 40 for v in data["sources"].values())


def _grid_case(tmp_path: Path) -> tuple[object, object]:
    # 1 km x 1 km AOI on 100 m pixels: west half forest (312), east half arable (211), with one 2 x 2 lake
    # (512) inside the forest.
    codes = np.full((50, 50), 211, dtype="uint16")
    codes[:, :15] = 312
    codes[13:15, 12:14] = 512
    geokit.write_raster(tmp_path / "lc.tif", codes)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    aoi = geokit.aoi_3035(box(X0 + 1000, Y0 - 2000, X0 + 2000, Y0 - 1000))
    return aoi, cat


def test_landscape_metrics_known_answers(tmp_path: Path) -> None:
    aoi, cat = _grid_case(tmp_path)
    grid = landscape.class_grid(aoi, cat)
    m = landscape.metrics(grid, aoi.area_m2)
    assert m.cells == 100
    assert m.patch_count == 3  # forest, arable, lake
    assert m.patch_density_per_100ha == pytest.approx(3.0)
    # edges: forest|arable boundary 1 km; lake perimeter 4 x 200 m = 800 m -> 1,800 m over 100 ha
    assert m.edge_density_m_per_ha == pytest.approx(18.0, rel=1e-3)
    # natural habitat: the forest (46 cells) and the lake (4 cells) touch: one 8-connected patch of 50 ha
    assert m.natural_area_ha == pytest.approx(50.0, rel=1e-3)
    assert m.natural_patch_count == 1
    assert m.effective_mesh_size_ha == pytest.approx(50.0**2 / 100.0, rel=2e-3)
    assert m.largest_natural_patch_share == pytest.approx(1.0)


def test_kpis_reference_set(tmp_path: Path) -> None:
    aoi, cat = _grid_case(tmp_path)
    lc = summarize(aoi, cat, buffer_km=0.0)
    params = RunParams.from_request("solar", "DEU", {"capacity_mw": 10}, None)
    em = compute_emissions(lc, params, capacity_mw=10.0, aoi_area_ha=aoi.area_ha, in_europe=True)
    rec = ReceptorDistances(
        nearest_protected_area=None,
        nearest_settlement=None,
        nearest_water_body=None,
        counts=[],
        population_within_1km=250,
    )
    terrain = Terrain(available=True, reason=None, mean_slope_deg=5.0)
    grid = landscape.class_grid(aoi, cat)
    k = kpis.compute(
        land_cover=lc,
        emissions=em,
        receptors=rec,
        terrain=terrain,
        landscape=landscape.metrics(grid, aoi.area_m2),
        aoi_area_ha=aoi.area_ha,
        construction_months=9,
    )
    areas = {c.code: c.area_ha for c in lc.aoi.classes}
    assert areas == {211: pytest.approx(50.0), 312: pytest.approx(46.0), 512: pytest.approx(4.0)}
    coef = kpis.load_coefficients()["classes"]
    assert k["carbon_sequestration_potential"].value == pytest.approx(46 * coef[312]["seq"])
    assert k["ecosystem_service_value"].value == pytest.approx(50 * 5567 + 46 * 3137 + 4 * 12512)
    assert k["natural_habitat_ratio"].value == pytest.approx(0.5)  # a fraction 0..1 like every ratio
    assert k["natural_habitat_ratio"].unit == "fraction (0-1)" and k["natural_habitat_ratio"].coverage_ratio == 1.0
    assert k["impervious_surface_ratio"].value == 0.0
    runoff = (50 * coef[211]["runoff"] + 46 * coef[312]["runoff"]) / 96
    assert k["water_regulation"].value == pytest.approx(1 - runoff, abs=1e-4)
    c = (50 * coef[211]["c"] + 46 * coef[312]["c"]) / 96
    s = 10.8 * math.sin(math.radians(5.0)) + 0.03
    assert k["soil_erosion_risk"].value == pytest.approx(c * s, rel=1e-3)
    p = [0.5, 0.46, 0.04]
    assert k["shannon_diversity"].value == pytest.approx(-sum(x * math.log(x) for x in p), rel=1e-4)
    gen = 10 * 0.11 * 8760
    assert k["land_use_efficiency"].value == pytest.approx(gen / 100, rel=1e-4)
    assert k["ghg_intensity"].value == pytest.approx(em.lifetime_emissions_tco2e / (gen * 30) * 1000, rel=1e-4)
    assert k["air_quality_impact"].value == 250
    assert k["particulate_potential"].value == pytest.approx(em.footprint_ha * 2.69 * 9, rel=1e-4)
    assert k["resource_efficiency"].value == pytest.approx(gen * 30 / em.construction_tco2e, rel=1e-4)
    assert k["renewable_share"].value == 1.0
    assert k["patch_density"].value == pytest.approx(3.0) and k["connectivity"].value == pytest.approx(1.0)
    for name, kpi in k.items():
        assert kpi.unit and kpi.definition, name
        assert kpi.unit != "%", f"{name}: ratios are fractions 0..1 in data, % only in text"


def test_vector_land_cover_grid(tmp_path: Path) -> None:
    west = box(X0, Y0 - 5000, X0 + 1500, Y0)
    east = box(X0 + 1500, Y0 - 5000, X0 + 5000, Y0)
    geokit.write_vector(tmp_path / "clc.gpkg", "clc", [west, east], CODE_18=["311", "211"])
    cat = geokit.catalog(tmp_path, land_cover={"path": "clc.gpkg", "layer": "clc", "code_column": "CODE_18"})
    aoi = geokit.aoi_3035(box(X0 + 1000, Y0 - 2000, X0 + 2000, Y0 - 1000))
    m = landscape.metrics(landscape.class_grid(aoi, cat), aoi.area_m2)
    assert m.patch_count == 2
    assert m.edge_density_m_per_ha == pytest.approx(10.0, rel=0.02)
    assert m.natural_area_ha == pytest.approx(50.0, rel=0.02)
    assert "rasterised" in m.note


def test_kpis_over_a_coverage_gap(tmp_path: Path) -> None:
    # The same grid with the AOI's west half (the forest and the lake) on no-data cells: ratios are over
    # the covered arable half, sums are extrapolated from it, and each says so with its coverage.
    codes = np.full((50, 50), 211, dtype="uint16")
    codes[:, :15] = 0
    geokit.write_raster(tmp_path / "lc.tif", codes, nodata=0)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    aoi = geokit.aoi_3035(box(X0 + 1000, Y0 - 2000, X0 + 2000, Y0 - 1000))
    lc = summarize(aoi, cat, buffer_km=0.0)
    assert lc.coverage_ratio == pytest.approx(0.5) and lc.ratios["agricultural"] == pytest.approx(1.0)
    params = RunParams.from_request("solar", "DEU", {"capacity_mw": 10}, None)
    em = compute_emissions(lc, params, capacity_mw=10.0, aoi_area_ha=aoi.area_ha, in_europe=True)
    rec = ReceptorDistances(nearest_protected_area=None, nearest_settlement=None, nearest_water_body=None, counts=[])
    k = kpis.compute(
        land_cover=lc,
        emissions=em,
        receptors=rec,
        terrain=Terrain(available=False, reason="none"),
        landscape=None,
        aoi_area_ha=aoi.area_ha,
        construction_months=9,
    )
    assert k["natural_habitat_ratio"].value == 0.0 and k["natural_habitat_ratio"].coverage_ratio == pytest.approx(0.5)
    assert "50.00% of the AOI" in (k["natural_habitat_ratio"].reason or "")
    assert k["ecosystem_service_value"].value == pytest.approx(100 * 5567, rel=1e-4)  # 50 ha of arable, x 100/50
    assert "extrapolated" in (k["ecosystem_service_value"].reason or "")
