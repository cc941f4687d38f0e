"""Landscape-pattern metrics of the AOI's land cover, on a class grid (FRAGSTATS-style).

The grid is the land-cover raster's own window under the AOI (a vector layer is rasterised at a
resolution giving at most about 4 million cells), restricted to cells whose centre lies inside the AOI.
Patches are 8-connected groups of cells of one class. Cell sizes are converted to metres in the
equal-area sense (the layer CRS's local area distortion is taken out), so patch areas and edge lengths
are true to well under 0.1 %.

- patch count and density (patches per 100 ha)
- edge density: length of the boundaries between different classes inside the AOI, per ha (the AOI's
  own boundary is not an edge, as in FRAGSTATS' default)
- effective mesh size of natural habitat (Jaeger 2000, Landscape Ecology 15: 115-130):
  sum of squared natural patch areas / AOI area; the area a randomly placed animal can reach without
  leaving natural habitat. Larger means less fragmented.
- largest natural patch share: share of the natural habitat in its single largest patch
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyproj import Geod

from aethera.analysis.aoi import AOI
from aethera.analysis.layers import layer_crs, open_raster, read_features
from aethera.analysis.windows import covering_window
from aethera.data import corine
from aethera.data.catalog import Catalog

MAX_CELLS = 16_000_000  # a larger window is read at a coarser resolution (nearest neighbour)
VECTOR_TARGET_CELLS = 4_000_000
_NATURAL = np.array(sorted(c for c, cls in corine.CLASSES.items() if cls.natural), dtype=np.int32)


@dataclass
class LandscapeMetrics:
    cells: int  # grid cells inside the AOI with a class
    cell_size_m: float  # side of a cell in metres (geometric mean of width and height)
    patch_count: int
    patch_density_per_100ha: float
    edge_density_m_per_ha: float
    natural_area_ha: float
    natural_patch_count: int
    effective_mesh_size_ha: float
    largest_natural_patch_share: float | None  # None when there is no natural habitat
    note: str | None = None


@dataclass
class ClassGrid:
    codes: np.ndarray  # int32 CORINE codes, 0 where no class
    inside: np.ndarray  # bool: cell centre inside the AOI and a class present
    transform: object  # affine transform of the grid in the layer CRS
    cell_w_m: float
    cell_h_m: float
    note: str | None


def class_grid(aoi: AOI, catalog: Catalog) -> ClassGrid | None:
    """The AOI's class grid, or None when the AOI lies outside the land-cover layer."""
    from rasterio.features import geometry_mask, rasterize
    from rasterio.transform import from_origin

    source = catalog.land_cover()
    crs = layer_crs(source)
    geom = aoi.in_crs(crs)
    note = None
    if source.format == "raster":
        with open_raster(source) as ds:
            # every cell the AOI's bounds touch, the last row and column included
            win = covering_window(geom.bounds, ds.transform, ds.width, ds.height)
            if win is None:
                return None
            factor = max(1, math.ceil(math.sqrt(win.width * win.height / MAX_CELLS)))
            shape = (max(1, int(win.height // factor)), max(1, int(win.width // factor)))
            data = ds.read(source.band, window=win, out_shape=shape, masked=True)
            from affine import Affine

            transform = ds.window_transform(win) @ Affine.scale(win.width / shape[1], win.height / shape[0])
            codes = np.where(np.ma.getmaskarray(data), 0, np.asarray(data.data, dtype=np.int64))
            if source.code_scheme == "grid_code":
                lut = np.zeros(max(int(codes.max()), 50) + 1, dtype=np.int64)
                for g in range(1, 45):
                    lut[g] = corine.from_grid_code(g) or 0
                codes = lut[np.clip(codes, 0, len(lut) - 1)]
            codes = codes.astype(np.int32)
            if factor > 1:
                note = f"landscape metrics computed on cells {factor}x coarser than the raster (AOI window too large)"
    else:
        features = read_features(catalog, "land_cover", geom, crs, clip_to_region=True)
        minx, miny, maxx, maxy = geom.bounds
        res = max(math.sqrt((maxx - minx) * (maxy - miny) / VECTOR_TARGET_CELLS), 1e-9)
        if not crs.is_geographic:
            res = max(res, 5.0)
        width = max(1, math.ceil((maxx - minx) / res))
        height = max(1, math.ceil((maxy - miny) / res))
        transform = from_origin(minx, maxy, res, res)
        shapes = [(g, c) for g, c in zip(features.geoms, features.codes) if c] if features else []
        codes = (
            rasterize(shapes, out_shape=(height, width), transform=transform, fill=0, dtype="int32")
            if shapes
            else np.zeros((height, width), dtype=np.int32)
        )
        note = f"vector land cover rasterised at {res:.3g} layer units for the landscape metrics"
    mask = geometry_mask([geom], out_shape=codes.shape, transform=transform, invert=True)
    inside = mask & (codes > 0)
    # Cell size in metres, equal-area sense.
    a, e = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        lon, lat = aoi.wgs84.centroid.x, aoi.wgs84.centroid.y
        geod = Geod(ellps="WGS84")
        w = geod.inv(lon, lat, lon + a, lat)[2]
        h = geod.inv(lon, lat, lon, lat + e)[2]
    else:
        unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        scale = math.sqrt(aoi.area_m2 / geom.area) if geom.area > 0 else 1.0
        w, h = a * unit * scale, e * unit * scale
    return ClassGrid(codes, inside, transform, float(w), float(h), note)


def metrics(grid: ClassGrid, aoi_area_m2: float) -> LandscapeMetrics:
    from rasterio.features import shapes

    codes, inside = grid.codes, grid.inside
    cell_m2 = grid.cell_w_m * grid.cell_h_m
    aoi_ha = aoi_area_m2 / 1e4
    cells = int(inside.sum())
    # Patches: polygonising the masked grid yields one polygon per 8-connected patch of one class.
    patch_count = 0
    if cells:
        for _ in shapes(codes, mask=inside, connectivity=8, transform=grid.transform):
            patch_count += 1
    # Edges between different classes, both cells inside the AOI.
    horiz = inside[:, :-1] & inside[:, 1:] & (codes[:, :-1] != codes[:, 1:])
    vert = inside[:-1, :] & inside[1:, :] & (codes[:-1, :] != codes[1:, :])
    edge_m = float(horiz.sum()) * grid.cell_h_m + float(vert.sum()) * grid.cell_w_m
    natural = inside & np.isin(codes, _NATURAL)
    natural_cells = int(natural.sum())
    patch_sizes: list[int] = []
    if natural_cells:
        pixel_area = abs(grid.transform.a * grid.transform.e)  # type: ignore[attr-defined]
        from shapely.geometry import shape as to_shape

        for geom, _ in shapes(natural.astype(np.uint8), mask=natural, connectivity=8, transform=grid.transform):
            patch_sizes.append(round(to_shape(geom).area / pixel_area))
    sizes_m2 = np.array(patch_sizes, dtype=np.float64) * cell_m2
    mesh_ha = float((sizes_m2**2).sum() / aoi_area_m2 / 1e4) if aoi_area_m2 > 0 else 0.0
    largest = float(sizes_m2.max() / sizes_m2.sum()) if len(sizes_m2) else None
    note = grid.note
    if cells < 100:
        extra = f"the AOI covers only {cells} cells of the land-cover grid; pattern metrics are coarse"
        note = f"{note}; {extra}" if note else extra
    return LandscapeMetrics(
        cells=cells,
        cell_size_m=round(math.sqrt(cell_m2), 3),
        patch_count=patch_count,
        patch_density_per_100ha=round(patch_count / aoi_ha * 100.0, 4) if aoi_ha > 0 else 0.0,
        edge_density_m_per_ha=round(edge_m / aoi_ha, 4) if aoi_ha > 0 else 0.0,
        natural_area_ha=round(natural_cells * cell_m2 / 1e4, 4),
        natural_patch_count=len(patch_sizes),
        effective_mesh_size_ha=round(mesh_ha, 4),
        largest_natural_patch_share=round(largest, 6) if largest is not None else None,
        note=note,
    )
