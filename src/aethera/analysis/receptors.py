"""Step 4: the nearest protected area, settlement and water body, and how many lie close.

Distances are measured from the AOI boundary (0 when a receptor touches or lies inside the AOI) in the
AOI-centred equidistant CRS, in metres, reported in km. The search starts with the features within 5 km
(which also gives the counts within 0.5, 1, 2 and 5 km) and widens (20, 80, then 100 km) until a receptor
is found; a receptor found within the searched radius is the true nearest, because anything nearer would
lie within that radius too. Nothing within 100 km is `null` with a reason, never a made-up distance.

Without a settlements or water layer, CORINE classes of the land-cover layer stand in (urban fabric 111,
112 for settlements; water bodies 5xx and wetlands 4xx for water), searched up to 20 km, and the result
says so (`source: land_cover_fallback` and a line in `reasons`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from aethera.analysis.aoi import AOI
from aethera.analysis.layers import layer_crs, open_raster, read_features
from aethera.analysis.projection import densify, reproject, reproject_many, zone_buffer
from aethera.analysis.results import Receptor, ReceptorCounts, ReceptorDistances
from aethera.data import corine
from aethera.data.catalog import Catalog

COUNT_DISTANCES_KM: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
SEARCH_RADII_KM: tuple[float, ...] = (5.0, 20.0, 80.0, 100.0)
FALLBACK_RADII_KM: tuple[float, ...] = (5.0, 20.0)
_FALLBACK_MAX_CELLS = 4_000_000  # a wider window is read at a coarser resolution (nearest neighbour)

_LAYERS = {"protected_area": "protected_areas", "settlement": "settlements", "water_body": "water"}


@dataclass
class Candidate:
    receptor_id: str
    name: str | None
    kind: str | None
    population: int | None
    distance_m: float


@dataclass
class Search:
    """What one receptor type's search found."""

    nearest: Receptor | None
    counts: dict[float, int] | None  # within each COUNT_DISTANCES_KM
    reason: str | None
    population_within_1km: int = 0
    unknown_population_within_1km: int = 0
    not_found_within_km: float | None = None  # the layer was searched this far and held none


def analyse(aoi: AOI, catalog: Catalog) -> ReceptorDistances:
    searches = {kind: _search_layer(aoi, catalog, kind) for kind in _LAYERS}
    reasons: dict[str, str] = {}
    for kind, search in searches.items():
        if search.reason:
            reasons[kind] = search.reason
    counts = [
        ReceptorCounts(
            within_km=d,
            protected_areas=_count(searches["protected_area"], d),
            settlements=_count(searches["settlement"], d),
            water_bodies=_count(searches["water_body"], d),
        )
        for d in COUNT_DISTANCES_KM
    ]
    s = searches["settlement"]
    population = None
    if not catalog.has("settlements"):
        reasons["population"] = "the dataset catalog has no settlements layer, so population is unknown"
    elif s.counts is not None:
        if not all(src.population_column for src in catalog.sources("settlements")):
            reasons["population"] = "the settlements layer has no population column"
        elif s.unknown_population_within_1km:
            reasons["population"] = (
                f"{s.unknown_population_within_1km} settlement(s) within 1 km have no population value"
            )
        else:
            population = s.population_within_1km
    return ReceptorDistances(
        nearest_protected_area=searches["protected_area"].nearest,
        nearest_settlement=s.nearest,
        nearest_water_body=searches["water_body"].nearest,
        counts=counts,
        reasons=reasons,
        population_within_1km=population,
        sources={
            kind: ("layer" if catalog.has(layer) else "land_cover_fallback")
            for kind, layer in _LAYERS.items()
            if kind != "protected_area" or catalog.has(layer)
        },
        not_found_within_km={
            kind: search.not_found_within_km
            for kind, search in searches.items()
            if search.not_found_within_km is not None
        },
    )


def _count(search: Search, d: float) -> int | None:
    return None if search.counts is None else search.counts[d]


def _search_layer(aoi: AOI, catalog: Catalog, kind: str) -> Search:
    layer = _LAYERS[kind]
    if not catalog.has(layer):
        if kind == "protected_area":
            return Search(None, None, "the dataset catalog has no protected_areas layer")
        return _fallback(aoi, catalog, kind)
    best, first = _nearest_within(SEARCH_RADII_KM, lambda radius_m: _candidates(aoi, catalog, layer, radius_m))
    if best is not None:
        return _result(kind, best, first, "layer", None)
    what = {"protected_area": "protected area", "settlement": "settlement", "water_body": "water body"}[kind]
    search = _result(
        kind, None, first, "layer", f"no {what} within {SEARCH_RADII_KM[-1]:g} km of the AOI in the {layer} layer"
    )
    search.not_found_within_km = SEARCH_RADII_KM[-1]
    return search


def _nearest_within(
    radii_km: Sequence[float], fetch: Callable[[float], list[Candidate]]
) -> tuple[Candidate | None, list[Candidate]]:
    """The nearest candidate, searching ever wider radii (most AOIs find one in the first, cheapest
    search), and the candidates of the first search, which the counts near the AOI are taken from."""
    first: list[Candidate] | None = None
    for radius_km in radii_km:
        candidates = fetch(radius_km * 1000.0)
        if first is None:
            first = candidates
        within = [c for c in candidates if c.distance_m <= radius_km * 1000.0]
        if within:
            return min(within, key=lambda c: (c.distance_m, c.receptor_id)), first
    return None, first or []


def _candidates(aoi: AOI, catalog: Catalog, layer: str, radius_m: float) -> list[Candidate]:
    region = zone_buffer(aoi.metric_geometry, radius_m)
    features = read_features(catalog, layer, region, aoi.metric_crs, clip_to_region=True)
    if features is None or not len(features):
        return []
    dense = shapely.segmentize(features.geoms, 0.005 if features.crs.is_geographic else 500.0)
    metric = reproject_many(dense, features.crs, aoi.metric_crs)
    distances = shapely.distance(aoi.metric_geometry, metric)
    best: dict[str, Candidate] = {}
    for i, rid in enumerate(features.ids):
        d = float(distances[i])
        c = best.get(rid)
        if c is None or d < c.distance_m:
            best[rid] = Candidate(rid, features.names[i], features.types[i], features.populations[i], d)
    return list(best.values())


def _result(kind: str, best: Candidate | None, first: list[Candidate], source: str, reason: str | None) -> Search:
    counts = {d: sum(1 for c in first if c.distance_m <= d * 1000.0) for d in COUNT_DISTANCES_KM}
    nearest = None
    if best is not None:
        nearest = Receptor(
            receptor_type=kind,  # type: ignore[arg-type]
            receptor_id=best.receptor_id,
            receptor_name=best.name,
            distance_km=round(best.distance_m / 1000.0, 4),
            source=source,  # type: ignore[arg-type]
            kind=best.kind,
            population=best.population,
        )
    close = [c for c in first if c.distance_m <= 1000.0]
    population = sum(c.population or 0 for c in close)
    unknown = sum(1 for c in close if c.population is None)
    return Search(nearest, counts, reason, population, unknown)


# --- CORINE fallback -----------------------------------------------------------------------------


def _fallback(aoi: AOI, catalog: Catalog, kind: str) -> Search:
    if kind == "settlement":
        codes = corine.URBAN_FABRIC_CODES
        what = "urban fabric (CORINE 111, 112)"
    else:
        codes = corine.WATER_CODES | corine.WETLAND_CODES
        what = "water and wetland classes (CORINE 4xx, 5xx)"
    note = (
        f"the dataset catalog has no {_LAYERS[kind]} layer: {what} patches of the land-cover layer "
        f"stand in (nearest patch, counts are patches)"
    )
    best, first = _nearest_within(FALLBACK_RADII_KM, lambda radius_m: _patches(aoi, catalog, codes, radius_m))
    if best is not None:
        return _result(kind, best, first, "land_cover_fallback", note)
    return _result(
        kind, None, first, "land_cover_fallback", note + f"; none within {FALLBACK_RADII_KM[-1]:g} km of the AOI"
    )


def _patches(aoi: AOI, catalog: Catalog, codes: frozenset[int], radius_m: float) -> list[Candidate]:
    source = catalog.land_cover()
    region = zone_buffer(aoi.metric_geometry, radius_m)
    if source.format == "vector":
        features = read_features(catalog, "land_cover", region, aoi.metric_crs, clip_to_region=True)
        if features is None:
            return []
        geoms: list[tuple[BaseGeometry, int]] = [
            (features.geoms[i], c) for i, c in enumerate(features.codes) if c is not None and c in codes
        ]
        crs = features.crs
    else:
        crs = layer_crs(source)
        geoms = _raster_patches(source, crs, reproject(densify(region, aoi.metric_crs), aoi.metric_crs, crs), codes)
    if not geoms:
        return []
    metric = reproject_many(np.array([g for g, _ in geoms], dtype=object), crs, aoi.metric_crs)
    distances = shapely.distance(aoi.metric_geometry, metric)
    out = []
    for k, ((_, code), d) in enumerate(zip(geoms, distances.tolist())):
        out.append(
            Candidate(f"land_cover:{code}:patch{k + 1}", None, f"{corine.label(code)} (CORINE {code})", None, float(d))
        )
    return out


def _raster_patches(source, crs, region: BaseGeometry, codes: frozenset[int]) -> list[tuple[BaseGeometry, int]]:  # type: ignore[no-untyped-def]
    import rasterio.features
    from affine import Affine
    from rasterio.windows import Window, from_bounds

    with open_raster(source) as ds:
        win = from_bounds(*region.bounds, transform=ds.transform)
        win = win.intersection(Window(0, 0, ds.width, ds.height)).round_offsets().round_lengths()
        if win.width <= 0 or win.height <= 0:
            return []
        factor = max(1, int(np.ceil(np.sqrt(win.width * win.height / _FALLBACK_MAX_CELLS))))
        shape = (max(1, int(win.height // factor)), max(1, int(win.width // factor)))
        data = ds.read(source.band, window=win, out_shape=shape)
        transform = ds.window_transform(win) @ Affine.scale(win.width / shape[1], win.height / shape[0])
    values = data.astype("int64")
    if source.code_scheme == "grid_code":
        lut = {g: corine.from_grid_code(g) or 0 for g in np.unique(values).tolist()}
        values = np.vectorize(lambda v: lut.get(v, 0))(values) if lut else values
    mask = np.isin(values, list(codes))
    if not mask.any():
        return []
    out = []
    for geom, value in rasterio.features.shapes(values.astype("int32"), mask=mask, transform=transform, connectivity=8):
        poly = shapely.geometry.shape(geom)
        if poly.intersects(region):
            out.append((poly, int(value)))
    return out
