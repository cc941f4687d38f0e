"""Base map layers: the catalog's layers as GeoJSON in EPSG:4326, for a map's background.

A base layer is drawn from the dataset catalog (`data/catalog.py`): `natura2000` (the protected areas
that are Natura 2000 sites: a file flagged `natura2000 = true`, or the sites whose type says so), `corine`
(the land cover), and every catalog layer under its own name (`land_cover`, `protected_areas`,
`settlements`, `water`). The elevation model is listed but never drawn.

A request names an extent (a bbox in longitude, latitude; the catalog's extent by default). What is
drawn for it is bounded whatever the layer's size:
- geometry is simplified to the extent's scale: a tolerance of 1/`TARGET_PX` of the extent's longer
  side, in the layer's own CRS (so no vertex moves further than a pixel of a map `TARGET_PX` wide);
- at most `max_features` features (the first ones the layer lists in the extent; `capped` says so);
- a vector layer is read in batches of `BATCH` features by feature id, so only one batch of geometries
  is held at a time; the ids of the features in the extent are found first (with the layer's spatial
  index), which also tells whether the cap cuts the answer before a byte is sent;
- a raster land cover is polygonised within the extent from a window decimated to at most
  `RASTER_PX` cells on its longer side (modal resampling keeps the classes categorical); the cells
  read are bounded by that window, never by the layer's size.

Everything here is synchronous GDAL and numpy work: the API runs it in a thread (`api/routes/layers.py`).
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import shapely
from pyproj import CRS

from aethera.analysis.layers import layer_crs, open_raster
from aethera.analysis.projection import reproject_bounds, reproject_many, round_coords
from aethera.analysis.protected_areas import NATURA_TYPES, is_natura2000
from aethera.data import corine
from aethera.data.catalog import Catalog, LayerSource, inspect_source
from aethera.data.gdal_io import read_error

WGS84 = CRS.from_epsg(4326)
TARGET_PX = 1024  # simplification: a vertex may move by 1/TARGET_PX of the extent's longer side
RASTER_PX = 512  # a raster land cover is polygonised from at most this many cells on the longer side
BATCH = 500  # features read, simplified and encoded at once
COORD_DECIMALS = 6  # about 0.1 m: below any tolerance a map view uses
ENCODING_VERSION = "1"  # part of the ETag: bump when the answer's bytes change for the same inputs

Bbox = tuple[float, float, float, float]

# base layer name -> the catalog layer it draws
ALIASES: dict[str, str] = {"natura2000": "protected_areas", "corine": "land_cover"}
DRAWABLE_LAYERS = ("land_cover", "protected_areas", "settlements", "water")


@dataclass(frozen=True)
class BaseLayer:
    name: str
    sources: tuple[LayerSource, ...]
    natura2000_only: bool = False


@dataclass
class BasemapIndex:
    """What the catalog can draw, computed once per loaded catalog (it opens each file's header)."""

    layers: dict[str, BaseLayer]
    available: dict[str, bool]
    reasons: dict[str, str]  # why a layer cannot be drawn
    extent: Bbox | None  # the union of the drawable layers' extents, longitude, latitude
    fingerprint: str  # changes when the catalog or a local layer file changes


def build_index(catalog: Catalog) -> BasemapIndex:
    layers: dict[str, BaseLayer] = {}
    available: dict[str, bool] = {}
    reasons: dict[str, str] = {}
    bounds: list[Bbox] = []
    digest = hashlib.sha256(f"{ENCODING_VERSION}|{catalog.path}|{_stat(str(catalog.path))}".encode())
    ok_layers: set[str] = set()
    for layer in DRAWABLE_LAYERS:
        sources = catalog.sources(layer)
        if not sources:
            reasons[layer] = "not configured in the dataset catalog"
            continue
        reports = [inspect_source(s) for s in sources]
        bad = [r for r in reports if not r.ok]
        for s in sources:
            digest.update(f"|{s.path}|{s.sublayer}|{_stat(s.path)}".encode())
        if bad:
            reasons[layer] = f"{bad[0].display}: {'; '.join(bad[0].problems)}"
            continue
        ok_layers.add(layer)
        bounds.extend(r.bounds_wgs84 for r in reports if r.bounds_wgs84 is not None)
    for layer in DRAWABLE_LAYERS:
        layers[layer] = BaseLayer(layer, catalog.sources(layer))
    layers["corine"] = BaseLayer("corine", catalog.sources("land_cover"))
    natura = tuple(s for s in catalog.sources("protected_areas") if s.natura2000 is not False)
    layers["natura2000"] = BaseLayer("natura2000", natura, natura2000_only=True)
    if catalog.has("elevation"):  # configured, but a terrain model is no map layer
        available["elevation"] = False
        reasons["elevation"] = "an elevation model is not drawn as a map layer"
    for name, base in layers.items():
        catalog_layer = ALIASES.get(name, name)
        available[name] = catalog_layer in ok_layers and bool(base.sources)
        if not available[name] and name not in reasons:
            reasons[name] = reasons.get(catalog_layer) or "the catalog flags no protected-area file as Natura 2000"
    extent = None
    if bounds:
        extent = (
            min(b[0] for b in bounds),
            min(b[1] for b in bounds),
            max(b[2] for b in bounds),
            max(b[3] for b in bounds),
        )
    return BasemapIndex(
        layers=layers,
        available=dict(sorted(available.items())),
        reasons=reasons,
        extent=extent,
        fingerprint=digest.hexdigest()[:32],
    )


def _stat(path: str) -> str:
    """Size and modification time of a local file (a remote one changes the ETag with the catalog only)."""
    if path.startswith("/vsi"):
        return "remote"
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def etag(index: BasemapIndex, name: str, bbox: Bbox, max_features: int) -> str:
    key = f"{index.fingerprint}|{name}|{','.join(f'{v:.6f}' for v in bbox)}|{max_features}"
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def tolerance(bbox_src: Bbox) -> float:
    """Simplification tolerance, in the layer CRS's units, for an extent given in that CRS."""
    return max(bbox_src[2] - bbox_src[0], bbox_src[3] - bbox_src[1]) / TARGET_PX


@dataclass
class Plan:
    """One answer, planned: whether the cap cuts it, and its features as encoded batches (lazily)."""

    capped: bool
    count: int
    _parts: list[Any] = field(default_factory=list)

    def batches(self) -> Generator[bytes, None, None]:
        """The features, `BATCH` at a time, each batch encoded as comma-separated GeoJSON features."""
        for part in self._parts:
            yield from part()


def plan(layer: BaseLayer, bbox: Bbox, max_features: int) -> Plan:
    """Find what `layer` holds in `bbox` (longitude, latitude), up to `max_features` features."""
    out = Plan(capped=False, count=0)
    for i, source in enumerate(layer.sources):
        remaining = max_features - out.count
        if remaining <= 0:  # the cap is reached: cut only if a later source has something here
            out.capped = _holds_any(layer, layer.sources[i:], bbox)
            break
        if source.format == "raster":
            features, more = _raster_features(source, bbox, remaining)
            if features:
                out._parts.append(lambda f=features: _encode_in_batches(f))
            out.count += len(features)
        else:
            crs = layer_crs(source)
            bbox_src = reproject_bounds(bbox, WGS84, crs)
            fids, more = _vector_fids(source, bbox_src, remaining, layer.natura2000_only)
            if len(fids):
                tol = tolerance(bbox_src)
                out._parts.append(lambda s=source, f=fids, c=crs, t=tol: _vector_batches(s, f, c, t))
            out.count += len(fids)
        if more:
            out.capped = True
            break
    return out


def _holds_any(layer: BaseLayer, sources: tuple[LayerSource, ...], bbox: Bbox) -> bool:
    for source in sources:
        if source.format == "raster":
            if _raster_features(source, bbox, 1)[0]:
                return True
            continue
        crs = layer_crs(source)
        fids, _ = _vector_fids(source, reproject_bounds(bbox, WGS84, crs), 1, layer.natura2000_only)
        if len(fids):
            return True
    return False


# --- vector layers -------------------------------------------------------------------------------


def _natura_where(source: LayerSource) -> str | None:
    """An attribute filter keeping the Natura 2000 sites of a source whose catalog entry does not say."""
    if source.natura2000 is True:
        return None
    if not source.type_column:
        return "0 = 1"  # no type to judge from: none of its sites is known to be Natura 2000
    col = '"' + source.type_column.replace('"', '""') + '"'
    # LIKE is case-insensitive in both OGR SQL and SQLite (GeoPackage)
    terms = [f"{col} LIKE '{t}'" for t in sorted(NATURA_TYPES)] + [f"{col} LIKE '%NATURA%'"]
    return " OR ".join(terms)


def _vector_fids(source: LayerSource, bbox_src: Bbox, limit: int, natura_only: bool) -> tuple[np.ndarray, bool]:
    """Ids of the source's features in the extent, at most `limit`, and whether more are there."""
    import pyogrio

    # a read without geometry makes GDAL write a .aux.xml beside the file: never beside a deployment's data
    pyogrio.set_gdal_config_options({"GDAL_PAM_ENABLED": "NO"})
    where = _natura_where(source) if natura_only else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            df = pyogrio.read_dataframe(
                source.path,
                layer=source.sublayer,
                bbox=bbox_src,
                columns=[],
                read_geometry=False,
                fid_as_index=True,
                where=where,
                max_features=limit + 1,
            )
    except Exception as exc:  # GDAL's text may carry a server path: name the file only
        raise read_error(
            exc, source.layer, f"layer {source.layer!r}: {source.display} cannot be read", source.display
        ) from exc
    fids = np.asarray(df.index, dtype=np.int64)
    return fids[:limit], len(fids) > limit


def _vector_batches(source: LayerSource, fids: np.ndarray, crs: CRS, tol: float) -> Iterator[bytes]:
    import pyogrio

    columns = source.columns()
    for start in range(0, len(fids), BATCH):
        chunk = fids[start : start + BATCH]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                df = pyogrio.read_dataframe(source.path, layer=source.sublayer, fids=chunk, columns=columns)
        except Exception as exc:
            raise read_error(
                exc, source.layer, f"layer {source.layer!r}: {source.display} cannot be read", source.display
            ) from exc
        geoms = np.asarray(df.geometry.values, dtype=object)
        keep = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
        geoms = geoms[keep]
        invalid = ~shapely.is_valid(geoms)
        if invalid.any():
            geoms[invalid] = shapely.make_valid(geoms[invalid])
        geoms = shapely.simplify(geoms, tol, preserve_topology=True)
        geoms = reproject_many(geoms, crs, WGS84)
        props = _properties(source, df[keep] if not keep.all() else df)
        yield _encode(geoms, props)


def _properties(source: LayerSource, df: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{} for _ in range(len(df))]
    names = {
        "id": source.id_column,
        "name": source.name_column,
        "type": source.type_column,
        "population": source.population_column,
        "code": source.code_column,
    }
    for key, column in names.items():
        if not column or column not in df.columns:
            continue
        for row, value in zip(rows, df[column].tolist()):
            row[key] = _json_value(value)
    if source.layer == "land_cover":
        for row in rows:
            code = corine.parse_code(row.get("code"))
            row.update(
                code=code,
                label=corine.label(code) if code else None,
                colour=corine.colour(code) if code else corine.UNKNOWN_COLOUR,
            )
    if source.layer == "protected_areas":
        for row in rows:
            row["natura2000"] = is_natura2000(row.get("type"), source.natura2000)
    for row in rows:
        row["source"] = source.display
    return rows


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else (int(value) if value.is_integer() else value)
    if isinstance(value, np.generic):
        return _json_value(value.item())
    return str(value)


# --- raster land cover ---------------------------------------------------------------------------


def _raster_features(source: LayerSource, bbox: Bbox, limit: int) -> tuple[list[tuple[Any, dict[str, Any]]], bool]:
    """The land-cover classes in the extent as polygons (largest first), at most `limit`."""
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.features import shapes
    from rasterio.windows import Window, from_bounds

    with open_raster(source) as ds:
        crs = CRS.from_user_input(source.crs) if source.crs else CRS.from_user_input(ds.crs)
        bbox_src = reproject_bounds(bbox, WGS84, crs)
        left, bottom, right, top = ds.bounds
        clipped = (max(bbox_src[0], left), max(bbox_src[1], bottom), min(bbox_src[2], right), min(bbox_src[3], top))
        if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
            return [], False
        window = from_bounds(*clipped, transform=ds.transform).round_offsets(op="floor").round_lengths(op="ceil")
        window = window.intersection(Window(0, 0, ds.width, ds.height))
        width, height = int(window.width), int(window.height)
        if width <= 0 or height <= 0:
            return [], False
        factor = max(1, math.ceil(max(width, height) / RASTER_PX))
        out_w, out_h = max(1, math.ceil(width / factor)), max(1, math.ceil(height / factor))
        data = ds.read(source.band, window=window, out_shape=(out_h, out_w), resampling=Resampling.mode)
        nodata = ds.nodata
        transform = ds.window_transform(window) @ Affine.scale(width / out_w, height / out_h)
    codes = data.astype(np.int32)
    valid = np.ones(codes.shape, dtype=bool) if nodata is None else codes != int(nodata)
    if source.code_scheme == "grid_code":
        lookup = np.zeros(max(int(codes.max(initial=0)) + 1, 64), dtype=np.int32)
        for grid in range(1, lookup.size):
            lookup[grid] = corine.from_grid_code(grid) or 0
        codes = lookup[np.clip(codes, 0, lookup.size - 1)]
        valid &= codes > 0
    tol = tolerance(bbox_src)
    found: list[tuple[Any, int]] = []
    for geom, value in shapes(codes, mask=valid, connectivity=4, transform=transform):
        found.append((shapely.geometry.shape(geom), int(value)))
    found.sort(key=lambda item: -item[0].area)  # the cap keeps the largest patches
    kept = found[:limit]
    geoms = np.array([g for g, _ in kept], dtype=object)
    if len(geoms):
        geoms = reproject_many(shapely.simplify(geoms, tol, preserve_topology=True), crs, WGS84)
    features = [
        (g, {"code": code, "label": corine.label(code), "colour": corine.colour(code), "source": source.display})
        for g, (_, code) in zip(geoms, kept)
    ]
    return features, len(found) > limit


def _encode_in_batches(features: list[tuple[Any, dict[str, Any]]]) -> Iterator[bytes]:
    for start in range(0, len(features), BATCH):
        chunk = features[start : start + BATCH]
        yield _encode(np.array([g for g, _ in chunk], dtype=object), [p for _, p in chunk])


# --- encoding ------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def _encode(geoms: np.ndarray, props: list[dict[str, Any]]) -> bytes:
    """Features as `feature,feature,...` (the caller writes the collection around them)."""
    parts = []
    for geom, prop in zip(geoms, props):
        if geom is None or geom.is_empty:
            continue
        geometry = shapely.geometry.mapping(round_coords(geom, COORD_DECIMALS))
        parts.append(_encoder.encode({"type": "Feature", "geometry": geometry, "properties": prop}))
    return b",".join(parts)


def parse_bbox(raw: str) -> Bbox:
    """`minlon,minlat,maxlon,maxlat` in degrees; ValueError with the reason when it is not one."""
    parts = raw.split(",")
    if len(parts) != 4:
        raise ValueError("bbox must be four numbers: minlon,minlat,maxlon,maxlat")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError("bbox must be four numbers: minlon,minlat,maxlon,maxlat") from None
    minlon, minlat, maxlon, maxlat = values
    if not all(math.isfinite(v) for v in values):
        raise ValueError("bbox values must be finite numbers")
    if not (-180 <= minlon < maxlon <= 180 and -90 <= minlat < maxlat <= 90):
        raise ValueError("bbox must lie within -180..180, -90..90 with min < max")
    return values  # type: ignore[return-value]
