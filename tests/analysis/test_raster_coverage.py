"""Land-cover class areas counted by `raster_coverage` equal exactextract's on the whole zone, within 1e-6.

The truth is exactextract called directly on the zone (its coverage fractions are float32). The split
(interior pixels counted whole, exact fractions along the boundary only) is forced with
`direct_below_cells=0`, so the small test zones go through it too. Zones: the real CORINE raster of
Lanjarón (uint32, non-zero nodata, EPSG:3042) with its municipality, a ring around it crossing the raster
edge, an AOI three quarters outside the raster, one on a no-data patch, one aligned to the pixel grid (its
edges run along pixel edges: the trap for the edge detection), a polygon with a hole; and the synthetic
sample region (uint8, EPSG:3035).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window
from shapely.geometry import Point, box, mapping

from aethera.analysis import land_cover, raster_coverage
from aethera.analysis.aoi import load_aoi
from aethera.data.catalog import parse_catalog
from aethera.data.sample import sample_region

RIGHT, TOP = 465089.0, 4099639.0  # the Lanjarón raster's east and north edges (EPSG:25830 = 3042 plane)


def _fill(ds: rasterio.DatasetReader) -> int:
    return int(ds.nodata) if ds.nodata is not None and float(ds.nodata).is_integer() else 0


def _truth(ds: rasterio.DatasetReader, zone: shapely.Geometry) -> tuple[dict[float, float], float]:
    from exactextract import exact_extract

    fill = _fill(ds)
    ops = [f"unique(default_value={fill})", f"frac(default_value={fill})", f"count(default_value={fill})"]
    feature = [{"type": "Feature", "properties": {}, "geometry": mapping(zone)}]
    props = exact_extract(ds, feature, ops)[0]["properties"]
    return {float(u): float(f) for u, f in zip(props["unique"], props["frac"])}, float(props["count"])


def _assert_same(ds: rasterio.DatasetReader, zone: shapely.Geometry) -> None:
    zone = zone.intersection(box(*ds.bounds))
    fracs, count = _truth(ds, zone)
    units, total = raster_coverage.value_coverage(ds, 1, zone, _fill(ds), direct_below_cells=0)
    assert total == pytest.approx(count, rel=1e-6)
    for value in set(units) | set(fracs):
        assert units.get(value, 0.0) / total == pytest.approx(fracs.get(value, 0.0), abs=1e-6), value


@pytest.fixture(scope="module")
def lanjaron_nodata(lanjaron_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the Lanjarón raster with a 40 x 40 pixel patch set to no data."""
    path = tmp_path_factory.mktemp("nodata") / "clc.tif"
    shutil.copy(lanjaron_dir / "clc.tif", path)
    with rasterio.open(path, "r+") as ds:
        ds.write(np.full((40, 40), ds.nodata, dtype=ds.dtypes[0]), 1, window=Window(100, 300, 40, 40))
    return path


def test_lanjaron_zones_equal_exactextract(lanjaron_dir: Path, lanjaron_boundary_wkt: str) -> None:
    municipality = shapely.from_wkt(lanjaron_boundary_wkt)
    ring = municipality.buffer(2000).difference(municipality)  # crosses the raster's edges
    with rasterio.open(lanjaron_dir / "clc.tif") as ds:
        for zone in (
            municipality,
            ring,
            box(RIGHT - 500, 4094000, RIGHT + 1500, 4096000),  # three quarters east of the raster
            box(RIGHT - 5000, TOP - 4000, RIGHT + 100, TOP + 100),  # over the north-east corner
            box(455239, 4086014, 460239, 4091014),  # aligned to the 25 m grid
            Point(458000, 4090000).buffer(3000).difference(Point(458300, 4090100).buffer(1200)),  # a hole
            shapely.affinity.rotate(box(454000, 4085000, 462000, 4088000), 17),
        ):
            _assert_same(ds, zone)


def test_lanjaron_nodata_patch_equals_exactextract(lanjaron_nodata: Path) -> None:
    with rasterio.open(lanjaron_nodata) as ds:
        t = ds.transform
        x, y = t.c + 120 * t.a, t.f + 320 * t.e  # the centre of the no-data patch
        for zone in (Point(x, y).buffer(900), box(x - 2000, y - 300, x + 2000, y + 2500)):
            _assert_same(ds, zone)
            fracs, _ = _truth(ds, zone)
            assert fracs[float(_fill(ds))] > 0.05  # the zone really does cross no data


def test_sample_region_zones_equal_exactextract(sample_dir: Path) -> None:
    r = sample_region()
    aoi = Point(r.xy(1.0, -2.0)).buffer(4000, quad_segs=16)
    with rasterio.open(sample_dir / "land_cover.tif") as ds:
        for zone in (aoi, aoi.buffer(5000).difference(aoi), box(*r.xy(-14, -14), *r.xy(16, -5))):
            _assert_same(ds, zone)


def test_land_cover_summary_through_the_split_equals_direct(
    lanjaron_dir: Path, lanjaron_boundary_wkt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole summary (AOI and buffer ring, areas, shares) is the same through either path."""
    catalog = parse_catalog({"land_cover": {"path": "clc.tif", "format": "raster"}}, base_dir=lanjaron_dir)
    aoi = load_aoi(lanjaron_boundary_wkt, crs="EPSG:25830")
    monkeypatch.setattr(raster_coverage, "DIRECT_BELOW_CELLS", 1 << 62)
    direct = land_cover.summarize(aoi, catalog, buffer_km=2.0)
    monkeypatch.setattr(raster_coverage, "DIRECT_BELOW_CELLS", 0)
    split = land_cover.summarize(aoi, catalog, buffer_km=2.0)
    for a, b in ((direct.aoi, split.aoi), (direct.buffer, split.buffer)):
        assert a is not None and b is not None
        assert [c.code for c in a.classes] == [c.code for c in b.classes]
        for ca, cb in zip(a.classes, b.classes):
            assert cb.share == pytest.approx(ca.share, abs=1e-6) and cb.area_ha == pytest.approx(ca.area_ha, rel=1e-6)
        assert b.covered_ha == pytest.approx(a.covered_ha, rel=1e-6)
        assert b.coverage_ratio == pytest.approx(a.coverage_ratio, abs=1e-6)
    for name, value in direct.ratios.items():
        assert split.ratios[name] == pytest.approx(value, abs=1e-6)
