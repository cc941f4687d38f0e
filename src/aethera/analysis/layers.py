"""Reading the catalog's layers: only the window or bounding box a question needs, with clear errors.

Vector reads go through pyogrio with a `bbox` in the layer's own CRS (computed by reprojecting the
search region, densified), so a continental Natura 2000 file costs what the AOI's neighbourhood holds.
Raster reads go through rasterio windows. Any failure to open a file becomes a `DatasetError` naming the
layer and the file's name (never its directory); a transient one (a layer on S3 or a web server whose
server failed, throttled or timed out) a `DatasetUnavailable`, so the run is tried again
(`aethera.data.gdal_io`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from aethera.analysis.projection import reproject, reproject_bounds, reproject_many, to_crs
from aethera.data.catalog import Catalog, LayerSource
from aethera.data.gdal_io import read_error
from aethera.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class Features:
    """The features of one or more sources of a layer, with the configured attributes normalised."""

    layer: str
    crs: CRS
    geoms: np.ndarray  # shapely geometries in `crs`
    ids: list[str]
    names: list[str | None]
    types: list[str | None]
    populations: list[int | None]
    codes: list[int | None]
    sources: list[LayerSource]  # the source of each feature

    def __len__(self) -> int:
        return len(self.geoms)


def layer_crs(source: LayerSource, ds: Any = None) -> CRS:
    """The CRS of a source (the catalog's `crs` override, else the file's); `ds`: the raster, already open."""
    if source.crs:
        return to_crs(source.crs)
    if source.format == "raster":
        if ds is None:
            with open_raster(source) as opened:
                return layer_crs(source, opened)
        if ds.crs is None:
            raise DatasetError(
                f"layer {source.layer!r}: {source.display} has no CRS; set crs in the catalog", layer=source.layer
            )
        return to_crs(ds.crs)
    info = _vector_info(source)
    if not info.get("crs"):
        raise DatasetError(
            f"layer {source.layer!r}: {source.display} has no CRS; set crs in the catalog", layer=source.layer
        )
    return to_crs(info["crs"])


@contextmanager
def open_raster(source: LayerSource) -> Iterator[Any]:
    """A rasterio dataset of the source; `DatasetError` naming the layer when it cannot be opened."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        ds = rasterio.open(source.path)
    except RasterioIOError as exc:
        raise read_error(
            exc,
            source.layer,
            f"layer {source.layer!r}: file {source.display} is missing or not a readable raster",
            source.display,
        ) from None
    try:
        if source.band > ds.count:
            raise DatasetError(
                f"layer {source.layer!r}: {source.display} has no band {source.band}", layer=source.layer
            )
        yield ds
    finally:
        ds.close()


def _vector_info(source: LayerSource) -> dict[str, Any]:
    from pyogrio.errors import DataLayerError, DataSourceError

    from aethera.data.vector_info import read_info

    try:
        return read_info(source.path, layer=source.sublayer)
    except (DataSourceError, DataLayerError) as exc:
        raise read_error(
            exc,
            source.layer,
            f"layer {source.layer!r}: file {source.display} is missing or not a readable vector layer",
            source.display,
        ) from None


def land_cover_extent(catalog: Catalog) -> tuple[BaseGeometry, CRS]:
    """The land-cover layer's extent as a box in its own CRS."""
    source = catalog.land_cover()
    if source.format == "raster":
        with open_raster(source) as ds:
            crs = to_crs(source.crs) if source.crs else to_crs(ds.crs)
            return box(*ds.bounds), crs
    from pyogrio.errors import DataLayerError, DataSourceError

    from aethera.data.vector_info import read_info

    try:
        info = read_info(source.path, layer=source.sublayer, force_total_bounds=True)
    except (DataSourceError, DataLayerError) as exc:
        raise read_error(
            exc,
            "land_cover",
            f"layer 'land_cover': file {source.display} is missing or not a readable vector layer",
            source.display,
        ) from None
    crs = to_crs(source.crs or info["crs"])
    return box(*info["total_bounds"]), crs


def read_features(
    catalog: Catalog,
    layer: str,
    region: BaseGeometry,
    region_crs: CRS,
    *,
    clip_to_region: bool = False,
) -> Features | None:
    """Features of every source of `layer` whose bounding box meets `region` (given in `region_crs`).

    Returns None when the catalog does not configure the layer. Geometries come back in the CRS of the
    first source (all sources are reprojected to it), repaired with make_valid where invalid.
    """
    sources = catalog.sources(layer)
    if not sources:
        return None
    return read_source_features(sources, region, region_crs, clip_to_region=clip_to_region)


def read_source_features(
    sources: tuple[LayerSource, ...],
    region: BaseGeometry,
    region_crs: CRS,
    *,
    clip_to_region: bool = False,
) -> Features:
    """`read_features` for an explicit list of sources (all of one layer)."""
    layer = sources[0].layer
    out_crs: CRS | None = None
    parts: list[tuple[LayerSource, Any]] = []
    for source in sources:
        crs = layer_crs(source)
        bbox = reproject_bounds(region.bounds, region_crs, crs) if crs != region_crs else region.bounds
        df = _read(source, bbox)
        if out_crs is None:
            out_crs = crs
        geoms = np.asarray(df.geometry.values, dtype=object)
        if crs != out_crs:
            geoms = reproject_many(geoms, crs, out_crs)
        parts.append((source, (df, geoms)))
    assert out_crs is not None
    geoms_all: list[BaseGeometry] = []
    ids: list[str] = []
    names: list[str | None] = []
    types: list[str | None] = []
    pops: list[int | None] = []
    codes: list[int | None] = []
    srcs: list[LayerSource] = []
    region_in = reproject(region, region_crs, out_crs) if clip_to_region else None
    from aethera.data.corine import parse_code

    for source, (df, geoms) in parts:
        for i, g in enumerate(geoms):
            if g is None or g.is_empty:
                continue
            if not g.is_valid:
                g = shapely.make_valid(g)
            if region_in is not None:
                g = g.intersection(region_in)
                if g.is_empty:
                    continue
            geoms_all.append(g)
            ids.append(_text(df, source.id_column, i) or f"{source.display}#{int(df.index[i]) + 1}")
            names.append(_text(df, source.name_column, i))
            types.append(_text(df, source.type_column, i))
            pops.append(_int(df, source.population_column, i))
            codes.append(parse_code(df[source.code_column].iloc[i]) if source.code_column else None)
            srcs.append(source)
    return Features(layer, out_crs, np.array(geoms_all, dtype=object), ids, names, types, pops, codes, srcs)


def _read(source: LayerSource, bbox: tuple[float, float, float, float]) -> Any:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError, FieldError

    cols = source.columns()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return pyogrio.read_dataframe(source.path, layer=source.sublayer, bbox=bbox, columns=cols)
    except FieldError:
        raise DatasetError(
            f"layer {source.layer!r}: {source.display} lacks a configured column ({', '.join(cols)})",
            layer=source.layer,
        ) from None
    except (DataSourceError, DataLayerError) as exc:
        if "not found" in str(exc).lower() and "column" in str(exc).lower():
            raise DatasetError(
                f"layer {source.layer!r}: {source.display} lacks a configured column ({', '.join(cols)})",
                layer=source.layer,
            ) from None
        raise read_error(
            exc,
            source.layer,
            f"layer {source.layer!r}: file {source.display} is missing or not a readable vector layer",
            source.display,
        ) from None
    except ValueError as exc:  # pyogrio raises ValueError for unknown columns in some versions
        # the library's text can carry the server path of the file, so neither the user nor the log sees it
        log.warning("layer %r: %s could not be read (%s)", source.layer, source.display, type(exc).__name__)
        raise DatasetError(
            f"layer {source.layer!r}: {source.display} could not be read with the configured columns "
            f"({', '.join(cols)}); check the catalog",
            layer=source.layer,
        ) from None


def _text(df: Any, column: str | None, i: int) -> str | None:
    if not column:
        return None
    v = df[column].iloc[i]
    if v is None or (isinstance(v, float) and v != v):
        return None
    return str(v)


def _int(df: Any, column: str | None, i: int) -> int | None:
    if not column:
        return None
    v = df[column].iloc[i]
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f) if f == f else None
