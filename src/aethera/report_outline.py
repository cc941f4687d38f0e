"""The AOI outline of report.html: the AOI's polygons as one inline SVG path, simplified to the drawing.

Shown when the run has no site map (`report_map.py`); built here as SVG text because it is a picture,
not a table of the results (the page templates embed it as is).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The outline is a picture OUTLINE_PX wide (or high), so detail finer than the drawing cannot be seen:
# vertices are snapped to a grid of OUTLINE_SNAP_PX and runs of vertices in one cell drawn as one, and
# the whole outline is kept under OUTLINE_MAX_POINTS points (a grid up to OUTLINE_MAX_CELL_PX, then
# every k-th vertex), which bounds both the work and the page whatever the AOI's vertex count (500k
# are accepted). Each step is a vectorised pass over the vertices, and there are at most a few dozen.
OUTLINE_PX = 400.0
OUTLINE_PAD_PX = 10.0
OUTLINE_SNAP_PX = 0.5
OUTLINE_MAX_CELL_PX = 4.0  # 1 % of the drawing: coarser, a grid would flatten the shape itself
OUTLINE_MAX_POINTS = 4000


def _outline_rings(geojson: Any) -> list[Any]:
    """Every ring (a list of positions) of the polygons in a GeoJSON object, in document order."""
    rings: list[Any] = []
    stack = [geojson]
    while stack:  # a stack, not recursion: nested collections cannot exhaust Python's recursion limit
        geometry = stack.pop()
        if not isinstance(geometry, Mapping):
            continue
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        if kind == "Feature":
            stack.append(geometry.get("geometry"))
        elif kind == "FeatureCollection":
            stack.extend(reversed(geometry.get("features") or []))
        elif kind == "GeometryCollection":
            stack.extend(reversed(geometry.get("geometries") or []))
        elif kind == "Polygon" and isinstance(coords, list):
            rings.extend(r for r in coords if isinstance(r, list))
        elif kind == "MultiPolygon" and isinstance(coords, list):
            for polygon in coords:
                if isinstance(polygon, list):
                    rings.extend(r for r in polygon if isinstance(r, list))
    return rings


def _outline_points(rings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of every finite vertex as an (n, 2) array, and the index of the ring of each."""
    flat = [p for ring in rings for p in ring]
    ring_of = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
    try:
        lonlat = np.asarray(flat, dtype=float)
        if lonlat.ndim != 2 or lonlat.shape[1] < 2:
            raise ValueError("not a list of positions")
    except (TypeError, ValueError):  # mixed 2-D/3-D positions, or something that is not a position
        lonlat = np.array(
            [
                (_coordinate(p, 0), _coordinate(p, 1))
                if isinstance(p, (list, tuple)) and len(p) >= 2
                else (math.nan, math.nan)
                for p in flat
            ],
            dtype=float,
        ).reshape(-1, 2)
    lonlat = lonlat[:, :2]
    finite = np.isfinite(lonlat).all(axis=1)
    return lonlat[finite], ring_of[finite]


def _coordinate(position: Sequence[Any], i: int) -> float:
    value = position[i]
    return float(value) if _is_number(value) else math.nan


def _ring_starts(ring_of: np.ndarray) -> np.ndarray:
    """The index of the first vertex of each vertex's ring."""
    starts = np.ones(len(ring_of), dtype=bool)
    starts[1:] = ring_of[1:] != ring_of[:-1]
    index = np.arange(len(ring_of))
    return np.maximum.accumulate(np.where(starts, index, 0))


def _thin(xy: np.ndarray, ring_of: np.ndarray, cell_px: float) -> np.ndarray:
    """Which vertices to draw when those in one grid cell, in a row along a ring, are drawn as one (and
    a closing vertex in the cell of the ring's first is left to the path's "Z"); rings left with fewer
    than 3 points (within a cell or two) are not drawn. Linear in the vertices."""
    if not len(xy):
        return np.zeros(0, dtype=bool)
    cell = np.floor(xy / cell_px)
    keep = np.ones(len(xy), dtype=bool)
    keep[1:] = (ring_of[1:] != ring_of[:-1]) | (cell[1:] != cell[:-1]).any(axis=1)
    first = _ring_starts(ring_of)
    last = np.ones(len(xy), dtype=bool)
    last[:-1] = ring_of[1:] != ring_of[:-1]
    closing = last & (first != np.arange(len(xy))) & (cell == cell[first]).all(axis=1)
    keep &= ~closing
    kept: np.ndarray = keep & _rings_of_three(ring_of, keep)
    return kept


def _rings_of_three(ring_of: np.ndarray, keep: np.ndarray) -> np.ndarray:
    counts = np.bincount(ring_of[keep], minlength=int(ring_of.max()) + 1 if len(ring_of) else 0)
    three_or_more: np.ndarray = counts[ring_of] >= 3
    return three_or_more


def _every_kth(ring_of: np.ndarray, k: int) -> np.ndarray:
    """Every k-th vertex of each ring (its first one included)."""
    kth: np.ndarray = (np.arange(len(ring_of)) - _ring_starts(ring_of)) % k == 0
    return kth


def _outline(xy: np.ndarray, ring_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices to draw (at most OUTLINE_MAX_POINTS) and their rings: at most 4 grid passes, then
    log2(vertices) sampling passes, each linear."""
    cell = OUTLINE_SNAP_PX
    keep = _thin(xy, ring_of, cell)
    xy, ring_of = xy[keep], ring_of[keep]
    while len(xy) > OUTLINE_MAX_POINTS and cell < OUTLINE_MAX_CELL_PX:  # coarser: small rings go first
        cell *= 2
        keep = _thin(xy, ring_of, cell)
        xy, ring_of = xy[keep], ring_of[keep]
    k = 2
    thinned, thinned_ring_of = xy, ring_of
    while len(xy) > OUTLINE_MAX_POINTS:  # a ring that zigzags from cell to cell: every k-th vertex
        sample = _every_kth(thinned_ring_of, k)
        xy, ring_of = thinned[sample], thinned_ring_of[sample]
        keep = _thin(xy, ring_of, cell)
        xy, ring_of = xy[keep], ring_of[keep]
        k *= 2
    return xy, ring_of


def aoi_svg(geojson: Mapping[str, Any] | None) -> str:
    """The AOI outline as inline SVG (lon/lat, x scaled by cos(latitude) so shapes keep proportions),
    simplified to the drawing's resolution."""
    lonlat, ring_of = _outline_points(_outline_rings(geojson))
    if not len(lonlat):
        return ""
    (lon_min, lat_min), (lon_max, lat_max) = lonlat.min(axis=0), lonlat.max(axis=0)
    k = math.cos(math.radians((lat_min + lat_max) / 2))
    w = max(float(lon_max - lon_min) * k, 1e-9)
    h = max(float(lat_max - lat_min), 1e-9)
    scale = (OUTLINE_PX - 2 * OUTLINE_PAD_PX) / max(w, h)
    vw, vh = w * scale + 2 * OUTLINE_PAD_PX, h * scale + 2 * OUTLINE_PAD_PX
    xy = np.column_stack(
        (
            OUTLINE_PAD_PX + (lonlat[:, 0] - lon_min) * (k * scale),
            OUTLINE_PAD_PX + (lat_max - lonlat[:, 1]) * scale,
        )
    )
    xy, ring_of = _outline(xy, ring_of)
    if not len(xy):
        return ""
    breaks = np.flatnonzero(ring_of[1:] != ring_of[:-1]) + 1
    paths = []
    for ring in np.split(xy, breaks):
        paths.append(
            " ".join(("M" if i == 0 else "L") + f"{x:.1f},{y:.1f}" for i, (x, y) in enumerate(ring.tolist())) + " Z"
        )
    return (
        f'<svg class="aoi" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {vw:.1f} {vh:.1f}" role="img" '
        f'aria-label="AOI outline"><path d="{" ".join(paths)}" fill="#4a7fb5" fill-opacity="0.25" '
        f'stroke="#1f4e79" stroke-width="1.5" fill-rule="evenodd"/></svg>'
        '<p class="sub">Outline of the AOI, north up, longitude scaled by the cosine of the latitude.</p>'
    )
