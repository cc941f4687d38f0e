"""The AOI's biome (Mediterranean, Atlantic, continental, boreal, alpine), chosen by a simple rule.

The rule approximates the EEA biogeographical regions of the Habitats Directive with a handful of
tests on the AOI's centroid, its country and its mean elevation, in this order:

1. alpine: mean elevation of at least 1,500 m (800 m north of 58° N, the Scandinavian mountains)
2. boreal: north of 60° N, or in Finland, Estonia or Latvia, or in Sweden or Norway north of 58° N
3. mediterranean: Greece, Cyprus, Malta; Spain except its Atlantic north-west (north of 42.5° N and
   west of 1.5° W); Portugal south of 41° N; Italy south of 44° N; France south of 44° N and east of
   2.5° E (Languedoc, Provence, Corsica); Croatia, Montenegro, Albania south of 44.5° N
4. atlantic: Ireland, the United Kingdom, Belgium, the Netherlands, Denmark; Spain's and Portugal's
   north-west (the complement of rule 3); France west of 2.5° E; Germany north of 52° N and west
   of 9° E
5. continental: everything else in Europe (and the fallback outside it, where these European
   defaults are the closest the factor file has, said so in the reason)

Without an elevation layer rule 1 cannot apply, and the reason says so. It is a screening rule:
transition zones are coarse, and a run can override the class factors it drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Biome = Literal["mediterranean", "atlantic", "continental", "boreal", "alpine"]

ALPINE_M = 1500.0
ALPINE_NORTH_M = 800.0  # north of 58° N
_MED_COUNTRIES = {"GRC", "CYP", "MLT"}
_ATLANTIC_COUNTRIES = {"IRL", "GBR", "BEL", "NLD", "DNK"}
_BOREAL_COUNTRIES = {"FIN", "EST", "LVA"}


@dataclass(frozen=True)
class BiomeChoice:
    biome: Biome
    reason: str  # which rule chose it, with the figures it read


def choose(lon: float, lat: float, country: str | None, mean_elevation_m: float | None) -> BiomeChoice:
    """The biome of an AOI centred at lon, lat in `country` (ISO alpha-3) at `mean_elevation_m`."""
    where = f"centroid {lat:.2f}° N {lon:.2f}° E, country {country or 'unknown'}"
    if mean_elevation_m is not None:
        limit = ALPINE_NORTH_M if lat >= 58.0 else ALPINE_M
        if mean_elevation_m >= limit:
            return BiomeChoice("alpine", f"mean elevation {mean_elevation_m:.0f} m >= {limit:.0f} m ({where})")
        height = f"mean elevation {mean_elevation_m:.0f} m, below the alpine limit"
    else:
        height = "no elevation layer: the alpine rule could not be applied"
    if lat >= 60.0 or country in _BOREAL_COUNTRIES or (country in ("SWE", "NOR") and lat >= 58.0):
        return BiomeChoice("boreal", f"boreal north ({where}; {height})")
    if _mediterranean(lon, lat, country):
        return BiomeChoice("mediterranean", f"Mediterranean region ({where}; {height})")
    if _atlantic(lon, lat, country):
        return BiomeChoice("atlantic", f"Atlantic region ({where}; {height})")
    if not (-32.0 <= lon <= 45.0 and 34.0 <= lat <= 72.0):
        return BiomeChoice("continental", f"outside Europe: European continental defaults used ({where})")
    return BiomeChoice("continental", f"continental Europe ({where}; {height})")


def _mediterranean(lon: float, lat: float, country: str | None) -> bool:
    if country in _MED_COUNTRIES:
        return True
    if country == "ESP":
        return not (lat >= 42.5 and lon < -1.5)
    if country == "PRT":
        return lat < 41.0
    if country == "ITA":
        return lat < 44.0
    if country == "FRA":
        return lat < 44.0 and lon > 2.5
    if country in ("HRV", "MNE", "ALB"):
        return lat < 44.5
    return False


def _atlantic(lon: float, lat: float, country: str | None) -> bool:
    if country in _ATLANTIC_COUNTRIES or country in ("ESP", "PRT"):  # the Iberian part not Mediterranean
        return True
    if country == "FRA":
        return lon <= 2.5
    if country == "DEU":
        return lat >= 52.0 and lon < 9.0
    return False
