"""Raster windows cover every cell the AOI touches: landscape and terrain checked cell by cell on the
real Lanjarón rasters against an independent computation on the whole raster (no window at all)."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from exactextract import exact_extract
from pyproj import Geod, Transformer
from shapely.geometry import box, mapping

from aethera.analysis import landscape, terrain
from aethera.analysis.aoi import AOI, load_aoi
from aethera.analysis.windows import covering_window
from aethera.data import corine
from aethera.data.catalog import Catalog

NATURAL = {c for c, cls in corine.CLASSES.items() if cls.natural}
CELL = 25.0

# AOIs in EPSG:25830 placed off the 25 m grid by fractions of a cell, each (col, row, fx, fy, w, h):
# the upper-left corner at cell (col, row) + (fx, fy) cells, w x h metres. Fractions chosen so that the
# offset's fraction plus the length's fraction passes a whole cell (the case that lost a row / column).
_BOXES = [
    (100, 200, 0.29, 0.44, 1511.9, 1013.7),
    (40, 300, 0.81, 0.93, 2006.0, 1488.0),
    (250, 500, 0.55, 0.05, 987.6, 2210.3),
    (330, 90, 0.97, 0.62, 613.2, 777.7),
]


def _box_aoi(
    ds: rasterio.DatasetReader, col: int, row: int, fx: float, fy: float, w: float, h: float
) -> shapely.Polygon:
    t = ds.transform
    x0 = t.c + (col + fx) * t.a
    y0 = t.f + (row + fy) * t.e
    return box(x0, y0 - h, x0 + w, y0)


def _truth_grid(ds: rasterio.DatasetReader, geom: shapely.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """The whole raster and the cells whose centre lies inside `geom` (the raster's CRS is the AOI's)."""
    codes = ds.read(1).astype(np.int64)
    codes[codes == int(ds.nodata)] = 0
    t = ds.transform
    rows, cols = np.mgrid[0 : ds.height, 0 : ds.width]
    inside = shapely.contains_xy(geom, t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e) & (codes > 0)
    return codes, inside


def _components(mask: np.ndarray, codes: np.ndarray) -> list[int]:
    """Sizes of the 8-connected groups of equal-coded cells of `mask` (plain breadth-first search)."""
    seen = np.zeros_like(mask)
    sizes = []
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        queue, n = deque([(r0, c0)]), 0
        while queue:
            r, c = queue.popleft()
            n += 1
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if (
                        0 <= rr < mask.shape[0]
                        and 0 <= cc < mask.shape[1]
                        and mask[rr, cc]
                        and not seen[rr, cc]
                        and codes[rr, cc] == codes[r, c]
                    ):
                        seen[rr, cc] = True
                        queue.append((rr, cc))
        sizes.append(n)
    return sizes


def _geodesic_m2(geom_25830: shapely.Geometry) -> float:
    to_ll = Transformer.from_crs(25830, 4326, always_xy=True)
    ll = shapely.transform(
        shapely.segmentize(geom_25830, 50.0), lambda c: np.column_stack(to_ll.transform(c[:, 0], c[:, 1]))
    )
    return abs(Geod(ellps="GRS80").geometry_area_perimeter(ll)[0])


@pytest.mark.parametrize("case", _BOXES)
def test_landscape_grid_matches_a_cell_level_computation(lanjaron_dir: Path, lanjaron_raster: Catalog, case) -> None:  # type: ignore[no-untyped-def]
    with rasterio.open(lanjaron_dir / "clc.tif") as ds:
        geom = _box_aoi(ds, *case)
        codes, inside = _truth_grid(ds, geom)
    aoi = load_aoi(geom.wkt, crs="EPSG:25830")
    grid = landscape.class_grid(aoi, lanjaron_raster)
    assert grid is not None
    m = landscape.metrics(grid, aoi.area_m2)

    assert m.cells == int(inside.sum())  # no row or column lost
    assert m.patch_count == len(_components(inside, codes))
    natural = inside & np.isin(codes, sorted(NATURAL))
    sizes = _components(natural, np.where(natural, 1, 0))
    assert m.natural_patch_count == len(sizes)
    # cell area on the ellipsoid: 625 m² x (geodesic area / UTM area) of the AOI
    geodesic = _geodesic_m2(geom)
    cell_m2 = CELL * CELL * geodesic / geom.area
    mesh_ha = sum(n * n for n in sizes) * cell_m2**2 / geodesic / 1e4
    assert m.effective_mesh_size_ha == pytest.approx(mesh_ha, rel=1e-4)
    horiz = inside[:, :-1] & inside[:, 1:] & (codes[:, :-1] != codes[:, 1:])
    vert = inside[:-1, :] & inside[1:, :] & (codes[:-1, :] != codes[1:, :])
    edge_m = (horiz.sum() + vert.sum()) * math.sqrt(cell_m2)
    assert m.edge_density_m_per_ha == pytest.approx(edge_m / (geodesic / 1e4), rel=1e-4)


def test_covering_window_takes_every_touched_cell(lanjaron_dir: Path) -> None:
    with rasterio.open(lanjaron_dir / "clc.tif") as ds:
        t = ds.transform
        for col, row, fx, fy, w, h in _BOXES:
            geom = _box_aoi(ds, col, row, fx, fy, w, h)
            win = covering_window(geom.bounds, t, ds.width, ds.height)
            last_col = math.floor(col + fx + w / CELL)  # index of the cell holding the right edge
            last_row = math.floor(row + fy + h / CELL)
            assert (win.col_off, win.row_off) == (col, row)
            assert (win.col_off + win.width - 1, win.row_off + win.height - 1) == (last_col, last_row)
        # bounds on cell edges: exactly the cells inside, no empty extra row or column
        edge = box(t.c + 10 * CELL, t.f - 30 * CELL, t.c + 20 * CELL, t.f - 20 * CELL)
        assert covering_window(edge.bounds, t, ds.width, ds.height) == rasterio.windows.Window(10, 20, 10, 10)
        # a margin grows the window, clipped to the raster; a box off the raster has no window
        corner = box(t.c, t.f - 2 * CELL, t.c + 2 * CELL, t.f)
        assert covering_window(corner.bounds, t, ds.width, ds.height, margin=1) == rasterio.windows.Window(0, 0, 3, 3)
        assert covering_window((t.c - 500, t.f + 100, t.c - 100, t.f + 500), t, ds.width, ds.height) is None


@pytest.mark.parametrize("case", _BOXES)
def test_terrain_matches_the_whole_raster(lanjaron_dir: Path, lanjaron_raster: Catalog, case) -> None:  # type: ignore[no-untyped-def]
    # Independent: exactextract on the file itself (no window), slope from the whole raster.
    with rasterio.open(lanjaron_dir / "mdt.tif") as ds:
        geom = _box_aoi(ds, *case)
        feats = [{"type": "Feature", "properties": {}, "geometry": mapping(geom)}]
        z = exact_extract(ds, feats, ["mean", "min", "max"])[0]["properties"]
        dem = ds.read(1).astype("float64")
        t = ds.transform
    gy, gx = np.gradient(dem, abs(t.e), abs(t.a))
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    from exactextract.raster import NumPyRasterSource

    src = NumPyRasterSource(np.ma.masked_invalid(slope), t.c, t.f + t.e * dem.shape[0], t.c + t.a * dem.shape[1], t.f)
    s = exact_extract(src, feats, ["mean", "max"])[0]["properties"]

    result = terrain.analyse(load_aoi(geom.wkt, crs="EPSG:25830"), lanjaron_raster)
    assert result.available
    assert result.mean_elevation_m == pytest.approx(z["mean"], abs=0.01)
    assert result.min_elevation_m == pytest.approx(z["min"], abs=0.01)
    assert result.max_elevation_m == pytest.approx(z["max"], abs=0.01)
    assert result.mean_slope_deg == pytest.approx(s["mean"], abs=1e-3)
    assert result.max_slope_deg == pytest.approx(s["max"], abs=1e-3)


def test_whole_municipality_grid_has_every_cell(
    lanjaron_dir: Path, lanjaron_raster: Catalog, lanjaron_aoi: AOI, lanjaron_boundary_wkt: str
) -> None:
    geom = shapely.from_wkt(lanjaron_boundary_wkt)
    with rasterio.open(lanjaron_dir / "clc.tif") as ds:
        codes, inside = _truth_grid(ds, geom)
    grid = landscape.class_grid(lanjaron_aoi, lanjaron_raster)
    assert grid is not None and int(grid.inside.sum()) == int(inside.sum())
    m = landscape.metrics(grid, lanjaron_aoi.area_m2)
    assert m.patch_count == len(_components(inside, codes))
    natural = inside & np.isin(codes, sorted(NATURAL))
    assert m.natural_patch_count == len(_components(natural, np.where(natural, 1, 0)))
