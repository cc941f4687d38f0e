"""Real data (../shared/data/lanjaron): CORINE 2018 raster (EPSG:3042, uint32) against its vector (EPSG:25830)."""

from __future__ import annotations

import pyogrio
import pytest
import shapely
from pyproj import Geod

from aethera.analysis import land_cover, terrain
from aethera.analysis.aoi import AOI, load_aoi
from aethera.data.catalog import Catalog


@pytest.fixture(scope="module")
def raster_lc(lanjaron_aoi: AOI, lanjaron_raster: Catalog):  # type: ignore[no-untyped-def]
    return land_cover.summarize(lanjaron_aoi, lanjaron_raster, buffer_km=2.0)


@pytest.fixture(scope="module")
def vector_lc(lanjaron_aoi: AOI, lanjaron_vector: Catalog):  # type: ignore[no-untyped-def]
    return land_cover.summarize(lanjaron_aoi, lanjaron_vector, buffer_km=2.0)


def _by_code(zone) -> dict[int, float]:  # type: ignore[no-untyped-def]
    return {c.code: c.area_ha for c in zone.classes if c.code is not None}


def test_boundary_area_is_equal_area_and_matches_the_ellipsoid(lanjaron_aoi: AOI) -> None:
    # The geodesic area on the GRS80 ellipsoid is the truth an equal-area CRS must reproduce.
    geod_area, _ = Geod(ellps="GRS80").geometry_area_perimeter(lanjaron_aoi.wgs84)
    assert lanjaron_aoi.area_ha == pytest.approx(abs(geod_area) / 1e4, rel=1e-4)
    # UTM (scale 0.9996 near the central meridian) shrinks areas: the planar figure is ~0.08 % low.
    utm_ha = lanjaron_aoi.geometry.area / 1e4
    assert 0.0005 < 1 - utm_ha / lanjaron_aoi.area_ha < 0.0012
    s = lanjaron_aoi.summary()
    assert s.area_crs == "EPSG:3035" and s.source_crs == "EPSG:25830"
    assert -3.53 < s.centroid_lon < -3.39 and 36.87 < s.centroid_lat < 37.05


def test_raster_and_vector_class_areas_agree_within_3_percent(raster_lc, vector_lc) -> None:  # type: ignore[no-untyped-def]
    raster, vector = _by_code(raster_lc.aoi), _by_code(vector_lc.aoi)
    big = {code: ha for code, ha in vector.items() if ha > 500}
    assert len(big) >= 3, big  # 323, 333, 223 at least
    for code, ha in big.items():
        assert raster[code] == pytest.approx(ha, rel=0.03), code
    assert set(raster) == set(vector)  # the same classes, small ones included


def test_raster_class_areas_sum_to_the_boundary_area(raster_lc, lanjaron_aoi: AOI) -> None:  # type: ignore[no-untyped-def]
    zone = raster_lc.aoi
    assert zone.area_ha == pytest.approx(lanjaron_aoi.area_ha, abs=1e-4)  # rounded to 1 m²
    assert zone.classified_ha == pytest.approx(lanjaron_aoi.area_ha, rel=0.005)
    assert sum(c.area_ha for c in zone.classes) == pytest.approx(zone.area_ha, rel=1e-6)
    assert raster_lc.source == "raster" and raster_lc.resolution_m == 25.0


def test_raw_exact_coverage_matches_the_geometry(lanjaron_dir, lanjaron_boundary_wkt: str) -> None:  # type: ignore[no-untyped-def]
    # Independent of our scaling: exactextract's coverage x 625 m² against the boundary's UTM area.
    import rasterio
    from exactextract import exact_extract

    geom = shapely.from_wkt(lanjaron_boundary_wkt)
    with rasterio.open(lanjaron_dir / "clc.tif") as ds:
        feats = [{"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(geom)}]
        count = exact_extract(ds, feats, ["count"])[0]["properties"]["count"]
    assert count * 625.0 == pytest.approx(geom.area, rel=0.005)


def test_area_ha_column_is_a_trap(lanjaron_dir, vector_lc, lanjaron_aoi: AOI) -> None:  # type: ignore[no-untyped-def]
    df = pyogrio.read_dataframe(lanjaron_dir / "clc.gpkg", layer="clc")
    assert df["AREA_HA"].sum() == pytest.approx(73_982, rel=0.001)  # the unclipped CORINE polygons
    inside = df[df.intersects(shapely.from_wkt(lanjaron_aoi.geometry.wkt))]
    trap = inside["AREA_HA"].sum()
    ours = vector_lc.aoi.classified_ha
    assert ours == pytest.approx(lanjaron_aoi.area_ha, rel=0.005)
    assert trap > 2 * ours  # a summary built on AREA_HA would be off by far more than 100 %


def test_wgs84_and_utm_aois_give_the_same_figures(lanjaron_aoi: AOI, lanjaron_raster: Catalog, raster_lc) -> None:  # type: ignore[no-untyped-def]
    wgs = load_aoi(lanjaron_aoi.wgs84.wkt)  # the same boundary given in EPSG:4326
    assert wgs.summary().source_crs == "EPSG:4326"
    assert wgs.area_ha == pytest.approx(lanjaron_aoi.area_ha, rel=0.001)
    other = land_cover.summarize(wgs, lanjaron_raster, buffer_km=2.0)
    a, b = _by_code(raster_lc.aoi), _by_code(other.aoi)
    for code, ha in a.items():
        if ha > 50:
            assert b[code] == pytest.approx(ha, rel=0.001), code
    assert other.buffer.area_ha == pytest.approx(raster_lc.buffer.area_ha, rel=0.001)


def test_epsg_3042_axis_order_is_handled_by_the_library(lanjaron_aoi: AOI, lanjaron_boundary_wkt: str) -> None:
    # EPSG:3042 declares northing-easting; coordinates given easting first (GIS order) must mean the
    # same place as EPSG:25830, which shares its projection.
    as_3042 = load_aoi(lanjaron_boundary_wkt, crs="EPSG:3042")
    assert as_3042.area_ha == pytest.approx(lanjaron_aoi.area_ha, rel=1e-9)
    assert as_3042.centroid_lonlat == pytest.approx(lanjaron_aoi.centroid_lonlat, abs=1e-9)


def test_buffer_ring_excludes_the_aoi_and_reports_the_uncovered_part(raster_lc, vector_lc) -> None:  # type: ignore[no-untyped-def]
    ring = raster_lc.buffer
    assert ring is not None and ring.zone == "buffer"
    # The layers cover only the municipality's bounding box: most of a 2 km ring lies outside them.
    assert ring.outside_layer_ha > 1000
    total = sum(c.area_ha for c in ring.classes)
    assert total == pytest.approx(ring.area_ha, rel=0.005)
    assert ring.outside_layer_ha == pytest.approx(vector_lc.buffer.outside_layer_ha, rel=0.01)


def test_ratios_follow_the_class_areas(raster_lc) -> None:  # type: ignore[no-untyped-def]
    zone = raster_lc.aoi
    ag = sum(c.area_ha for c in zone.classes if c.code and 200 <= c.code < 300) / zone.area_ha
    assert raster_lc.ratios["agricultural"] == pytest.approx(ag, abs=1e-5)
    assert raster_lc.ratios["natural_habitat"] > 0.6  # mountain scrub, rock and grassland dominate
    groups = {g.group: g.area_ha for g in zone.groups}
    assert list(groups) == ["artificial", "agricultural", "forest_semi_natural", "wetlands", "water"]


def test_terrain_from_the_real_dem(lanjaron_aoi: AOI, lanjaron_raster: Catalog) -> None:
    t = terrain.analyse(lanjaron_aoi, lanjaron_raster)
    assert t.available and t.resolution_m == pytest.approx(25.0)
    # Lanjarón climbs from the Guadalfeo valley (~250 m) to the Sierra Nevada crest (~3,000 m).
    assert 150 < t.min_elevation_m < 700 and 2500 < t.max_elevation_m < 3300
    assert t.min_elevation_m < t.mean_elevation_m < t.max_elevation_m
    assert 10 < t.mean_slope_deg < 40 and t.max_slope_deg > t.mean_slope_deg
    assert 0 < t.steep_area_pct < 100
