"""The buffer ring's area against the analytic buffer area (Steiner: a convex polygon of area A and
perimeter P grown by r covers A + P·r + π r²), perimeter and area taken on the ellipsoid (pyproj Geod)."""

from __future__ import annotations

import math

import pytest
import shapely
from pyproj import Geod
from shapely.geometry import box

from aethera.analysis import land_cover
from aethera.analysis.aoi import load_aoi
from aethera.analysis.projection import zone_buffer
from aethera.data.catalog import Catalog

GEOD = Geod(ellps="WGS84")


def _ring_truth_ha(wgs84: shapely.Geometry, r_m: float) -> float:
    # geodesic perimeter of the convex AOI (edges densified: they are straight in the AOI's CRS)
    _, perimeter = GEOD.geometry_area_perimeter(shapely.segmentize(wgs84, 0.0005))
    return (perimeter * r_m + math.pi * r_m * r_m) / 1e4


@pytest.mark.parametrize(
    ("lon", "lat", "side_deg", "buffer_km"),
    [
        (-3.46, 36.95, 0.01, 5.0),  # Lanjarón, about 0.9 x 1.1 km
        (-3.46, 36.95, 0.03, 2.0),
        (14.30, 51.74, 0.015, 5.0),  # Lusatia
        (14.30, 51.74, 0.002, 10.0),  # a small AOI: the round corners are nearly the whole ring
    ],
)
def test_ring_area_is_the_analytic_buffer_area(
    lanjaron_raster: Catalog, lon: float, lat: float, side_deg: float, buffer_km: float
) -> None:
    aoi = load_aoi(box(lon, lat, lon + side_deg, lat + side_deg).wkt, crs="EPSG:4326")
    truth = _ring_truth_ha(aoi.wgs84, buffer_km * 1000.0)
    lc = land_cover.summarize(aoi, lanjaron_raster, buffer_km=buffer_km)
    assert lc.buffer is not None
    assert lc.buffer.area_ha == pytest.approx(truth, rel=1e-4)  # within 0.01 %


def test_zone_buffer_of_a_point_is_a_circle_to_0_0025_percent() -> None:
    r = 5000.0
    disc = zone_buffer(shapely.Point(0, 0), r)
    assert 1 - disc.area / (math.pi * r * r) < 2.6e-5
    # the shapely default (16 per quarter circle) is 0.16 % short: what the ring used to be
    assert 1 - shapely.Point(0, 0).buffer(r, quad_segs=16).area / (math.pi * r * r) > 1e-3
