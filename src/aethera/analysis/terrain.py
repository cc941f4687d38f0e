"""Elevation and slope of the AOI from the optional elevation layer.

Slope is computed from the elevation window under the AOI (one pixel of margin, so edge pixels have
neighbours) with central differences over the pixel size in metres: for a projected layer its CRS units,
for a geographic layer the geodesic size of a pixel at the window's centre. Statistics are weighted by
exact pixel coverage (exactextract), like the land cover. Without an elevation layer every value is
null with the reason, and the indices lower their confidence accordingly.
"""

from __future__ import annotations

import numpy as np
from pyproj import Geod

from aethera.analysis.aoi import AOI
from aethera.analysis.layers import layer_crs, open_raster
from aethera.analysis.results import Terrain
from aethera.analysis.windows import covering_window
from aethera.data.catalog import Catalog

STEEP_DEG = 15.0


def analyse(aoi: AOI, catalog: Catalog) -> Terrain:
    source = catalog.single("elevation")
    if source is None:
        return Terrain(
            available=False, reason="the dataset catalog has no elevation layer: slope and elevation unknown"
        )
    from exactextract import exact_extract
    from exactextract.feature import JSONFeatureSource
    from exactextract.raster import NumPyRasterSource
    from shapely.geometry import box, mapping

    crs = layer_crs(source)
    geom = aoi.in_crs(crs)
    with open_raster(source) as ds:
        inside = geom.intersection(box(*ds.bounds))
        if inside.is_empty or inside.area == 0:
            return Terrain(available=False, reason="the AOI lies outside the elevation layer")
        # every cell under the AOI plus one of margin (so edge cells have neighbours for the slope)
        win = covering_window(inside.bounds, ds.transform, ds.width, ds.height, margin=1)
        if win is None:
            return Terrain(available=False, reason="the AOI lies outside the elevation layer")
        data = ds.read(source.band, window=win, masked=True).astype("float64").filled(np.nan)
        t = ds.window_transform(win)
    dx, dy = abs(t.a), abs(t.e)
    if crs.is_geographic:
        lon = t.c + t.a * data.shape[1] / 2
        lat = t.f + t.e * data.shape[0] / 2
        geod = Geod(ellps="WGS84")
        dx = geod.inv(lon, lat, lon + t.a, lat)[2]
        dy = geod.inv(lon, lat, lon, lat + t.e)[2]
    else:
        unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        dx, dy = dx * unit, dy * unit
    if data.shape[0] >= 2 and data.shape[1] >= 2:
        gy, gx = np.gradient(data, dy, dx)
        slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    else:
        slope = np.full_like(data, np.nan)
    xmin, ymax = t.c, t.f
    xmax, ymin = xmin + t.a * data.shape[1], ymax + t.e * data.shape[0]
    features = JSONFeatureSource([{"type": "Feature", "properties": {}, "geometry": mapping(inside)}])

    def stats(arr: np.ndarray, ops: list[str]) -> dict[str, float]:
        src = NumPyRasterSource(np.ma.masked_invalid(arr), xmin, ymin, xmax, ymax, srs_wkt=crs.to_wkt())
        properties: dict[str, float] = exact_extract(src, features, ops)[0]["properties"]
        return properties

    z = stats(data, ["mean", "min", "max", "count"])
    if not z["count"] or z["count"] != z["count"]:
        return Terrain(available=False, reason="the elevation layer has no data under the AOI")
    s = stats(slope, ["mean", "max"])
    steep = np.where(np.isnan(slope), np.nan, (slope > STEEP_DEG).astype("float64"))
    share = stats(steep, ["mean"])["mean"]
    covered = float(inside.area) / float(geom.area) if geom.area else 0.0
    reason = None
    if covered < 0.999:
        reason = f"the elevation layer covers {covered * 100:.1f} % of the AOI; figures describe that part"
    return Terrain(
        available=True,
        reason=reason,
        mean_elevation_m=_r(z["mean"], 2),
        min_elevation_m=_r(z["min"], 2),
        max_elevation_m=_r(z["max"], 2),
        mean_slope_deg=_r(s["mean"], 3),
        max_slope_deg=_r(s["max"], 3),
        steep_area_pct=_r(share * 100.0 if share == share else None, 3),
        steep_threshold_deg=STEEP_DEG,
        resolution_m=round(float(dx), 3),
    )


def _r(value: float | None, digits: int) -> float | None:
    if value is None or value != value:
        return None
    return round(float(value), digits)
