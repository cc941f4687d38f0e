"""Hand-built test geodata: tiny rasters and vector layers with answers known by construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from aethera.analysis.aoi import AOI, load_aoi
from aethera.data.catalog import Catalog, parse_catalog

# Top-left corner of the test rasters, EPSG:3035 metres (in Lusatia, near the sample region).
X0, Y0 = 4_600_000.0, 3_200_000.0
RES = 100.0


def write_raster(
    path: Path,
    codes: np.ndarray,
    *,
    x0: float = X0,
    y0: float = Y0,
    res: float = RES,
    crs: str = "EPSG:3035",
    nodata: float | None = 0,
    dtype: str = "uint16",
) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=codes.shape[1],
        height=codes.shape[0],
        count=1,
        dtype=dtype,
        crs=crs,
        transform=from_origin(x0, y0, res, res),
        nodata=nodata,
    ) as ds:
        ds.write(codes.astype(dtype), 1)
    return path


def write_vector(
    path: Path, layer: str, geoms: list[BaseGeometry], crs: str = "EPSG:3035", **columns: list[Any]
) -> Path:
    import geopandas as gpd

    df = gpd.GeoDataFrame(columns, geometry=list(geoms), crs=crs)
    df.to_file(path, layer=layer, driver="GPKG", mode="a" if path.exists() else "w")
    return path


def catalog(tmp: Path, **layers: dict[str, Any]) -> Catalog:
    return parse_catalog(layers, base_dir=tmp, path=tmp / "catalog.toml")


def aoi_3035(geom: BaseGeometry) -> AOI:
    return load_aoi(geom.wkt, crs="EPSG:3035")


def to_lonlat(geom: BaseGeometry, src: str = "EPSG:3035") -> BaseGeometry:
    t = Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    return shapely.transform(geom, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))


def uniform_raster(tmp: Path, code: int = 211, size: int = 50, name: str = "lc.tif") -> Path:
    return write_raster(tmp / name, np.full((size, size), code, dtype="uint16"))
