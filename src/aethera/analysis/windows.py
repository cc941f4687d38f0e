"""The raster window of every cell a set of bounds touches.

rasterio's `from_bounds` gives a fractional window; rounding its offset down and its length up
separately (`round_offsets(op="floor").round_lengths(op="ceil")`) drops the last row or column whenever
the offset's fraction plus the length's fraction passes a whole cell. Here the first and last cell
indices are taken from the bounds themselves (floor of the start, ceil of the end), so the window always
covers the bounds; a bound lying on a cell edge within a nanocell does not add an empty row.
"""

from __future__ import annotations

import math

from affine import Affine
from rasterio.windows import Window

_EDGE_TOLERANCE = 1e-9  # in cells: a bound this close to a cell edge lies on it (floating point noise)


def covering_window(
    bounds: tuple[float, float, float, float],
    transform: Affine,
    width: int,
    height: int,
    *,
    margin: int = 0,
) -> Window | None:
    """The integer window of the cells that `bounds` (minx, miny, maxx, maxy, in the raster's CRS)
    touch, grown by `margin` cells on every side and clipped to the raster; None when it misses it.

    The transform must be north-up without rotation (as every layer the catalog accepts).
    """
    minx, miny, maxx, maxy = bounds
    inverse = ~transform
    cols: list[float] = []
    rows: list[float] = []
    for x, y in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy)):
        col, row = inverse @ (x, y)
        cols.append(col)
        rows.append(row)
    col_start = math.floor(min(cols) + _EDGE_TOLERANCE) - margin
    col_stop = math.ceil(max(cols) - _EDGE_TOLERANCE) + margin
    row_start = math.floor(min(rows) + _EDGE_TOLERANCE) - margin
    row_stop = math.ceil(max(rows) - _EDGE_TOLERANCE) + margin
    if col_stop <= col_start:  # a zero-width bounds inside one cell still touches that cell
        col_stop = col_start + 1
    if row_stop <= row_start:
        row_stop = row_start + 1
    col_start, row_start = max(col_start, 0), max(row_start, 0)
    col_stop, row_stop = min(col_stop, width), min(row_stop, height)
    if col_stop <= col_start or row_stop <= row_start:
        return None
    return Window(col_start, row_start, col_stop - col_start, row_stop - row_start)
