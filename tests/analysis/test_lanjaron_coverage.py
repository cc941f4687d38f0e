"""Real data (../shared/data/lanjaron): AOIs partly outside the land-cover data and partly on no-data cells.

The truth is computed here, independently of the service's functions: exactextract called directly on
the real CORINE raster (and geopandas on the real vector layer) over the covered part of each AOI. The
service must report ratios over the covered land, the coverage itself, and pass no rule on the missing
part (issue #12).
"""

from __future__ import annotations

import shutil
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import box, mapping

from aethera.analysis import land_cover, pipeline
from aethera.analysis.aoi import AOI, load_aoi
from aethera.analysis.params import RunParams
from aethera.data.catalog import Catalog, parse_catalog
from aethera.legal import conditions
from aethera.legal.packs import load_pack

UTM = "EPSG:25830"  # the raster's EPSG:3042 is the same projection with northing-easting axis order
CELL = 25.0
RIGHT, TOP = 465089.0, 4099639.0  # the raster's east and north edges
NATURAL = range(300, 600)

# 2 x 2 km, three quarters east of the raster's edge; the covered quarter is all shrub and sparse
# vegetation (322, 333), the Sierra Nevada slope of the audit's finding.
EDGE_BOX = box(RIGHT - 500, 4094000, RIGHT + 1500, 4096000)
# 1 km², aligned to the 25 m grid; its west quarter (mostly olive groves, 223) is set to no data in a copy.
NODATA_BOX = box(458239, 4086014, 459239, 4087014)
NODATA_WEST = box(458239, 4086014, 458489, 4087014)
NODATA_EAST = box(458489, 4086014, 459239, 4087014)

LAND_COVER_METRICS = {
    "water_ratio",
    "wetland_ratio",
    "agricultural_ratio",
    "forest_ratio",
    "forest_area_ha",
    "wetland_area_ha",
    "shrub_ratio",
    "artificial_ratio",
    "natural_habitat_ratio",
    "land_use_change_tco2e",
    "biodiversity_sensitivity_score",
    "resm_score",
    "ahsm_score",
    "cim_score",
}
STAND_IN_METRICS = {"distance_to_water_km", "distance_to_settlement_km", "settlements_within_1km"}


def _truth(raster: Path, geom: shapely.Geometry) -> tuple[dict[int, float], float]:
    """Class fractions of the covered part and covered area (m², UTM plane), straight from exactextract."""
    from exactextract import exact_extract

    with rasterio.open(raster) as ds:
        feature = [{"type": "Feature", "properties": {}, "geometry": mapping(geom)}]
        props = exact_extract(ds, feature, ["unique", "frac", "count"])[0]["properties"]
    fracs = {int(u): float(f) for u, f in zip(props["unique"], props["frac"])}
    return fracs, float(props["count"]) * CELL * CELL


def _share(fracs: dict[int, float], codes: range) -> float:
    return sum(f for c, f in fracs.items() if c in codes)


def _protected(tmp: Path, geom: shapely.Geometry) -> Path:
    import geopandas as gpd

    path = tmp / "pa.gpkg"
    gpd.GeoDataFrame(
        {"code": ["ES6140004"], "name": ["Sierra Nevada (test polygon)"], "kind": ["SAC"]}, geometry=[geom], crs=UTM
    ).to_file(path, layer="pa", driver="GPKG")
    return path


def _catalog(tmp: Path, raster: Path, lanjaron_dir: Path, protected: Path) -> Catalog:
    return parse_catalog(
        {
            "land_cover": {"path": str(raster), "format": "raster"},
            "elevation": {"path": str(lanjaron_dir / "mdt.tif")},
            "protected_areas": {
                "path": str(protected),
                "layer": "pa",
                "id_column": "code",
                "name_column": "name",
                "type_column": "kind",
            },
        },
        base_dir=tmp,
    )


def _run(aoi: AOI, catalog: Catalog, project_type: str = "solar") -> pipeline.PipelineOutput:
    params = RunParams.from_request(project_type, "ESP", {"buffer_km": 2}, None)
    return pipeline.run(aoi, params, catalog, lambda *_: None, lambda: False)


def _statuses(out: pipeline.PipelineOutput) -> dict[str, Any]:
    return {s.rule_id: s for s in out.legal.statuses}


def _assert_no_pass_on_missing_evidence(out: pipeline.PipelineOutput) -> None:
    """A rule resting on a weak metric passes only if it passes at every end of that metric's bounds."""
    rules = {r.id: r for pid in ("EU", "ESP") for r in load_pack(pid).rules}
    for st in out.legal.statuses:
        weak = st.details["insufficient_evidence"]
        if st.status != "passed" or not weak:
            continue
        rule = rules[st.rule_id]
        corners: list[dict[str, Any]] = [{}]
        for m in weak:
            p = st.details["provenance"][m]
            # an open bound is "anything": None, which decides nothing in the three-valued evaluation
            corners = [{**c, m: v} for c in corners for v in (p["lower"], p["upper"])]
        for corner in corners:
            assert conditions.evaluate(rule.condition, {**st.details["metrics"], **corner}) is False, st.rule_id


# --- an AOI three quarters outside the data, inside a protected area ----------------------------------


@pytest.fixture(scope="module")
def edge_run(lanjaron_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pipeline.PipelineOutput, AOI]:
    tmp = tmp_path_factory.mktemp("edge")
    aoi = load_aoi(EDGE_BOX.wkt, crs=UTM)
    cat = _catalog(tmp, lanjaron_dir / "clc.tif", lanjaron_dir, _protected(tmp, EDGE_BOX.buffer(3000)))
    return _run(aoi, cat), aoi


def test_edge_aoi_ratios_are_over_the_covered_land(edge_run, lanjaron_dir: Path) -> None:  # type: ignore[no-untyped-def]
    out, aoi = edge_run
    fracs, covered_m2 = _truth(lanjaron_dir / "clc.tif", EDGE_BOX)
    truth_coverage = covered_m2 / EDGE_BOX.area
    assert truth_coverage == pytest.approx(0.25, abs=1e-6)
    lc = out.results.land_cover
    assert lc.coverage_ratio == pytest.approx(truth_coverage, abs=1e-3)
    assert lc.aoi.coverage_ratio == lc.coverage_ratio
    assert lc.covered_ha == pytest.approx(aoi.area_ha * truth_coverage, rel=1e-3)
    assert lc.ratios["natural_habitat"] == pytest.approx(_share(fracs, NATURAL), abs=1e-4) == pytest.approx(1.0)
    assert lc.ratios["shrub"] == pytest.approx(_share(fracs, range(320, 330)), abs=1e-4)
    assert lc.ratios["agricultural"] == pytest.approx(0.0)
    # the KPI is the same fraction (0..1), with its coverage
    kpi = out.results.kpis["natural_habitat_ratio"]
    assert kpi.value == lc.ratios["natural_habitat"] and kpi.coverage_ratio == lc.coverage_ratio
    assert not any("its figures cover the rest" in w for w in out.results.warnings)
    assert any("land-cover data cover 25.00%" in w for w in out.results.warnings)


def test_edge_aoi_passes_no_rule_on_the_missing_land(edge_run) -> None:  # type: ignore[no-untyped-def]
    out, _ = edge_run
    got = _statuses(out)
    # The audit saw "passed ... 25 % natural habitat": the covered quarter is all natural, the rest unknown.
    assert got["EU-LAND-TAKE"].status == "not_evaluable"
    assert "25.00% of the AOI" in got["EU-LAND-TAKE"].message
    for rule_id in ("EU-FOREST", "EU-WETLAND-WATER", "EU-SENSITIVITY-INDEX", "EU-CUMULATIVE-INDEX", "EU-HAZARD-INDEX"):
        assert got[rule_id].status == "not_evaluable", rule_id
    # shrub on the covered quarter is evidence of monte whatever the rest holds
    assert got["ESP-MONTES-40"].status == "triggered"
    # no water or settlement layer: CORINE stands in, and cannot show a stream or a hamlet
    assert got["ESP-TRLA-6-POLICIA"].status != "passed"
    assert got["EU-POPULATION"].status != "passed"
    assert got["ESP-TRLA-6-POLICIA"].details["provenance"]["distance_to_water_km"]["source"] == "corine_stand_in"
    _assert_no_pass_on_missing_evidence(out)
    # inside a Natura 2000 site: the critical rule triggers, so the verdict is a clear "not compliant"
    assert got["EU-HD-6.3-OVERLAP"].status == "triggered" and out.legal.overall_compliant is False


def test_edge_aoi_sensitivity_is_not_diluted_and_its_confidence_shows_the_gap(edge_run) -> None:  # type: ignore[no-untyped-def]
    out, _ = edge_run
    sens = out.results.biodiversity.sensitivity
    natural = next(d for d in sens.drivers if d.feature == "natural_habitat_ratio")
    assert natural.value == pytest.approx(1.0)  # was 0.25: the uncovered land counted as not natural
    assert sens.confidence < 1.0
    land = sum(d.weight for d in sens.drivers if d.feature.endswith("_ratio") and d.feature != "protected_overlap_pct")
    total = sum(d.weight for d in sens.drivers)
    missing = sum(d.weight for d in sens.drivers if d.value is None)
    assert sens.confidence == pytest.approx((total - missing - 0.75 * land) / total, abs=2e-3)


def test_edge_aoi_land_use_change_is_extrapolated_from_the_covered_mix(edge_run, lanjaron_dir: Path) -> None:  # type: ignore[no-untyped-def]
    out, aoi = edge_run
    em = out.results.emissions
    fracs, _ = _truth(lanjaron_dir / "clc.tif", EDGE_BOX)
    data = tomllib.loads(resources.files("aethera.analysis").joinpath("data/emission_factors.toml").read_text())
    per_mw = float(data["technology"]["solar"]["footprint_ha_per_mw"])
    footprint_ha = min(aoi.area_ha, out.results.parameters.capacity_mw * per_mw)
    loss = {int(k): float(v) for k, v in data["carbon_loss_tco2e_per_ha"].items() if k != "source"}
    expected = sum(f * footprint_ha * loss.get(code, 0.0) for code, f in fracs.items())
    assert em.land_use_change_coverage_ratio == pytest.approx(0.25, abs=1e-3)
    assert em.footprint_ha == pytest.approx(footprint_ha, rel=1e-3)
    assert em.land_use_change_tco2e == pytest.approx(expected, rel=2e-3)
    assert any("extrapolated" in n for n in em.notes)


# --- a quarter of a 1 km² AOI on no-data cells ------------------------------------------------------------


@pytest.fixture(scope="module")
def holed_raster(lanjaron_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real raster whose cells under the AOI's west quarter are no data."""
    path = tmp_path_factory.mktemp("holed") / "clc_holed.tif"
    shutil.copy(lanjaron_dir / "clc.tif", path)
    with rasterio.open(path, "r+") as ds:
        row0, col0 = int((TOP - NODATA_WEST.bounds[3]) / CELL), int((NODATA_WEST.bounds[0] - 453239.0) / CELL)
        rows, cols = (
            int(NODATA_WEST.bounds[3] - NODATA_WEST.bounds[1]) // 25,
            int(NODATA_WEST.bounds[2] - NODATA_WEST.bounds[0]) // 25,
        )
        window = rasterio.windows.Window(col0, row0, cols, rows)
        ds.write(np.full((rows, cols), ds.nodata, dtype="uint32"), 1, window=window)
    return path


@pytest.fixture(scope="module")
def nodata_runs(lanjaron_dir: Path, holed_raster: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("nodata")
    aoi = load_aoi(NODATA_BOX.wkt, crs=UTM)
    protected = _protected(tmp, NODATA_BOX.buffer(2000))
    full = _run(aoi, _catalog(tmp, lanjaron_dir / "clc.tif", lanjaron_dir, protected))
    holed = _run(aoi, _catalog(tmp, holed_raster, lanjaron_dir, protected))
    return full, holed, aoi


def test_nodata_quarter_ratios_are_over_the_covered_land(nodata_runs, lanjaron_dir: Path, holed_raster: Path) -> None:  # type: ignore[no-untyped-def]
    full, holed, aoi = nodata_runs
    # truth from the original raster over the three covered quarters
    fracs, covered_m2 = _truth(lanjaron_dir / "clc.tif", NODATA_EAST)
    assert covered_m2 == pytest.approx(NODATA_EAST.area, rel=1e-9)
    _, holed_covered = _truth(holed_raster, NODATA_BOX)  # exactextract skips no-data cells
    assert holed_covered == pytest.approx(0.75 * NODATA_BOX.area, rel=1e-9)
    lc = holed.results.land_cover
    assert lc.coverage_ratio == pytest.approx(0.75, abs=1e-3)
    assert lc.aoi.nodata_ha == pytest.approx(0.25 * aoi.area_ha, rel=1e-3)
    for key, codes in (
        ("natural_habitat", NATURAL),
        ("agricultural", range(200, 300)),
        ("shrub", range(320, 330)),
        ("forest", range(310, 320)),
    ):
        assert lc.ratios[key] == pytest.approx(_share(fracs, codes), abs=1e-4), key
    # the no-data line is its own class line, never folded into a class
    assert [c.label for c in lc.aoi.classes if c.code is None] == ["No data"]
    assert full.results.land_cover.coverage_ratio == pytest.approx(1.0, abs=1e-6)


def test_nodata_quarter_passes_no_rule_on_the_missing_quarter(nodata_runs) -> None:  # type: ignore[no-untyped-def]
    full, holed, _ = nodata_runs
    got_full, got_holed = _statuses(full), _statuses(holed)
    # fully covered, the cumulative-impact rule has a verdict; with a quarter missing it has none
    # (the audit saw it flip from triggered to passed)
    assert got_full["EU-CUMULATIVE-INDEX"].status in ("triggered", "passed")
    assert got_holed["EU-CUMULATIVE-INDEX"].status == "not_evaluable"
    weak = {
        rule_id
        for rule_id, st in got_holed.items()
        if set(st.details["insufficient_evidence"]) & (LAND_COVER_METRICS | STAND_IN_METRICS)
    }
    assert {"EU-FOREST", "EU-WETLAND-WATER", "EU-SENSITIVITY-INDEX", "ESP-TRLA-6-POLICIA", "EU-POPULATION"} <= weak
    for rule_id in ("ESP-TRLA-6-POLICIA", "EU-POPULATION", "EU-FOREST", "EU-WETLAND-WATER"):
        assert got_holed[rule_id].status != "passed", rule_id
    _assert_no_pass_on_missing_evidence(holed)
    # confidence drops with the coverage
    assert holed.results.biodiversity.sensitivity.confidence < full.results.biodiversity.sensitivity.confidence
    assert holed.results.cim.confidence < full.results.cim.confidence


# --- the vector edition: an AOI straddling the municipality boundary ----------------------------------------


def test_vector_aoi_straddling_the_layer_reports_coverage(lanjaron_dir: Path, lanjaron_vector: Catalog) -> None:
    import geopandas as gpd

    df = gpd.read_file(lanjaron_dir / "clc.gpkg", layer="clc")
    boundary = gpd.read_file(lanjaron_dir / "clc.gpkg", layer="lanjaron").geometry.iloc[0]
    # a 2 x 2 km square centred on the boundary's westernmost vertex: part in, part out of the layer
    xs, ys = shapely.get_coordinates(
        boundary.exterior if boundary.geom_type == "Polygon" else max(boundary.geoms, key=lambda g: g.area).exterior
    ).T
    x0, y0 = xs[np.argmin(xs)], ys[np.argmin(xs)]
    square = box(x0 - 1000, y0 - 1000, x0 + 1000, y0 + 1000)
    pieces = df.assign(geometry=df.geometry.intersection(square))
    pieces = pieces[~pieces.geometry.is_empty]
    covered = pieces.geometry.area.sum()
    codes = pieces["CODE_18"].astype(int)
    natural = pieces.geometry.area[(codes >= 300) & (codes < 600)].sum() / covered
    lc = land_cover.summarize(load_aoi(square.wkt, crs=UTM), lanjaron_vector, buffer_km=0.0)
    assert 0.2 < covered / square.area < 0.8
    assert lc.coverage_ratio == pytest.approx(covered / square.area, abs=1e-3)
    assert lc.ratios["natural_habitat"] == pytest.approx(natural, abs=1e-3)


# --- zone rules and real layers on the real land cover ------------------------------------------------------


def test_a_second_site_next_to_an_overlapped_one_and_real_water_and_settlement_layers(
    lanjaron_dir: Path, tmp_path: Path
) -> None:
    import geopandas as gpd
    from shapely.geometry import LineString, Point

    aoi_box = box(458239, 4086014, 459239, 4087014)
    aoi = load_aoi(aoi_box.wkt, crs=UTM)
    pa = tmp_path / "pa.gpkg"
    gpd.GeoDataFrame(
        {
            "code": ["ES0000001", "ES0000002"],
            "name": ["overlapped (test)", "0.7 km east (test)"],
            "kind": ["SAC", "SPA"],
        },
        geometry=[aoi_box.buffer(200), box(459239 + 700, 4086014, 459239 + 1700, 4087014)],
        crs=UTM,
    ).to_file(pa, layer="pa", driver="GPKG")
    water = tmp_path / "water.gpkg"  # a stream 48 m west of the AOI, too small for CORINE
    gpd.GeoDataFrame(
        {"id": ["r1"], "name": ["stream (test)"]},
        geometry=[LineString([(458239 - 48, 4085000), (458239 - 48, 4088000)])],
        crs=UTM,
    ).to_file(water, layer="water", driver="GPKG")
    places = tmp_path / "places.gpkg"  # a hamlet inside the AOI
    gpd.GeoDataFrame({"id": ["p1"], "name": ["hamlet (test)"]}, geometry=[Point(458700, 4086500)], crs=UTM).to_file(
        places, layer="places", driver="GPKG"
    )
    cat = parse_catalog(
        {
            "land_cover": {"path": str(lanjaron_dir / "clc.tif"), "format": "raster"},
            "protected_areas": {
                "path": str(pa),
                "layer": "pa",
                "id_column": "code",
                "name_column": "name",
                "type_column": "kind",
            },
            "water": {"path": str(water), "layer": "water", "id_column": "id", "name_column": "name"},
            "settlements": {"path": str(places), "layer": "places", "id_column": "id", "name_column": "name"},
        },
        base_dir=tmp_path,
    )
    out = _run(aoi, cat)
    bio = out.results.biodiversity
    assert [s.site_code for s in bio.sites_not_overlapped] == ["ES0000002"]
    assert bio.sites_not_overlapped[0].distance_km == pytest.approx(0.7, abs=1e-3)
    got = _statuses(out)
    assert got["EU-HD-6.3-OVERLAP"].status == "triggered"
    for rule_id in ("EU-HD-6.3-ZONE", "EU-PROTECTED-NEAR", "ESP-L21-2013-7.2B"):
        assert got[rule_id].status == "triggered", rule_id
    assert "0.70 km" in got["EU-HD-6.3-ZONE"].message
    # with real layers the distances are evidence: the stream at 48 m and the hamlet inside trigger
    assert got["ESP-TRLA-6-POLICIA"].status == "triggered"
    assert got["ESP-TRLA-6-POLICIA"].details["provenance"]["distance_to_water_km"]["source"] == "water"
    assert out.results.receptor_distances.nearest_water_body.distance_km == pytest.approx(0.048, abs=1e-3)
    assert got["EU-POPULATION"].status == "triggered"
    # fully covered: the land-cover rules have verdicts, not "not evaluable"
    assert out.results.land_cover.coverage_ratio == pytest.approx(1.0)
    assert got["EU-FOREST"].status in ("passed", "triggered") and not got["EU-FOREST"].details["insufficient_evidence"]
