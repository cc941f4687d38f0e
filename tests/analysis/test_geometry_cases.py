"""Hand-built geometry with answers known by construction: overlaps, distances, raster edges, fallbacks."""

from __future__ import annotations

from pathlib import Path

import geokit
import numpy as np
import pytest
from geokit import X0, Y0
from pyproj import Geod, Transformer
from shapely.geometry import LineString, Point, box

from aethera.analysis import land_cover, protected_areas, receptors
from aethera.analysis.aoi import load_aoi

# A 1 km x 1 km AOI 1 km in from the raster's top-left corner (raster: 5 km x 5 km, 100 m pixels).
AOI_BOX = box(X0 + 1000, Y0 - 2000, X0 + 2000, Y0 - 1000)


@pytest.fixture()
def lc_only(tmp_path: Path):  # type: ignore[no-untyped-def]
    geokit.uniform_raster(tmp_path)
    return tmp_path


def _protected(tmp: Path, geoms, codes, types=None):  # type: ignore[no-untyped-def]
    geokit.write_vector(
        tmp / "pa.gpkg",
        "pa",
        geoms,
        site_code=codes,
        name=[f"Site {c}" for c in codes],
        type=types or ["SAC"] * len(codes),
    )
    return geokit.catalog(
        tmp,
        land_cover={"path": "lc.tif"},
        protected_areas={
            "path": "pa.gpkg",
            "layer": "pa",
            "id_column": "site_code",
            "name_column": "name",
            "type_column": "type",
        },
    )


def test_aoi_inside_a_protected_area(lc_only: Path) -> None:
    cat = _protected(lc_only, [box(X0, Y0 - 5000, X0 + 5000, Y0)], ["DE0000001"])
    aoi = geokit.aoi_3035(AOI_BOX)
    bio, _layers = protected_areas.analyse(aoi, cat, buffer_km=2.0)
    assert bio.protected_overlap_pct == pytest.approx(100.0, abs=1e-9)
    assert bio.protected_overlap_ha == pytest.approx(100.0, rel=1e-9)
    assert [s.site_code for s in bio.sites_overlapping] == ["DE0000001"]
    assert bio.sites_in_buffer[0].distance_km == 0.0
    assert bio.natura2000_sites_in_buffer == 1
    rec = receptors.analyse(aoi, cat)
    assert rec.nearest_protected_area is not None and rec.nearest_protected_area.distance_km == 0.0
    assert rec.counts[0].protected_areas == 1


def test_two_overlapping_sites_never_exceed_100_percent(lc_only: Path) -> None:
    # Site A covers the west 70 % of the AOI, site B the east 60 %: 30 % is covered twice.
    a = box(X0 + 500, Y0 - 2500, X0 + 1700, Y0 - 500)
    b = box(X0 + 1400, Y0 - 2500, X0 + 2500, Y0 - 500)
    cat = _protected(lc_only, [a, b], ["DE0000001", "DE0000002"], ["SPA", "National park"])
    bio, _layers = protected_areas.analyse(geokit.aoi_3035(AOI_BOX), cat, buffer_km=1.0)
    per_site = {s.site_code: s.overlap_pct for s in bio.sites_overlapping}
    assert per_site == {"DE0000001": pytest.approx(70.0), "DE0000002": pytest.approx(60.0)}
    assert bio.protected_overlap_pct == pytest.approx(100.0, abs=1e-9)  # not 130
    assert bio.natura2000_overlap_pct == pytest.approx(70.0)  # only the SPA is Natura 2000
    assert bio.natura2000_sites_in_buffer == 1


def test_partial_overlaps_are_dissolved(lc_only: Path) -> None:
    # A: west 50 %; B: a band 30 % wide overlapping A by 20 %: union 60 % (the per-site sum is 80 %).
    a = box(X0 + 1000, Y0 - 2000, X0 + 1500, Y0 - 1000)
    b = box(X0 + 1300, Y0 - 2000, X0 + 1600, Y0 - 1000)
    cat = _protected(lc_only, [a, b], ["A1", "B1"])
    bio, layers = protected_areas.analyse(geokit.aoi_3035(AOI_BOX), cat, buffer_km=1.0)
    assert sum(s.overlap_pct for s in bio.sites_overlapping) == pytest.approx(80.0)
    assert bio.protected_overlap_pct == pytest.approx(60.0)
    assert bio.protected_overlap_ha == pytest.approx(60.0)
    import json

    overlap = json.loads(layers["overlap"])
    assert overlap["features"][0]["properties"]["protected_overlap_pct"] == pytest.approx(60.0)
    coords = np.array(overlap["features"][0]["geometry"]["coordinates"][0])
    assert 14 < coords[:, 0].mean() < 15 and 51 < coords[:, 1].mean() < 53  # lon, lat order (EPSG:4326)


def test_sites_in_the_buffer_with_distances(lc_only: Path) -> None:
    near = box(X0 + 2400, Y0 - 2000, X0 + 3000, Y0 - 1000)  # 400 m east of the AOI
    far = box(X0 + 4500, Y0 - 2000, X0 + 5000, Y0 - 1000)  # 2.5 km east: outside a 2 km buffer
    cat = _protected(lc_only, [near, far], ["NEAR", "FAR"])
    bio, _layers = protected_areas.analyse(geokit.aoi_3035(AOI_BOX), cat, buffer_km=2.0)
    assert [s.site_code for s in bio.sites_in_buffer] == ["NEAR"]
    assert bio.sites_in_buffer[0].distance_km == pytest.approx(0.4, rel=0.005)
    assert bio.protected_overlap_pct == 0.0
    rec = receptors.analyse(geokit.aoi_3035(AOI_BOX), cat)
    assert rec.nearest_protected_area.receptor_id == "NEAR"
    assert [c.protected_areas for c in rec.counts] == [1, 1, 1, 2]


def test_settlement_three_km_from_the_boundary(lc_only: Path) -> None:
    # Place the settlement 3.000 km (geodesic) due east of the midpoint of the AOI's east edge.
    to_ll = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    to_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    lon, lat = to_ll.transform(X0 + 2000, Y0 - 1500)
    east_edge_az = Geod(ellps="WGS84").inv(
        *to_ll.transform(X0 + 2000, Y0 - 2000), *to_ll.transform(X0 + 2000, Y0 - 1000)
    )[0]
    lon2, lat2, _ = Geod(ellps="WGS84").fwd(lon, lat, east_edge_az + 90, 3000.0)
    town = Point(to_3035.transform(lon2, lat2))
    geokit.write_vector(lc_only / "st.gpkg", "st", [town], name=["Testdorf"], population=[1234])
    # the layer is in EPSG:4326 to exercise the reprojection of the layer as well
    geokit.write_vector(
        lc_only / "st_ll.gpkg", "st", [Point(lon2, lat2)], crs="EPSG:4326", name=["Testdorf"], population=[1234]
    )
    for path in ("st.gpkg", "st_ll.gpkg"):
        cat = geokit.catalog(
            lc_only,
            land_cover={"path": "lc.tif"},
            settlements={"path": path, "name_column": "name", "population_column": "population"},
        )
        rec = receptors.analyse(geokit.aoi_3035(AOI_BOX), cat)
        s = rec.nearest_settlement
        assert s is not None and s.receptor_name == "Testdorf" and s.population == 1234
        assert s.distance_km == pytest.approx(3.0, rel=0.01)
        assert s.distance_km == pytest.approx(3.0, rel=0.001)  # in fact far better than 1 %
        assert [c.settlements for c in rec.counts] == [0, 0, 0, 1]
        assert rec.population_within_1km == 0


def test_receptor_counts_and_population(lc_only: Path) -> None:
    east = [300, 800, 1500, 4000, 6000]  # metres east of the AOI's east edge
    towns = [Point(X0 + 2000 + d, Y0 - 1500) for d in east]
    geokit.write_vector(
        lc_only / "st.gpkg", "st", towns, name=[f"T{d}" for d in east], population=[100, 200, 300, 400, 500]
    )
    cat = geokit.catalog(
        lc_only,
        land_cover={"path": "lc.tif"},
        settlements={"path": "st.gpkg", "name_column": "name", "population_column": "population"},
    )
    rec = receptors.analyse(geokit.aoi_3035(AOI_BOX), cat)
    assert [c.settlements for c in rec.counts] == [1, 2, 3, 4]
    assert rec.population_within_1km == 300
    assert rec.nearest_settlement.receptor_name == "T300"


def test_receptor_far_away_is_found_by_widening_the_search(lc_only: Path) -> None:
    lake = box(X0 + 30_000, Y0 - 2000, X0 + 31_000, Y0 - 1000)  # 28 km east
    geokit.write_vector(lc_only / "w.gpkg", "w", [lake], name=["Far lake"])
    cat = geokit.catalog(lc_only, land_cover={"path": "lc.tif"}, water={"path": "w.gpkg", "name_column": "name"})
    rec = receptors.analyse(geokit.aoi_3035(AOI_BOX), cat)
    assert rec.nearest_water_body.distance_km == pytest.approx(28.0, rel=0.002)
    assert [c.water_bodies for c in rec.counts] == [0, 0, 0, 0]


def test_nothing_within_100_km_is_null_with_a_reason(lc_only: Path) -> None:
    river = LineString([(X0 + 200_000, Y0), (X0 + 210_000, Y0)])
    geokit.write_vector(lc_only / "w.gpkg", "w", [river], name=["Far river"])
    cat = geokit.catalog(lc_only, land_cover={"path": "lc.tif"}, water={"path": "w.gpkg", "name_column": "name"})
    rec = receptors.analyse(geokit.aoi_3035(AOI_BOX), cat)
    assert rec.nearest_water_body is None
    assert "no water body within 100 km" in rec.reasons["water_body"]
    # the search limit is kept as a lower bound for the indices; a missing layer gives none
    assert rec.not_found_within_km == {"water_body": 100.0}


def test_protected_area_beyond_the_search_limit_scores_as_far_not_as_missing(lc_only: Path) -> None:
    from aethera.analysis.indices import IndexFeatures, resm

    far = box(X0 + 160_000, Y0 - 2000, X0 + 161_000, Y0 - 1000)  # about 158 km east
    near = box(X0 + 62_000, Y0 - 2000, X0 + 63_000, Y0 - 1000)  # 60 km east
    scores = {}
    for name, geom in (("far", far), ("near", near)):
        directory = lc_only / name
        directory.mkdir()
        (directory / "lc.tif").write_bytes((lc_only / "lc.tif").read_bytes())
        cat = _protected(directory, [geom], [name.upper()])
        rec = receptors.analyse(geokit.aoi_3035(AOI_BOX), cat)
        nearest = rec.nearest_protected_area
        f = IndexFeatures(
            project_type="solar",
            distance_to_protected_km=nearest.distance_km if nearest else None,
            protected_overlap_pct=0.0,
            natural_habitat_ratio=0.2,
            mean_slope_deg=3.0,
            not_found_within_km={"distance_to_protected_km": rec.not_found_within_km["protected_area"]}
            if "protected_area" in rec.not_found_within_km
            else {},
        )
        scores[name] = resm(f).score
        if name == "far":
            assert nearest is None and rec.not_found_within_km == {"protected_area": 100.0}
        else:
            assert nearest.distance_km == pytest.approx(60.0, rel=0.002) and rec.not_found_within_km == {}
    assert scores["far"] >= scores["near"]


def test_missing_layers_give_null_with_reason_and_corine_fallbacks(tmp_path: Path) -> None:
    codes = np.full((50, 50), 211, dtype="uint16")
    codes[10:20, 40:45] = 112  # urban fabric: columns 40-44 -> 2.0 km east of the AOI's east edge (x0+2000)
    codes[40:45, 10:20] = 512  # a lake: rows 40-44 -> 2.0 km south of the AOI's south edge (y0-2000)
    geokit.write_raster(tmp_path / "lc.tif", codes)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    aoi = geokit.aoi_3035(AOI_BOX)
    rec = receptors.analyse(aoi, cat)
    assert rec.nearest_protected_area is None
    assert "no protected_areas layer" in rec.reasons["protected_area"]
    s, w = rec.nearest_settlement, rec.nearest_water_body
    assert s.source == w.source == "land_cover_fallback"
    assert s.distance_km == pytest.approx(2.0, rel=0.005) and "CORINE 112" in s.kind
    assert w.distance_km == pytest.approx(2.0, rel=0.005) and "CORINE 512" in w.kind
    assert "urban fabric" in rec.reasons["settlement"] and "water and wetland" in rec.reasons["water_body"]
    assert rec.population_within_1km is None and "population" in rec.reasons
    assert [c.protected_areas for c in rec.counts] == [None] * 4
    assert [c.settlements for c in rec.counts] == [0, 0, 0, 1]
    bio, _layers = protected_areas.analyse(aoi, cat, buffer_km=5.0)
    assert not bio.available and bio.protected_overlap_pct is None and "no protected_areas" in bio.reason


def test_aoi_straddling_the_raster_edge(lc_only: Path) -> None:
    # The raster ends at X0 + 5000; the AOI runs from X0 + 4500 to X0 + 5500: half of it is outside.
    aoi = geokit.aoi_3035(box(X0 + 4500, Y0 - 2000, X0 + 5500, Y0 - 1000))
    cat = geokit.catalog(lc_only, land_cover={"path": "lc.tif"})
    lc = land_cover.summarize(aoi, cat, buffer_km=0.0)
    zone = lc.aoi
    assert zone.area_ha == pytest.approx(100.0)
    assert zone.outside_layer_ha == pytest.approx(50.0, rel=1e-6)
    assert zone.classified_ha == pytest.approx(50.0, rel=1e-6)
    assert [c.code for c in zone.classes] == [211, None]
    assert zone.classes[1].label == "Outside the land-cover layer" and zone.classes[1].share == pytest.approx(0.5)
    # Ratios are shares of the covered half (all farmland), reported with that coverage: the part
    # outside the layer is not "not farmland".
    assert lc.ratios["agricultural"] == pytest.approx(1.0) and "nodata" not in lc.ratios
    assert lc.coverage_ratio == pytest.approx(0.5) and zone.coverage_ratio == pytest.approx(0.5)
    assert lc.covered_ha == pytest.approx(50.0, rel=1e-6)
    assert lc.buffer is None and lc.buffer_reason


def test_nodata_pixels_are_their_own_line(tmp_path: Path) -> None:
    codes = np.full((50, 50), 312, dtype="uint16")
    codes[:, 15:] = 0  # nodata from x0 + 1500: the AOI (x0+1000..x0+2000) is half nodata
    geokit.write_raster(tmp_path / "lc.tif", codes, nodata=0)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    zone = land_cover.summarize(geokit.aoi_3035(AOI_BOX), cat, buffer_km=0.0).aoi
    assert zone.nodata_ha == pytest.approx(50.0, rel=1e-6)
    assert zone.classified_ha == pytest.approx(50.0, rel=1e-6)
    assert [(c.code, c.label) for c in zone.classes] == [(312, "Coniferous forest"), (None, "No data")]


def test_half_pixels_count_half(tmp_path: Path) -> None:
    # Checkerboard of 211 / 312 at 100 m; an AOI offset by 50 m covers half-pixels along its edges.
    codes = np.where((np.add.outer(np.arange(50), np.arange(50)) % 2) == 0, 211, 312).astype("uint16")
    geokit.write_raster(tmp_path / "lc.tif", codes)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    aoi = geokit.aoi_3035(box(X0 + 1050, Y0 - 1350, X0 + 1350, Y0 - 1050))  # 3 x 3 pixels, shifted half a pixel
    zone = land_cover.summarize(aoi, cat, buffer_km=0.0).aoi
    areas = {c.code: c.area_ha for c in zone.classes}
    assert sum(areas.values()) == pytest.approx(9.0)
    # exact coverage: 4 full pixels, 12 half, 9 quarter; the colours split 4.5 / 4.5 in this layout
    assert areas[211] == pytest.approx(4.5) and areas[312] == pytest.approx(4.5)


def test_vector_land_cover_and_buffer_ring(tmp_path: Path) -> None:
    west = box(X0, Y0 - 5000, X0 + 1500, Y0)
    east = box(X0 + 1500, Y0 - 5000, X0 + 5000, Y0)
    geokit.write_vector(tmp_path / "clc.gpkg", "clc", [west, east], CODE_18=["311", "211"], AREA_HA=[1e6, 1e6])
    cat = geokit.catalog(tmp_path, land_cover={"path": "clc.gpkg", "layer": "clc", "code_column": "CODE_18"})
    lc = land_cover.summarize(geokit.aoi_3035(AOI_BOX), cat, buffer_km=0.8)
    assert {c.code: c.area_ha for c in lc.aoi.classes} == {311: pytest.approx(50.0), 211: pytest.approx(50.0)}
    ring = lc.buffer
    # ring = (1 km square buffered by 0.8 km) - square = 4 x 0.8 + pi x 0.64 km² (rounded corners)
    assert ring.area_ha == pytest.approx(320 + 64 * np.pi, rel=0.002)
    assert ring.outside_layer_ha == 0.0
    assert sum(c.area_ha for c in ring.classes) == pytest.approx(ring.area_ha, rel=1e-6)


def test_geographic_raster_layer(tmp_path: Path) -> None:
    # A land-cover raster in EPSG:4326 (cells of 0.001 degree): areas must still be equal-area hectares.
    codes = np.full((100, 100), 231, dtype="uint16")
    codes[:, 50:] = 324
    geokit.write_raster(tmp_path / "lc.tif", codes, x0=14.0, y0=52.0, res=0.001, crs="EPSG:4326")
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    aoi = load_aoi(box(14.02, 51.94, 14.08, 51.96).wkt)
    zone = land_cover.summarize(aoi, cat, buffer_km=0.0).aoi
    areas = {c.code: c.area_ha for c in zone.classes}
    assert sum(areas.values()) == pytest.approx(aoi.area_ha, rel=1e-4)
    geod = Geod(ellps="WGS84")
    west = abs(geod.geometry_area_perimeter(box(14.02, 51.94, 14.05, 51.96))[0]) / 1e4
    assert areas[231] == pytest.approx(west, rel=0.002)


def test_uint32_raster_with_a_nonzero_nodata(tmp_path: Path) -> None:
    # Like the real Lanjarón raster: CLC codes as uint32, nodata 4294967295.
    codes = np.full((50, 50), 323, dtype="uint32")
    codes[:, 15:] = 4294967295
    geokit.write_raster(tmp_path / "lc.tif", codes, dtype="uint32", nodata=4294967295)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    zone = land_cover.summarize(geokit.aoi_3035(AOI_BOX), cat, buffer_km=0.0).aoi
    assert {c.code: c.area_ha for c in zone.classes} == {323: pytest.approx(50.0), None: pytest.approx(50.0)}
    assert zone.nodata_ha == pytest.approx(50.0)


def test_eea_grid_codes(tmp_path: Path) -> None:
    codes = np.full((50, 50), 23, dtype="uint8")  # grid code 23 = 311 broad-leaved forest
    codes[:, 15:] = 48  # the EEA raster's NODATA class
    geokit.write_raster(tmp_path / "lc.tif", codes, dtype="uint8", nodata=None)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif", "code_scheme": "grid_code"})
    zone = land_cover.summarize(geokit.aoi_3035(AOI_BOX), cat, buffer_km=0.0).aoi
    assert [(c.code, c.label) for c in zone.classes] == [(311, "Broad-leaved forest"), (None, "No data")]
    assert zone.nodata_ha == pytest.approx(50.0)


def test_aoi_wholly_on_no_data_gets_no_ratio_and_no_land_cover_verdict(tmp_path: Path) -> None:
    from aethera.analysis import pipeline
    from aethera.analysis.params import RunParams

    codes = np.full((50, 50), 211, dtype="uint16")
    codes[5:25, 5:25] = 0  # no data under the whole AOI (x0+1000..x0+2000, y0-2000..y0-1000) and around it
    geokit.write_raster(tmp_path / "lc.tif", codes, nodata=0)
    cat = geokit.catalog(tmp_path, land_cover={"path": "lc.tif"})
    params = RunParams.from_request("solar", "DEU", {"buffer_km": 1}, None)
    out = pipeline.run(geokit.aoi_3035(AOI_BOX), params, cat, lambda *_: None, lambda: False)
    lc = out.results.land_cover
    assert lc.coverage_ratio == 0.0 and lc.ratios == {} and lc.ratios_reason
    assert out.results.kpis["natural_habitat_ratio"].value is None
    em = out.results.emissions
    assert em.land_use_change_coverage_ratio == 0.0 and any("cannot be estimated" in n for n in em.notes)
    assert em.footprint_ha > 0  # the project's footprint does not depend on the land-cover data
    got = {s.rule_id: s for s in out.legal.statuses}
    for rule_id in ("EU-FOREST", "EU-WETLAND-WATER", "DEU-BWALDG-9", "DEU-BNATSCHG-30", "DEU-EEG-37-FARMLAND"):
        assert got[rule_id].status == "not_evaluable", rule_id
    assert "no part of the AOI has land-cover data" in got["EU-FOREST"].message
