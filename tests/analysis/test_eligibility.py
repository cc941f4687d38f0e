"""Land eligibility (issue #16): hand-built cases with analytic answers, real data against an independent
computation, rule sets checked at load, per-run overrides, a missing layer reported and not ignored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from geokit import catalog, write_raster, write_vector
from pyproj import CRS, Transformer
from shapely.geometry import LineString, Point, box, mapping, shape

from aethera.analysis import eligibility, pipeline
from aethera.analysis.aoi import AOI, load_aoi
from aethera.analysis.eligibility_rules import (
    RULE_KINDS,
    effective_rules,
    load_all,
    load_rule_set,
    parse_overlay,
    parse_rule_set,
)
from aethera.analysis.params import RunParams
from aethera.data.catalog import Catalog
from aethera.errors import ConfigError, InvalidInput

# A 10 km square in EPSG:3035 about 25 km from the projection's centre (10 E, 52 N), where its scale
# error is ~2e-6: an analytic answer in EPSG:3035 metres is the true answer to far better than 0.01 %.
X0, Y0, SIDE = 4_300_000.0, 3_200_000.0, 10_000.0
AOI_BOX = box(X0, Y0, X0 + SIDE, Y0 + SIDE)
SETTLEMENT = Point(X0 + 2_000, Y0 + 2_000)  # its 1 km buffer lies wholly inside the AOI
WATER = LineString([(X0 + 8_500, Y0 - 1_000), (X0 + 8_500, Y0 + SIDE + 1_000)])  # crosses the whole AOI
NATURA = box(X0 + 8_000, Y0 + 6_000, X0 + 9_000, Y0 + 7_000)  # 1 km², 60 ha of it under the water's strip


def _hand_catalog(tmp: Path, *, water: bool = True) -> Catalog:
    margin = 2_000.0
    n = int((SIDE + 2 * margin) / 100)
    write_raster(tmp / "lc.tif", np.full((n, n), 211, dtype="uint16"), x0=X0 - margin, y0=Y0 + SIDE + margin)
    write_raster(
        tmp / "dem.tif", np.full((n, n), 100.0), x0=X0 - margin, y0=Y0 + SIDE + margin, dtype="float32", nodata=-9999
    )  # flat: the slope rule applies and excludes nothing
    gpkg = tmp / "layers.gpkg"
    write_vector(gpkg, "pa", [NATURA], code=["DE0000001"], name=["Test SAC"], kind=["SAC"])
    write_vector(gpkg, "places", [SETTLEMENT], pid=["S1"], name=["Testdorf"])
    layers: dict[str, Any] = {
        "land_cover": {"path": "lc.tif"},
        "elevation": {"path": "dem.tif"},
        "protected_areas": {
            "path": "layers.gpkg",
            "layer": "pa",
            "id_column": "code",
            "name_column": "name",
            "type_column": "kind",
        },
        "settlements": {"path": "layers.gpkg", "layer": "places", "id_column": "pid", "name_column": "name"},
    }
    if water:
        write_vector(gpkg, "rivers", [WATER], wid=["W1"], name=["Testbach"])
        layers["water"] = {"path": "layers.gpkg", "layer": "rivers", "id_column": "wid", "name_column": "name"}
    return catalog(tmp, **layers)


# wind's rule set: settlements 1,000 m, water 300 m; protected sites without a buffer for these cases
WIND_CONFIG = {"eligibility": {"protected_areas": {"buffer_m": 0}}}
CIRCLE_M2 = math.pi * 1_000.0**2
STRIP_M2 = 600.0 * SIDE
NATURA_M2 = 1_000.0 * 1_000.0
OVERLAP_M2 = 600.0 * 1_000.0


def _rules(result: Any) -> dict[str, Any]:
    return {r.rule: r for r in result.rules}


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, AOI]:
    tmp = tmp_path_factory.mktemp("hand")
    return _hand_catalog(tmp), load_aoi(AOI_BOX.wkt, crs="EPSG:3035")


def test_hand_built_case_matches_the_analytic_answer(hand: tuple[Catalog, AOI]) -> None:
    cat, aoi = hand
    params = RunParams.from_request("wind", "DEU", WIND_CONFIG, None)
    result, layer = eligibility.analyse(aoi, cat, params)
    excluded = CIRCLE_M2 + STRIP_M2 + NATURA_M2 - OVERLAP_M2
    assert result.aoi_area_ha == pytest.approx(SIDE * SIDE / 1e4, rel=1e-6)
    assert result.eligible_ha == pytest.approx((SIDE * SIDE - excluded) / 1e4, rel=1e-4)
    assert result.excluded_ha == pytest.approx(excluded / 1e4, rel=1e-4)
    rules = _rules(result)
    assert rules["settlements"].excluded_ha == pytest.approx(CIRCLE_M2 / 1e4, rel=1e-4)
    assert rules["water"].excluded_ha == pytest.approx(STRIP_M2 / 1e4, rel=1e-4)
    assert rules["protected_areas"].excluded_ha == pytest.approx(NATURA_M2 / 1e4, rel=1e-4)
    # exclusive: what that rule alone takes away; the overlap is the 60 ha the site shares with the strip
    assert rules["settlements"].exclusive_ha == pytest.approx(CIRCLE_M2 / 1e4, rel=1e-4)
    assert rules["water"].exclusive_ha == pytest.approx((STRIP_M2 - OVERLAP_M2) / 1e4, rel=1e-4)
    assert rules["protected_areas"].exclusive_ha == pytest.approx((NATURA_M2 - OVERLAP_M2) / 1e4, rel=1e-4)
    assert result.overlap_ha == pytest.approx(OVERLAP_M2 / 1e4, rel=1e-3)
    assert sum(r.exclusive_ha or 0 for r in result.rules) + result.overlap_ha == pytest.approx(
        result.excluded_ha, abs=1e-3
    )
    for kind in ("land_cover", "slope", "min_area"):
        assert rules[kind].status == "applied" and rules[kind].excluded_ha == pytest.approx(0.0, abs=1e-4), kind
    assert rules["elevation"].status == "disabled"
    assert rules["slope"].method.startswith("gridded") and rules["slope"].resolution_m == 100.0
    assert rules["water"].method == "exact geometry"
    assert result.binding_constraints == ["water", "settlements", "protected_areas"]
    # the strip cuts the AOI in two: 8.2 km and 1.2 km wide
    assert result.patches.count == 2
    assert result.patches.max_ha == pytest.approx((8_200 * SIDE - CIRCLE_M2 - 200 * 1_000) / 1e4, rel=1e-4)
    assert result.patches.min_ha == pytest.approx((1_200 * SIDE - 200 * 1_000) / 1e4, rel=1e-4)
    assert result.confidence == 1.0 and not result.upper_bound
    assert result.capacity_mw == pytest.approx(result.eligible_ha * 0.03, abs=1e-3)
    fc = json.loads(layer)
    assert [f["properties"]["patch_id"] for f in fc["features"]] == [1, 2]
    assert sum(f["properties"]["area_ha"] for f in fc["features"]) == pytest.approx(result.eligible_ha, abs=1e-3)
    lon, lat = shape(fc["features"][0]["geometry"]).centroid.coords[0]
    assert 9.0 < lon < 11.0 and 51.0 < lat < 53.0  # EPSG:4326, longitude first


def test_min_area_removes_islands_and_owns_them(hand: tuple[Catalog, AOI]) -> None:
    """With a 1,500 ha minimum the 1.2 km wide patch east of the strip (1,180 ha) is not a site."""
    cat, aoi = hand
    config = {"eligibility": {"protected_areas": {"buffer_m": 0}, "min_area": {"min_area_ha": 1_500}}}
    result, _ = eligibility.analyse(aoi, cat, RunParams.from_request("wind", "DEU", config, None))
    island_ha = (1_200 * SIDE - 200 * 1_000) / 1e4
    rules = _rules(result)
    assert rules["min_area"].excluded_ha == pytest.approx(island_ha, rel=1e-4)
    assert rules["min_area"].exclusive_ha == rules["min_area"].excluded_ha
    assert rules["min_area"].overridden == ["min_area_ha"] and not rules["min_area"].screening_default
    assert result.patches.count == 1
    assert result.eligible_ha == pytest.approx((8_200 * SIDE - CIRCLE_M2 - 200 * 1_000) / 1e4, rel=1e-4)


def test_overrides_replace_buffers_and_switch_rules_off(hand: tuple[Catalog, AOI]) -> None:
    cat, aoi = hand
    config = {
        "eligibility": {
            "protected_areas": {"buffer_m": 0},
            "settlements": {"buffer_m": 500},
            "water": {"enabled": False},
        }
    }
    params = RunParams.from_request("wind", "DEU", config, None)
    result, _ = eligibility.analyse(aoi, cat, params)
    rules = _rules(result)
    assert rules["water"].status == "disabled" and "config.eligibility" in rules["water"].reason
    assert rules["settlements"].parameters == {"buffer_m": 500.0} and rules["settlements"].overridden == ["buffer_m"]
    assert rules["settlements"].excluded_ha == pytest.approx(math.pi * 500.0**2 / 1e4, rel=1e-4)
    assert result.eligible_ha == pytest.approx((SIDE * SIDE - math.pi * 500.0**2 - NATURA_M2) / 1e4, rel=1e-4)
    assert result.rule_set["overrides"] == params.eligibility  # the effective rule set is stored with results
    assert result.confidence == 1.0  # a rule the run switched off is a choice, not missing evidence


def test_missing_layer_rule_not_applied_reported_and_confidence_lowered(tmp_path: Path) -> None:
    cat = _hand_catalog(tmp_path, water=False)
    aoi = load_aoi(AOI_BOX.wkt, crs="EPSG:3035")
    params = RunParams.from_request("wind", "DEU", WIND_CONFIG, None)
    out = pipeline.run(aoi, params, cat, lambda *_: None, lambda: False)
    result = out.results.eligibility
    water = _rules(result)["water"]
    assert water.status == "not_applied" and "no water layer" in water.reason
    assert water.excluded_ha is None and water.exclusive_ha is None  # unknown, not "nothing excluded"
    assert result.upper_bound and result.confidence == pytest.approx(4 / 5)  # one of five data rules missing
    assert result.eligible_ha == pytest.approx((SIDE * SIDE - CIRCLE_M2 - NATURA_M2) / 1e4, rel=1e-4)
    assert any("rule water not applied" in w for w in out.results.warnings)
    # no capacity requested: emissions use the eligible land's capacity, and say so
    p = out.results.parameters
    assert p.capacity_mw == pytest.approx(result.capacity_mw) == pytest.approx(result.eligible_ha * 0.03, abs=1e-3)
    assert p.capacity_source.startswith("eligible land:") and "upper bound" in p.capacity_source
    assert out.results.emissions.capacity_mw == pytest.approx(p.capacity_mw, abs=1e-3)
    assert json.loads(out.layers["eligible"])["eligible_ha"] == result.eligible_ha


def test_a_requested_capacity_is_kept(hand: tuple[Catalog, AOI]) -> None:
    cat, aoi = hand
    params = RunParams.from_request("wind", "DEU", {**WIND_CONFIG, "capacity_mw": 12}, None)
    out = pipeline.run(aoi, params, cat, lambda *_: None, lambda: False)
    assert out.results.parameters.capacity_source == "config" and out.results.emissions.capacity_mw == 12
    assert out.results.eligibility.capacity_mw > 0


# --- rule sets -------------------------------------------------------------------------------------------


def test_every_rule_set_and_overlay_loads_and_cites_its_sources() -> None:
    load_all()
    for tech in ("solar", "wind"):
        rules = load_rule_set(tech)
        assert list(rules.rules) == list(RULE_KINDS)
        for rule in rules.rules.values():
            assert rule.source.strip()
    spain = effective_rules("solar", "ESP", None)
    assert spain.overlays == ("ESP",) and spain.rules["water"].buffer_m == 100.0
    assert not spain.rules["water"].screening_default and "Ley de Aguas" in spain.rules["water"].source


def _text(tech: str = "solar") -> str:
    from importlib import resources

    return resources.files("aethera.analysis").joinpath("data", "eligibility", f"{tech}.toml").read_text("utf-8")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("[rules.slope]\n", "[rules.slope]\ncolour = 1\n"), "malformed"),
        (lambda t: t.replace("exclude = [111,", "exclude = [999, 111,"), "999 not CORINE"),
        (lambda t: t.replace("max_deg = 10.0", "max_deg = 95.0"), "between 0 and 90"),
        (lambda t: t.replace("[rules.water]\nbuffer_m = 50.0", "[rules.water]\nbuffer_m = -5.0"), "from 0 to"),
        (lambda t: t.replace("[rules.water]\nbuffer_m = 50.0", "[rules.water]\nmax_deg = 5.0"), "takes buffer_m"),
        (lambda t: t.split("[rules.min_area]")[0], "min_area missing"),
        (lambda t: t.replace('source = "Screening default: clearance', 'source = " "\n#'), "needs a source"),
    ],
)
def test_a_broken_rule_set_is_refused_at_load(edit: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rule_set(edit(_text()), expected_id="solar")
    assert message in str(info.value)


def test_a_broken_overlay_is_refused_at_load() -> None:
    with pytest.raises(ConfigError):
        parse_overlay(
            '[overlay]\nid="X"\ncountry="X"\nversion="1"\nname="x"\ndescription="x"\n'
            '[solar.roads]\nbuffer_m = 5\nsource = "x"\n'
        )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"slope": {"max_deg": 95}},
            "config.eligibility.slope.max_deg must be a number greater than 0 and less than 90",
        ),
        ({"roads": {"buffer_m": 5}}, "config.eligibility.roads is not accepted here"),
        ({"settlements": {"buffer_m": -1}}, "config.eligibility.settlements.buffer_m must be a number from 0 to 50000"),
        ({"land_cover": {"exclude": [999]}}, "999 not CORINE level-3 codes"),
        ({"elevation": {"enabled": True, "min_m": 500, "max_m": 100}}, "min_m below max_m"),
    ],
)
def test_a_bad_override_is_refused_when_the_run_is_requested(config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        RunParams.from_request("solar", "DEU", {"eligibility": config}, None)
    assert message in info.value.detail


# --- real data: Lanjarón, against an independent computation -----------------------------------------------

UTM = "EPSG:25830"
LANJARON_BOX = box(454_000, 4_088_000, 460_000, 4_093_000)  # 30 km² with data everywhere (farmland to sierra)
SITE = box(458_000, 4_091_000, 461_000, 4_094_000)  # a protected area across the AOI's north-east corner
PLACES = [Point(456_200, 4_089_300), Point(459_500, 4_092_500)]
LANJARON_SLOPE_DEG = 20.0
RIVER = LineString([(453_000, 4_087_500), (456_000, 4_090_000), (457_500, 4_090_200), (461_000, 4_094_500)])


@pytest.fixture(scope="module")
def lanjaron(lanjaron_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, AOI, Any]:
    tmp = tmp_path_factory.mktemp("lanjaron_elig")
    gpkg = tmp / "v.gpkg"
    write_vector(gpkg, "pa", [SITE], crs=UTM, code=["ES6140004"], name=["Sierra Nevada (test)"], kind=["SAC"])
    write_vector(gpkg, "places", PLACES, crs=UTM, pid=["P1", "P2"], name=["a", "b"])
    write_vector(gpkg, "rivers", [RIVER], crs=UTM, wid=["R1"], name=["Rio (test)"])
    cat = catalog(
        tmp,
        land_cover={"path": str(lanjaron_dir / "clc.tif"), "format": "raster"},
        elevation={"path": str(lanjaron_dir / "mdt.tif")},
        protected_areas={
            "path": "v.gpkg",
            "layer": "pa",
            "id_column": "code",
            "name_column": "name",
            "type_column": "kind",
        },
        settlements={"path": "v.gpkg", "layer": "places", "id_column": "pid", "name_column": "name"},
        water={"path": "v.gpkg", "layer": "rivers", "id_column": "wid", "name_column": "name"},
    )
    aoi = load_aoi(LANJARON_BOX.wkt, crs=UTM)
    # solar, settlements 300 m, water 50 m, slope 20 degrees (a mountain municipality); min_area off so the
    # figures compare as they are
    config = {
        "eligibility": {
            "settlements": {"buffer_m": 300},
            "slope": {"max_deg": LANJARON_SLOPE_DEG},
            "min_area": {"min_area_ha": 0},
        }
    }
    params = RunParams.from_request("solar", "DEU", config, None)
    result, _ = eligibility.analyse(aoi, cat, params)
    return cat, aoi, result


def _independent(lanjaron_dir: Path, aoi: AOI) -> dict[str, float]:
    """Eligible and per-rule areas with shapely (vector rules, in an AOI-centred equidistant CRS) and
    exactextract (raster rules, on the rasters' own grid), none of the service's functions."""
    from exactextract import exact_extract

    lon, lat = aoi.centroid_lonlat
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +ellps=GRS80 +units=m")
    to_m = Transformer.from_crs(UTM, aeqd, always_xy=True)
    back = Transformer.from_crs(aeqd, UTM, always_xy=True)

    def fwd(g: Any) -> Any:
        return shapely.transform(
            shapely.segmentize(g, 50.0), lambda c: np.column_stack(to_m.transform(c[:, 0], c[:, 1]))
        )

    def rev(g: Any) -> Any:
        return shapely.transform(
            shapely.segmentize(g, 50.0), lambda c: np.column_stack(back.transform(c[:, 0], c[:, 1]))
        )

    area_m = fwd(LANJARON_BOX)
    vec = {
        "protected_areas": fwd(SITE).intersection(area_m),
        "settlements": shapely.union_all([fwd(p).buffer(300.0, quad_segs=256) for p in PLACES]).intersection(area_m),
        "water": fwd(RIVER).buffer(50.0, quad_segs=256).intersection(area_m),
    }
    vector_free = rev(area_m.difference(shapely.union_all(list(vec.values()))))  # back in UTM for exactextract

    solar = load_rule_set("solar").rules
    with rasterio.open(lanjaron_dir / "clc.tif") as ds:
        codes = ds.read(1)
        nodata_lc = codes == ds.nodata
        profile = ds.profile
    with rasterio.open(lanjaron_dir / "mdt.tif") as ds:
        z = ds.read(1).astype("float64")
        cell = abs(ds.transform.a)
    gy, gx = np.gradient(z, cell, cell)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    lc_out = np.isin(codes, solar["land_cover"].exclude) & ~nodata_lc
    slope_out = np.nan_to_num(slope, nan=0.0) > LANJARON_SLOPE_DEG
    free = (~lc_out & ~slope_out).astype("float32")

    def covered_m2(mask: np.ndarray, geom: Any) -> float:
        """Area (UTM plane) of the cells of `mask` under `geom`, partial cells by their covered part."""
        from exactextract.raster import NumPyRasterSource

        t = profile["transform"]
        src = NumPyRasterSource(
            mask.astype("float64"),
            t.c,
            t.f + t.e * mask.shape[0],
            t.c + t.a * mask.shape[1],
            t.f,
            srs_wkt=CRS.from_epsg(25830).to_wkt(),
        )
        feats = [{"type": "Feature", "properties": {}, "geometry": mapping(geom)}]
        return float(exact_extract(src, feats, ["sum"])[0]["properties"]["sum"]) * cell * cell

    scale = aoi.area_m2 / LANJARON_BOX.area  # the UTM plane's area distortion here (as land_cover.py does)
    return {
        "eligible": covered_m2(free, vector_free) * scale,
        "land_cover": covered_m2(lc_out, LANJARON_BOX) * scale,
        "slope": covered_m2(slope_out, LANJARON_BOX) * scale,
        **{k: float(g.area) for k, g in vec.items()},
    }


def test_lanjaron_eligible_area_matches_an_independent_computation(lanjaron, lanjaron_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, aoi, result = lanjaron
    truth = _independent(lanjaron_dir, aoi)
    rules = _rules(result)
    assert 0.05 < result.eligible_share < 0.95, result.eligible_share  # a case where every rule matters
    assert result.eligible_ha == pytest.approx(truth["eligible"] / 1e4, rel=1e-3)
    for kind in ("protected_areas", "settlements", "water", "land_cover", "slope"):
        assert rules[kind].status == "applied"
        assert rules[kind].excluded_ha == pytest.approx(truth[kind] / 1e4, rel=1e-3), kind
    # the per-rule exclusive areas and the overlap add up to everything excluded
    exclusive = sum(r.exclusive_ha or 0.0 for r in result.rules)
    assert exclusive + result.overlap_ha == pytest.approx(result.excluded_ha, abs=1e-3)
    assert result.eligible_ha + result.excluded_ha == pytest.approx(result.aoi_area_ha, abs=1e-3)
    for r in result.rules:
        if r.status == "applied":
            assert r.exclusive_ha <= r.excluded_ha + 1e-4
    assert result.overlap_ha <= sum(r.excluded_ha or 0 for r in result.rules) - exclusive + 1e-3
    assert result.confidence == 1.0 and result.binding_constraints[0] in rules


def test_lanjaron_land_cover_nodata_is_unassessed_not_excluded(lanjaron_dir: Path, tmp_path: Path) -> None:
    """An AOI three quarters east of the raster: land outside it is unassessed, an upper bound."""
    right = 465_089.0
    edge = box(right - 500, 4_094_000, right + 1_500, 4_096_000)
    cat = catalog(tmp_path, land_cover={"path": str(lanjaron_dir / "clc.tif"), "format": "raster"})
    params = RunParams.from_request("solar", "ESP", None, None)
    result, _ = eligibility.analyse(load_aoi(edge.wkt, crs=UTM), cat, params)
    lc = _rules(result)["land_cover"]
    assert lc.unassessed_ha == pytest.approx(300.0, rel=2e-3)  # 1.5 km x 2 km outside
    assert result.upper_bound and result.confidence < 0.5
    assert {r.rule: r.status for r in result.rules if r.status == "not_applied"} == {
        "protected_areas": "not_applied",
        "settlements": "not_applied",
        "water": "not_applied",
        "slope": "not_applied",
    }
    assert _rules(result)["water"].parameters == {"buffer_m": 100.0}  # the Spanish overlay


def test_lanjaron_vector_land_cover_is_exact_geometry(lanjaron_dir: Path, tmp_path: Path) -> None:
    """The land-cover rule on the CORINE polygons (EPSG:25830) against shapely on the same polygons."""
    import pyogrio

    cat = catalog(
        tmp_path, land_cover={"path": str(lanjaron_dir / "clc.gpkg"), "layer": "clc", "code_column": "CODE_18"}
    )
    aoi = load_aoi(LANJARON_BOX.wkt, crs=UTM)
    result, _ = eligibility.analyse(aoi, cat, RunParams.from_request("solar", "DEU", None, None))
    df = pyogrio.read_dataframe(lanjaron_dir / "clc.gpkg", layer="clc")
    excluded = set(load_rule_set("solar").rules["land_cover"].exclude)
    picked = df[df["CODE_18"].astype(int).isin(excluded)].geometry.values
    truth_m2 = shapely.union_all(picked).intersection(LANJARON_BOX).area * aoi.area_m2 / LANJARON_BOX.area
    lc = _rules(result)["land_cover"]
    assert lc.method == "exact geometry" and lc.resolution_m is None
    assert lc.excluded_ha == pytest.approx(truth_m2 / 1e4, rel=1e-4)
    assert lc.unassessed_ha == pytest.approx(0.0, abs=0.01)  # the polygons cover the whole box
