"""The AOI's area as the national administration measures it: planimetric in the national grid.

National area thresholds (Spain's 10 and 100 ha for solar plants, Germany's 2 and 10 ha) are applied
to areas measured in the country's official projection, not on the ellipsoid: a square of 100.00 ha in
ETRS89 / UTM 30N is 100.08 ha in an equal-area CRS (UTM's scale 0.9996 on the central meridian), and
would trip a "> 100 ha" rule that the administration would not apply. Each national rule pack states the
CRS its thresholds are measured in (`area_crs`, with its legal basis); this module measures the AOI in
it. `aoi_area_ha` stays the true (equal-area) area; both are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyproj import CRS

from aethera.analysis.aoi import AOI
from aethera.analysis.projection import densify, reproject
from aethera.legal.packs import AREA_CRS_PATTERN, national_pack

_ETRS89_UTM_EPSG_BASE = 25800  # EPSG:258zz is ETRS89 / UTM zone zzN (zones 28 to 38)


@dataclass(frozen=True)
class NationalArea:
    area_ha: float | None
    crs: str | None  # e.g. "EPSG:25830 (ETRS89 / UTM zone 30N)"
    basis: str | None  # the pack's statement of why that CRS
    reason: str | None  # why area_ha is None


def resolve_area_crs(spec: str, lon: float) -> CRS:
    """The CRS a pack's `area_crs` names, for an AOI centred at longitude `lon`."""
    m = AREA_CRS_PATTERN.match(spec)
    if m is None:  # the pack loader refuses such a pack; this is a programming error
        raise ValueError(f"not an area CRS statement: {spec!r}")
    if m["epsg"]:
        return CRS.from_epsg(int(m["epsg"]))
    zone = math.floor((lon + 180.0) / 6.0) + 1
    zone = min(max(zone, int(m["first"])), int(m["last"]))
    return CRS.from_epsg(_ETRS89_UTM_EPSG_BASE + zone)


def measure(aoi: AOI, country: str | None) -> NationalArea:
    """The AOI's planimetric area in the CRS of `country`'s rule pack, or None with the reason."""
    pack = national_pack(country)
    if pack is None:
        return NationalArea(
            None, None, None, f"no national rule pack for {country or 'an unknown country'}: no national area CRS"
        )
    if pack.area_crs is None:
        return NationalArea(None, None, None, f"the {pack.name} rule pack states no area CRS")
    lon, _ = aoi.centroid_lonlat
    crs = resolve_area_crs(pack.area_crs, lon)
    # Edges are densified first, as for every reprojection: a long straight edge in the AOI's CRS is a
    # curve in the national grid.
    planar = reproject(densify(aoi.geometry, aoi.crs), aoi.crs, crs)
    epsg = crs.to_epsg()
    name = f"EPSG:{epsg} ({crs.name})" if epsg else crs.name
    return NationalArea(round(planar.area / 1e4, 4), name, pack.area_crs_basis, None)
