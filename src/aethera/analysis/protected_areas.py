"""Step 3: protected areas over and around the AOI.

- Overlap is measured on the *dissolved* union of the sites: a national park that contains an SAC
  counts once, so `protected_overlap_pct` can never exceed 100 %. Per-site overlaps are listed too (they
  may add up to more than the dissolved figure, which is the point of listing both).
- Distances are from the AOI boundary in the AOI-centred equidistant CRS (0 when a site touches or
  overlaps the AOI); areas in the equal-area CRS.
- Features sharing a site code (the same site in two sources, or a site split into several rows) are
  merged into one site.
- Zone and proximity rules must see every site near the AOI, not only the nearest or the overlapped
  one: `sites_not_overlapped` lists every site the AOI does not overlap within the zone of influence or
  5 km, whichever is larger, so an overlapped site never hides a second one 700 m away.

Output layers (GeoJSON, EPSG:4326): `natura` (sites within the buffer, clipped to the zone of influence
so a national park does not weigh megabytes), `overlap` (the dissolved intersection with the AOI).
The `sensitivity` layer (the AOI with its score) is built by `sensitivity_layer` once the indices ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from aethera.analysis.aoi import AOI
from aethera.analysis.geojson import feature_collection
from aethera.analysis.layers import read_features
from aethera.analysis.projection import reproject_many, zone_buffer
from aethera.analysis.results import Biodiversity, SiteNearby, SiteOverlap
from aethera.data.catalog import Catalog

_NATURA_TYPES = {"SAC", "SCI", "PSCI", "SPA", "SAC/SPA", "SPA/SAC", "SCI/SPA", "A", "B", "C"}
NATURA_TYPES = frozenset(_NATURA_TYPES)  # what a site type says Natura 2000 (base map filter too)
# A margin around the zone of influence so that clipping sites to it never shortens a distance.
_CLIP_MARGIN_M = 250.0
# Proximity rules look at distance bands up to this far (the zone of influence if it is larger).
PROXIMITY_SEARCH_KM = 5.0


@dataclass
class Site:
    site_code: str
    name: str | None
    type: str | None
    natura2000: bool
    metric: BaseGeometry  # in the AOI's metric CRS (clipped to the zone of influence + margin)
    area: BaseGeometry  # in the AOI's equal-area CRS (same clip)


def is_natura2000(site_type: str | None, declared: bool | None) -> bool:
    """Whether a site is part of Natura 2000: the catalog says so, or its type (SAC, SCI, SPA; A/B/C)."""
    if declared is not None:
        return declared
    if not site_type:
        return False
    t = site_type.strip().upper()
    return t in _NATURA_TYPES or "NATURA" in t


def read_sites(aoi: AOI, catalog: Catalog, radius_m: float) -> list[Site] | None:
    """Sites within `radius_m` of the AOI (None when the catalog has no protected_areas layer)."""
    region = zone_buffer(aoi.metric_geometry, radius_m + _CLIP_MARGIN_M)
    features = read_features(catalog, "protected_areas", region, aoi.metric_crs, clip_to_region=True)
    if features is None:
        return None
    if not len(features):
        return []
    dense = shapely.segmentize(features.geoms, 0.005 if features.crs.is_geographic else 500.0)
    metric = reproject_many(dense, features.crs, aoi.metric_crs)
    area = reproject_many(dense, features.crs, aoi.area_crs)
    by_code: dict[str, list[int]] = {}
    for i, code in enumerate(features.ids):
        by_code.setdefault(code, []).append(i)
    sites = []
    for code, rows in by_code.items():
        first = rows[0]
        sites.append(
            Site(
                site_code=code,
                name=features.names[first],
                type=features.types[first],
                natura2000=is_natura2000(features.types[first], features.sources[first].natura2000),
                metric=shapely.union_all(metric[rows]) if len(rows) > 1 else metric[first],
                area=shapely.union_all(area[rows]) if len(rows) > 1 else area[first],
            )
        )
    return sites


def analyse(aoi: AOI, catalog: Catalog, buffer_km: float) -> tuple[Biodiversity, dict[str, bytes]]:
    """Overlap and sites in the buffer, plus the `natura` and `overlap` layers."""
    buffer_m = buffer_km * 1000.0
    search_km = max(buffer_km, PROXIMITY_SEARCH_KM)
    sites = read_sites(aoi, catalog, search_km * 1000.0)
    if sites is None:
        reason = "the dataset catalog has no protected_areas layer"
        return _unavailable(buffer_km, reason), _empty_layers(aoi, reason)

    aoi_metric = aoi.metric_geometry
    aoi_area_geom = aoi.area_geometry
    aoi_m2 = aoi.area_m2
    overlapping: list[SiteOverlap] = []
    nearby: list[tuple[SiteNearby, Site]] = []
    not_overlapped: list[SiteNearby] = []
    overlap_parts: list[BaseGeometry] = []
    natura_parts: list[BaseGeometry] = []
    for site in sites:
        distance_m = float(shapely.distance(aoi_metric, site.metric))
        if distance_m > search_km * 1000.0:
            continue
        piece = site.area.intersection(aoi_area_geom) if site.area.intersects(aoi_area_geom) else None
        overlap_m2 = float(piece.area) if piece is not None else 0.0
        if piece is not None and overlap_m2 > 0:
            distance_m = 0.0  # sharing area means touching, whatever floating point says
            overlap_parts.append(piece)
            if site.natura2000:
                natura_parts.append(piece)
            overlapping.append(
                SiteOverlap(
                    site_code=site.site_code,
                    name=site.name,
                    type=site.type,
                    natura2000=site.natura2000,
                    overlap_ha=round(overlap_m2 / 1e4, 4),
                    overlap_pct=round(_pct(overlap_m2, aoi_m2), 4),
                )
            )
        entry = SiteNearby(
            site_code=site.site_code,
            name=site.name,
            type=site.type,
            natura2000=site.natura2000,
            distance_km=round(distance_m / 1000.0, 4),
            overlap_ha=round(overlap_m2 / 1e4, 4),
        )
        if overlap_m2 <= 0:
            not_overlapped.append(entry)
        if distance_m <= buffer_m:
            nearby.append((entry, site))
    nearby.sort(key=lambda p: (p[0].distance_km, p[0].site_code))
    not_overlapped.sort(key=lambda n: (n.distance_km, n.site_code))
    overlapping.sort(key=lambda s: (-s.overlap_ha, s.site_code))
    dissolved = _dissolved(overlap_parts)
    natura_dissolved = _dissolved(natura_parts)
    overlap_m2 = float(dissolved.area) if dissolved is not None else 0.0
    natura_m2 = float(natura_dissolved.area) if natura_dissolved is not None else 0.0
    bio = Biodiversity(
        available=True,
        reason=None,
        buffer_km=buffer_km,
        protected_overlap_ha=round(overlap_m2 / 1e4, 4),
        protected_overlap_pct=round(_pct(overlap_m2, aoi_m2), 4),
        natura2000_overlap_ha=round(natura_m2 / 1e4, 4),
        natura2000_overlap_pct=round(_pct(natura_m2, aoi_m2), 4),
        sites_overlapping=overlapping,
        sites_in_buffer=[n for n, _ in nearby],
        natura2000_sites_in_buffer=sum(1 for n, _ in nearby if n.natura2000),
        sites_not_overlapped=not_overlapped,
        proximity_search_km=search_km,
        sensitivity=None,
        sensitivity_reason="the biodiversity sensitivity index has not been computed by this pipeline version",
    )
    zone = zone_buffer(aoi_metric, buffer_m) if buffer_m > 0 else aoi_metric
    natura_layer = feature_collection(
        ((site.metric.intersection(zone), {**_props(n), "clipped_to_buffer_km": buffer_km}) for n, site in nearby),
        aoi.metric_crs,
    )
    overlap_features = []
    if dissolved is not None and not dissolved.is_empty:
        overlap_features.append(
            (
                dissolved,
                {
                    "protected_overlap_ha": bio.protected_overlap_ha,
                    "protected_overlap_pct": bio.protected_overlap_pct,
                    "site_codes": [s.site_code for s in overlapping],
                },
            )
        )
    overlap_layer = feature_collection(overlap_features, aoi.area_crs)
    return bio, {"natura": natura_layer, "overlap": overlap_layer}


def _dissolved(parts: list[BaseGeometry]) -> BaseGeometry | None:
    if not parts:
        return None
    return shapely.union_all(np.array(parts, dtype=object))


def _pct(part_m2: float, whole_m2: float) -> float:
    # The dissolved intersection is a subset of the AOI; min() only absorbs floating-point noise.
    return min(100.0, 100.0 * part_m2 / whole_m2) if whole_m2 > 0 else 0.0


def _props(n: SiteNearby) -> dict[str, Any]:
    return {
        "site_code": n.site_code,
        "name": n.name,
        "type": n.type,
        "natura2000": n.natura2000,
        "distance_km": n.distance_km,
        "overlap_ha": n.overlap_ha,
    }


def _unavailable(buffer_km: float, reason: str) -> Biodiversity:
    return Biodiversity(
        available=False,
        reason=reason,
        buffer_km=buffer_km,
        protected_overlap_ha=None,
        protected_overlap_pct=None,
        natura2000_overlap_ha=None,
        natura2000_overlap_pct=None,
        sites_overlapping=[],
        sites_in_buffer=[],
        natura2000_sites_in_buffer=None,
        sensitivity=None,
        sensitivity_reason=reason,
    )


def _empty_layers(aoi: AOI, reason: str) -> dict[str, bytes]:
    return {
        "natura": feature_collection([], aoi.metric_crs, reason=reason),
        "overlap": feature_collection([], aoi.metric_crs, reason=reason),
    }


def sensitivity_layer(aoi: AOI, bio: Biodiversity) -> bytes:
    """The AOI as one feature carrying the biodiversity sensitivity score (null with a reason if none)."""
    index = bio.sensitivity
    score = category = None
    if index is not None:
        score = index.get("score") if isinstance(index, dict) else getattr(index, "score", None)
        category = index.get("category") if isinstance(index, dict) else getattr(index, "category", None)
    props: dict[str, Any] = {
        "aoi_area_ha": round(aoi.area_ha, 4),
        "protected_overlap_pct": bio.protected_overlap_pct,
        "score": score,
        "category": category,
    }
    if score is None:
        props["score_reason"] = bio.sensitivity_reason or "no sensitivity score was computed"
    return feature_collection([(aoi.geometry, props)], aoi.crs)
