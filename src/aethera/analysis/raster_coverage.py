"""Exact fractional pixel coverage of a zone, per raster value, in O(perimeter) exact work.

A pixel half inside the zone counts half (exactextract's definition). Only the pixels the zone's boundary
crosses need a fraction: every other pixel is wholly in or wholly out. So the zone's bounding window is cut
into leaves of `LEAF` x `LEAF` pixels, classified on a coarse grid with two rasterisations:
- *edge* leaves: touched by the zone's boundary (all_touched), grown by one leaf so that a leaf GDAL's line
  rasteriser might miss (a boundary running along a leaf edge or through a corner) is still an edge leaf;
- *inner* leaves: the others whose centre is in the zone; a leaf the boundary does not cross is wholly
  inside when its centre is.
Inner leaves are read in row strips (only the column runs that hold them, so a ring's hole is not read)
and counted with `np.bincount`: coverage 1 per pixel, exactly. Edge leaves go to exactextract itself, as
the zone clipped to the union of those leaves: a pixel of an edge leaf lies wholly in that union, so its
coverage fraction there is its fraction in the zone. The sum is exactextract's answer on the whole zone
(its fractions are float32; the tests pin the identity within 1e-6), at a cost of O(perimeter x leaf) for
the exact part instead of O(area).

Small zones (fewer than `DIRECT_BELOW_CELLS` pixels in their window) go to exactextract directly: there
the split costs more than it saves (measured in bench/pipeline.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import shapely
from exactextract import exact_extract
from exactextract.feature import JSONFeature, JSONFeatureSource
from exactextract.raster import RasterioRasterSource
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

LEAF = 8  # pixels per side of a leaf: the exact band is 1-3 leaves wide along the boundary
STRIP_LEAVES = 16  # leaf rows read and clipped together
DIRECT_BELOW_CELLS = 1 << 21  # crossover measured at 0.5-3 M pixels (bench/pipeline.py)
_MERGE_GAP_LEAVES = 4  # column runs closer than this are read as one window (fewer, larger reads)


def value_coverage(
    ds: Any, band: int, zone: BaseGeometry, fill: int, direct_below_cells: int | None = None
) -> tuple[dict[float, float], float]:
    """Coverage-weighted pixel counts per raster value inside `zone` (in the raster's CRS), and their total.

    No-data pixels count under `fill` (exactextract's `default_value`). `zone` must lie within the
    raster's extent. Rasters that are rotated, or zones smaller than `direct_below_cells` pixels (default
    `DIRECT_BELOW_CELLS`), are measured by exactextract directly.
    """
    if direct_below_cells is None:
        direct_below_cells = DIRECT_BELOW_CELLS
    t = ds.transform
    north_up = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
    window = _window(ds, zone) if north_up else None
    if window is None or window[2] * window[3] < direct_below_cells or _band_heavy(zone, abs(t.a * t.e)):
        return _exactextract(ds, band, [zone], fill)
    return _split(ds, band, zone, fill, window)


def _band_heavy(zone: BaseGeometry, cell_area: float) -> bool:
    """True when the exact band (about 3 leaves wide along the boundary) would be a third of the zone or
    more: a thin ring on a coarse raster, a ragged zone. Then splitting saves nothing."""
    band_cells = zone.length / math.sqrt(cell_area) * LEAF * 3
    return band_cells * 3 > zone.area / cell_area


def _window(ds: Any, zone: BaseGeometry) -> tuple[int, int, int, int] | None:
    """(col_off, row_off, width, height) of the pixels under the zone's bounding box, within the raster."""
    t = ds.transform
    minx, miny, maxx, maxy = zone.bounds
    c0 = max(0, math.floor((minx - t.c) / t.a))
    c1 = min(ds.width, math.ceil((maxx - t.c) / t.a))
    r0 = max(0, math.floor((maxy - t.f) / t.e))
    r1 = min(ds.height, math.ceil((miny - t.f) / t.e))
    if c1 <= c0 or r1 <= r0:
        return None
    return c0, r0, c1 - c0, r1 - r0


def _split(
    ds: Any, band: int, zone: BaseGeometry, fill: int, window: tuple[int, int, int, int]
) -> tuple[dict[float, float], float]:
    from rasterio.features import rasterize, shapes
    from rasterio.transform import Affine
    from rasterio.windows import Window

    col_off, row_off, width, height = window
    t = ds.transform
    x0, y0 = t.c + col_off * t.a, t.f + row_off * t.e  # top-left corner of the window
    nrow, ncol = math.ceil(height / LEAF), math.ceil(width / LEAF)
    leaf_t = Affine(t.a * LEAF, 0.0, x0, 0.0, t.e * LEAF, y0)
    edge = rasterize([zone.boundary], out_shape=(nrow, ncol), transform=leaf_t, all_touched=True, dtype="uint8").astype(
        bool
    )
    edge = _grow(edge)
    inner = (
        rasterize([zone], out_shape=(nrow, ncol), transform=leaf_t, all_touched=False, dtype="uint8").astype(bool)
        & ~edge
    )

    units: dict[float, float] = defaultdict(float)
    total = 0.0
    pieces: list[BaseGeometry] = []
    for s0 in range(0, nrow, STRIP_LEAVES):
        s1 = min(nrow, s0 + STRIP_LEAVES)
        for c0, c1 in _runs(inner[s0:s1].any(axis=0)):
            rows = (s0 * LEAF, min(height, s1 * LEAF))
            cols = (c0 * LEAF, min(width, c1 * LEAF))
            data = ds.read(
                band, window=Window(col_off + cols[0], row_off + rows[0], cols[1] - cols[0], rows[1] - rows[0])
            )
            mask = np.repeat(np.repeat(inner[s0:s1, c0:c1], LEAF, axis=0), LEAF, axis=1)
            for value, n in _count(data[mask[: data.shape[0], : data.shape[1]]], ds.nodata, fill).items():
                units[value] += n
                total += n
        # The exact band of this strip: the zone clipped to each connected group of its edge leaves,
        # one piece per group, so each piece's bounding box (what exactextract reads and walks) is only
        # as large as that stretch of boundary.
        strip_edge = edge[s0:s1]
        if not strip_edge.any():
            continue
        strip_t = leaf_t * Affine.translation(0, s0)
        clipped = shapely.clip_by_rect(zone, x0, y0 + s1 * LEAF * t.e, x0 + ncol * LEAF * t.a, y0 + s0 * LEAF * t.e)
        for group, _ in shapes(strip_edge.view(np.uint8), mask=strip_edge, connectivity=8, transform=strip_t):
            piece = _polygonal(shapely.intersection(clipped, shape(group)))
            if piece is not None:
                pieces.append(piece)
    if pieces:
        band_units, band_total = _exactextract(ds, band, pieces, fill)
        for value, n in band_units.items():
            units[value] += n
        total += band_total
    return dict(units), total


def _grow(mask: np.ndarray) -> np.ndarray:
    """`mask` dilated by one cell in the 8 directions."""
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    rows = out.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _runs(flags: np.ndarray, merge_gap: int = _MERGE_GAP_LEAVES) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a 1-D array, runs closer than `merge_gap` merged."""
    idx = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    runs: list[tuple[int, int]] = []
    for start, end in zip(idx[::2].tolist(), idx[1::2].tolist()):
        if runs and start - runs[-1][1] < merge_gap:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _count(values: np.ndarray, nodata: float | None, fill: int) -> dict[float, float]:
    """Pixel count per value, no-data pixels counted under `fill`."""
    if values.size == 0:
        return {}
    out: dict[float, float] = defaultdict(float)
    if nodata is not None:
        is_nd = np.isnan(values) if math.isnan(nodata) else values == nodata
        n_nd = int(np.count_nonzero(is_nd))
        if n_nd:
            out[float(fill)] += n_nd
            values = values[~is_nd]
            if values.size == 0:
                return dict(out)
    if np.issubdtype(values.dtype, np.integer):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < (1 << 20):
            shifted = values - lo if lo else values
            counts = np.bincount(shifted.astype(np.intp, copy=False))
            for offset in np.flatnonzero(counts).tolist():
                out[float(offset + lo)] += int(counts[offset])
            return dict(out)
    uniq, counts = np.unique(values, return_counts=True)
    for value, n in zip(uniq.tolist(), counts.tolist()):
        out[float(value)] += n
    return dict(out)


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygonal part of an overlay result (an intersection can add touching lines or points)."""
    if geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    return shapely.union_all(polys) if polys else None


class _Features(JSONFeatureSource):
    """Zones handed to exactextract as GeoJSON text written by GEOS (no Python walk over coordinates)."""

    def __init__(self, zones: list[BaseGeometry]) -> None:
        super().__init__([{"type": "Feature", "properties": {}} for _ in zones])
        self.texts = shapely.to_geojson(np.asarray(zones, dtype=object)).tolist()

    def __iter__(self) -> Iterator[JSONFeature]:
        for feature, text in zip(self.src, self.texts):
            yield _Feature(feature, text)


class _Feature(JSONFeature):
    def __init__(self, feature: dict[str, Any], geojson: str) -> None:
        super().__init__(feature)
        self.geojson = geojson

    def geometry(self) -> str:
        return self.geojson


def _exactextract(ds: Any, band: int, zones: list[BaseGeometry], fill: int) -> tuple[dict[float, float], float]:
    ops = [f"unique(default_value={fill})", f"frac(default_value={fill})", f"count(default_value={fill})"]
    results = exact_extract(RasterioRasterSource(ds, band), _Features(zones), ops)
    units: dict[float, float] = defaultdict(float)
    total = 0.0
    for feature in results:
        props = feature["properties"]
        count = float(props["count"])
        total += count
        for value, frac in zip(np.asarray(props["unique"]).tolist(), np.asarray(props["frac"]).tolist()):
            units[float(value)] += frac * count
    return dict(units), total
