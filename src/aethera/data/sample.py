"""The synthetic sample region: the project's own default demo data, made in a second or two.

A 30 km x 30 km square in EPSG:3035 centred on lon 14.33, lat 51.76 (Lusatia, Germany). Nothing in it is
real: the layout (a city on a river, towns and villages, a post-mining landscape with a flooded pit, pine
forest, fields, floodplain wetlands, overlapping protected sites) is drawn by hand in kilometres from the
centre and perturbed by a seeded random generator, so every seed gives a different but plausible region
and the same seed gives byte-identical files.

Files written into the target directory:

- `land_cover.tif`: CORINE level-3 codes (uint16, nodata 0), 100 m, 300 x 300 pixels
- `elevation.tif`: metres (float32, nodata -9999), 100 m
- `protected_areas.gpkg` (layer `protected_areas`): site_code, name, type (SAC / SPA / National park /
  Nature reserve); some sites overlap each other
- `settlements.gpkg` (layer `settlements`): points with name, type, population
- `water.gpkg` (layers `rivers`, lines, and `lakes`, polygons): name, type
- `catalog.toml`: the dataset catalog for the above (relative paths)

Every name carries "SYNTHETIC" or every layer a `synthetic` column, and the files' metadata say so.
Determinism: the GeoPackage driver stamps `last_change` with the current time unless `OGR_CURRENT_DATE`
is set, so it is set while writing; GeoTIFFs get no date tag.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # shapely is imported where used, to keep this module light
    from shapely.geometry import Point
    from shapely.geometry.base import BaseGeometry

CENTER_LONLAT = (14.33, 51.76)
CRS = "EPSG:3035"
SIZE_M = 30_000
RESOLUTION_M = 100
LAND_COVER_NODATA = 0
ELEVATION_NODATA = -9999.0
_FIXED_DATE = "2000-01-01T00:00:00.000Z"
_SOURCE = "AETHERA synthetic sample data (not real; for demonstration only)"

LAND_COVER_FILE = "land_cover.tif"
ELEVATION_FILE = "elevation.tif"
PROTECTED_FILE = "protected_areas.gpkg"
SETTLEMENTS_FILE = "settlements.gpkg"
WATER_FILE = "water.gpkg"
CATALOG_FILE = "catalog.toml"


@dataclass(frozen=True)
class SampleRegion:
    """Where the sample region lies (EPSG:3035 metres)."""

    center_x: float
    center_y: float
    left: float
    bottom: float
    right: float
    top: float

    def xy(self, east_km: float, north_km: float) -> tuple[float, float]:
        """EPSG:3035 coordinates of a point given in km east and north of the centre."""
        return self.center_x + east_km * 1000.0, self.center_y + north_km * 1000.0


def sample_region() -> SampleRegion:
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*CENTER_LONLAT)
    # Snap the centre to the pixel grid so the square holds whole pixels.
    cx = round(x / RESOLUTION_M) * RESOLUTION_M
    cy = round(y / RESOLUTION_M) * RESOLUTION_M
    half = SIZE_M / 2
    return SampleRegion(cx, cy, cx - half, cy - half, cx + half, cy + half)


# --- the hand-drawn layout (km east, km north of the centre) --------------------------------------

# (name, type, east_km, north_km, population)
_SETTLEMENTS = [
    ("Spreeburg", "city", 0.0, 0.0, 96_000),
    ("Kiefernhagen", "town", -9.0, 8.0, 12_400),
    ("Heidewalde", "town", 8.0, 9.0, 6_600),
    ("Grubenau", "town", -11.0, -3.0, 8_100),
    ("Birkwitz", "village", -12.0, 2.0, 900),
    ("Sandow Ost", "village", -3.0, -13.0, 1_200),
    ("Lindfeld", "village", 5.0, 4.0, 2_500),
    ("Wiesenau", "village", -3.0, 6.0, 1_800),
    ("Eichholz", "village", 13.0, 5.0, 700),
    ("Mittelsdorf", "village", 0.0, -9.0, 1_500),
    ("Kohlfeld", "village", -13.0, -13.0, 400),
    ("Ackerwitz", "village", 12.5, -12.5, 300),
    ("Seelow Nord", "village", 6.0, 13.0, 1_100),
    ("Weidenhof", "village", -6.0, -2.0, 3_000),
    ("Hirseberg", "village", 3.0, -6.0, 650),
]

# Lakes: (name, type, east_km, north_km, radius_x_km, radius_y_km)
_LAKES = [
    ("Grubensee", "lake (flooded mine pit)", -7.0, -9.0, 2.4, 1.4),
    ("Heidesee", "lake", 6.0, 10.5, 1.0, 0.7),
    ("Birkenteich", "pond", -11.0, 9.5, 0.45, 0.35),
    ("Ostsee-Weiher", "pond", 10.0, 1.5, 0.5, 0.4),
]

# Protected sites: (site_code, name, type, shape) where shape is ("ellipse", e, n, rx, ry) or
# ("river", from_north_km, to_north_km, half_width_km).
# a site's shape, in km from the region's centre: a section of the main river (from and to northing,
# half width) or an ellipse (centre easting and northing, radii)
_SiteShape = tuple[Literal["river"], float, float, float] | tuple[Literal["ellipse"], float, float, float, float]
_PROTECTED: list[tuple[str, str, str, _SiteShape]] = [
    ("DE4151301", "Spree floodplain north SAC (SYNTHETIC)", "SAC", ("river", 3.5, 14.5, 0.8)),
    ("DE4351401", "Grubensee bird area SPA (SYNTHETIC)", "SPA", ("ellipse", -7.0, -9.0, 3.6, 2.6)),
    ("DE4351301", "Grubensee shore habitats SAC (SYNTHETIC)", "SAC", ("ellipse", -5.5, -8.0, 2.0, 1.6)),
    ("DE-NP-0001", "Kiefernheide National Park (SYNTHETIC)", "National park", ("ellipse", -11.0, 11.0, 4.2, 3.6)),
    ("DE4050301", "Kiefernheide dunes SAC (SYNTHETIC)", "SAC", ("ellipse", -12.5, 12.0, 2.3, 2.0)),
    (
        "DE-NSG-0007",
        "Wiesenau wet meadows nature reserve (SYNTHETIC)",
        "Nature reserve",
        ("ellipse", -1.2, 8.2, 1.0, 0.7),
    ),
    ("DE4152302", "Eichholz heath SAC (SYNTHETIC)", "SAC", ("ellipse", 12.0, 8.5, 2.0, 1.5)),
]


def generate_sample_data(directory: str | Path, seed: int = 42) -> Path:
    """Write the sample region into `directory` (created if needed); returns the catalog's path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    region = sample_region()
    n = SIZE_M // RESOLUTION_M

    rivers = _rivers(region, rng)
    lakes = _lakes(region, rng)
    settlements = _settlements(region, rng)
    protected = _protected(region, rng, rivers)
    elevation = _elevation(rng, n)
    land_cover = _land_cover(region, rng, n, rivers, lakes, settlements, elevation)

    _write_raster(
        out / LAND_COVER_FILE,
        land_cover,
        region,
        "uint16",
        LAND_COVER_NODATA,
        seed,
        "CORINE Land Cover level-3 codes (SYNTHETIC)",
    )
    _write_raster(
        out / ELEVATION_FILE,
        elevation,
        region,
        "float32",
        ELEVATION_NODATA,
        seed,
        "Elevation above sea level, metres (SYNTHETIC)",
    )
    _write_vectors(out, seed, protected, settlements, rivers, lakes)
    catalog = out / CATALOG_FILE
    catalog.write_text(_catalog_text(seed), encoding="utf-8")
    return catalog


# --- geometry ------------------------------------------------------------------------------------


# (name, type, geometry) of a river or a lake
_Water = tuple[str, str, "BaseGeometry"]


def _rivers(region: SampleRegion, rng: np.random.Generator) -> list[_Water]:
    from shapely.geometry import LineString

    def meander(points_km: list[tuple[float, float]], amplitude_km: float) -> LineString:
        # Densify the hand-drawn course and add a smooth random sideways swing: a meander.
        pts = np.array(points_km, dtype=float)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        dist = np.concatenate([[0.0], np.cumsum(seg)])
        s = np.linspace(0.0, dist[-1], int(dist[-1] * 8) + 2)
        x = np.interp(s, dist, pts[:, 0])
        y = np.interp(s, dist, pts[:, 1])
        phase = rng.uniform(0, 2 * math.pi, 3)
        swing = sum(amplitude_km / (k + 1) * np.sin(s * (0.6 + 0.5 * k) + phase[k]) for k in range(3))
        dx = np.gradient(x)
        dy = np.gradient(y)
        norm = np.hypot(dx, dy)
        x = x - dy / norm * swing
        y = y + dx / norm * swing
        return LineString([region.xy(a, b) for a, b in zip(x, y)])

    main = meander([(-2.0, -15.5), (-1.0, -6.0), (0.3, 0.0), (0.0, 6.0), (1.0, 15.5)], 0.6)
    tributary = meander([(-15.5, 4.0), (-8.0, 5.0), (-3.0, 3.5), (0.4, 2.0)], 0.4)
    # Join the tributary exactly onto the main river.
    from shapely.ops import nearest_points

    end = nearest_points(main, tributary.boundary.geoms[1])[0]
    coords = [*tributary.coords[:-1], (end.x, end.y)]
    tributary = LineString(coords)
    return [("Spree (SYNTHETIC)", "river", main), ("Malxe (SYNTHETIC)", "stream", tributary)]


def _blob(
    region: SampleRegion, rng: np.random.Generator, e: float, n: float, rx: float, ry: float, roughness: float = 0.12
) -> BaseGeometry:
    """A star-shaped (hence always valid) polygon: an ellipse with a smooth random edge."""
    from shapely.geometry import Polygon

    t = np.linspace(0.0, 2 * math.pi, 97)[:-1]
    wobble = np.ones_like(t)
    for k in (2, 3, 5):
        wobble += roughness / k * 2 * np.sin(k * t + rng.uniform(0, 2 * math.pi))
    wobble = np.clip(wobble, 0.5, None)
    jitter_e, jitter_n = rng.uniform(-0.15, 0.15, 2)
    xs = e + jitter_e + rx * wobble * np.cos(t)
    ys = n + jitter_n + ry * wobble * np.sin(t)
    return Polygon([region.xy(a, b) for a, b in zip(xs, ys)])


def _lakes(region: SampleRegion, rng: np.random.Generator) -> list[_Water]:
    return [(name, kind, _blob(region, rng, e, n, rx, ry)) for name, kind, e, n, rx, ry in _LAKES]


def _settlements(region: SampleRegion, rng: np.random.Generator) -> list[tuple[str, str, int, Point]]:
    from shapely.geometry import Point

    out: list[tuple[str, str, int, Point]] = []
    for name, kind, e, n, pop in _SETTLEMENTS:
        je, jn = rng.uniform(-0.3, 0.3, 2) if kind != "city" else (0.0, 0.0)
        population = int(round(pop * rng.uniform(0.9, 1.1), -1))
        out.append((name, kind, population, Point(region.xy(e + je, n + jn))))
    return out


def _protected(
    region: SampleRegion, rng: np.random.Generator, rivers: list[_Water]
) -> list[tuple[str, str, str, BaseGeometry]]:
    from shapely.geometry import box

    main = rivers[0][2]
    out: list[tuple[str, str, str, BaseGeometry]] = []
    for code, name, kind, shape in _PROTECTED:
        if shape[0] == "river":
            _, n0, n1, half = shape
            _, y0 = region.xy(0, n0)
            _, y1 = region.xy(0, n1)
            section = main.intersection(box(region.left - 1e4, y0, region.right + 1e4, y1))
            geom: BaseGeometry = section.buffer(half * 1000.0, quad_segs=8)
        else:
            _, e, n, rx, ry = shape
            geom = _blob(region, rng, e, n, rx, ry, roughness=0.18)
        out.append((code, name, kind, geom))
    return out


# --- rasters -------------------------------------------------------------------------------------


def _smooth(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid (one value per `cells` pixels) bilinearly upsampled."""
    m = n // cells + 2
    coarse = rng.random((m, m))
    pos = np.arange(n) / cells
    i0 = np.floor(pos).astype(int)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    smooth: np.ndarray = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
    return smooth


def _field(rng: np.random.Generator, n: int) -> np.ndarray:
    f = 0.55 * _smooth(rng, n, 60) + 0.3 * _smooth(rng, n, 20) + 0.15 * _smooth(rng, n, 6)
    field: np.ndarray = (f - f.min()) / (f.max() - f.min())
    return field


def _elevation(rng: np.random.Generator, n: int) -> np.ndarray:
    # Flat lowland (about 60 m) rising towards the south-west, with gentle hills; values in metres.
    rows, cols = np.mgrid[0:n, 0:n] / (n - 1)
    south = rows  # row 0 is the north edge
    west = 1 - cols
    hills = _field(rng, n)
    elev = 58.0 + 45.0 * south**2 * (0.5 + 0.5 * west) + 30.0 * hills**2
    elev_m: np.ndarray = elev.astype("float32")
    return elev_m


def _land_cover(
    region: SampleRegion,
    rng: np.random.Generator,
    n: int,
    rivers: list[_Water],
    lakes: list[_Water],
    settlements: list[tuple[str, str, int, Point]],
    elevation: np.ndarray,
) -> np.ndarray:
    from rasterio.features import rasterize
    from rasterio.transform import from_origin
    from shapely.geometry import LineString, box

    transform = from_origin(region.left, region.top, RESOLUTION_M, RESOLUTION_M)

    def burn(shapes: Sequence[BaseGeometry], value: int, lc: np.ndarray, all_touched: bool = False) -> None:
        mask = rasterize(
            [(g, 1) for g in shapes],
            out_shape=(n, n),
            transform=transform,
            fill=0,
            dtype="uint8",
            all_touched=all_touched,
        )
        lc[mask == 1] = value

    # Base mosaic from smooth fields: pine-dominated forest, arable fields, pastures on low ground.
    f_forest = _field(rng, n)
    f_kind = _field(rng, n)
    f_mix = _field(rng, n)
    lc = np.full((n, n), 211, dtype="uint16")
    low = elevation < np.quantile(elevation, 0.25)
    lc[(f_forest < 0.35) & low] = 231
    lc[(f_mix > 0.7) & (lc == 211)] = 242
    lc[(f_mix < 0.12) & (lc == 211)] = 243
    forest = f_forest > 0.55
    lc[forest] = 312
    lc[forest & (f_kind > 0.6)] = 313
    lc[forest & (f_kind > 0.72)] = 311
    lc[(f_forest > 0.5) & (f_forest <= 0.55)] = 324
    lc[(f_forest > 0.85) & (f_kind < 0.3)] = 322  # heath on the driest sandy rises

    # The post-mining landscape in the south-west: an active pit, spoil dumps, recultivation.
    burn([_blob(region, rng, -11.5, -10.5, 2.2, 1.6)], 131, lc)
    burn([_blob(region, rng, -13.0, -7.0, 1.2, 0.9)], 132, lc)
    burn([_blob(region, rng, -9.5, -12.8, 0.8, 0.5)], 133, lc)

    # Floodplain wetlands and meadows along the rivers, then the lakes with reed belts.
    main = rivers[0][2]
    tributary = rivers[1][2]
    floodplain = main.buffer(450.0).union(tributary.buffer(250.0))
    burn([floodplain], 231, lc)
    wet = _field(rng, n) > 0.55
    mask = rasterize([(floodplain, 1)], out_shape=(n, n), transform=transform, fill=0, dtype="uint8")
    lc[(mask == 1) & wet] = 411
    lake_shapes = [g for _, _, g in lakes]
    burn([g.buffer(250.0) for g in lake_shapes[:2]], 411, lc)
    burn([lake_shapes[1].buffer(500.0).difference(lake_shapes[1].buffer(250.0))], 412, lc)
    burn(lake_shapes, 512, lc)

    # Settlements: continuous core, discontinuous ring, parks, industry, sport, an airfield.
    for _name, kind, pop, point in settlements:
        radius = 120.0 * math.sqrt(pop / 100.0) ** 0.8
        ring = _blob(
            region,
            rng,
            (point.x - region.center_x) / 1000,
            (point.y - region.center_y) / 1000,
            radius / 1000,
            radius / 1000 * 0.85,
        )
        burn([ring], 112, lc)
        if kind != "village":
            burn([point.buffer(radius * 0.4)], 111, lc)
    burn([_blob(region, rng, 0.4, 0.9, 0.5, 0.35)], 141, lc)
    burn([_blob(region, rng, 2.8, -2.2, 1.0, 0.6)], 121, lc)
    burn([_blob(region, rng, -9.6, 6.8, 0.6, 0.4)], 121, lc)
    burn([_blob(region, rng, -5.0, -5.2, 0.9, 0.6)], 121, lc)  # a power station by the mine
    burn([_blob(region, rng, -1.6, -1.8, 0.35, 0.3)], 142, lc)
    x0, y0 = region.xy(3.3, -3.6)
    burn([box(x0, y0, x0 + 1400, y0 + 500)], 124, lc)

    # Roads from the city to the towns, one pixel wide.
    city = settlements[0][3]
    roads = [LineString([(city.x, city.y), (p.x, p.y)]) for _, kind, _, p in settlements if kind == "town"]
    burn(roads, 122, lc)
    burn([main, tributary], 511, lc, all_touched=False)
    return lc


def _write_raster(
    path: Path, data: np.ndarray, region: SampleRegion, dtype: str, nodata: float, seed: int, description: str
) -> None:
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": dtype,
        "crs": CRS,
        "transform": from_origin(region.left, region.top, RESOLUTION_M, RESOLUTION_M),
        "nodata": nodata,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(tmp, "w", **profile) as ds:  # no .aux.xml files
        ds.write(data.astype(dtype), 1)
        ds.update_tags(SYNTHETIC="true", SOURCE=_SOURCE, SEED=str(seed))
        ds.set_band_description(1, description)
    os.replace(tmp, path)


# --- vectors -------------------------------------------------------------------------------------


def _write_vectors(
    out: Path,
    seed: int,
    protected: list[tuple[str, str, str, BaseGeometry]],
    settlements: list[tuple[str, str, int, Point]],
    rivers: list[_Water],
    lakes: list[_Water],
) -> None:
    import geopandas as gpd
    import pyogrio

    meta = {"synthetic": "true", "source": _SOURCE, "seed": str(seed)}
    frames = {
        (PROTECTED_FILE, "protected_areas"): gpd.GeoDataFrame(
            {
                "site_code": [p[0] for p in protected],
                "name": [p[1] for p in protected],
                "type": [p[2] for p in protected],
                "synthetic": [1] * len(protected),
            },
            geometry=[p[3] for p in protected],
            crs=CRS,
        ),
        (SETTLEMENTS_FILE, "settlements"): gpd.GeoDataFrame(
            {
                "id": [f"S{i + 1:02d}" for i in range(len(settlements))],
                "name": [s[0] for s in settlements],
                "type": [s[1] for s in settlements],
                "population": [s[2] for s in settlements],
                "synthetic": [1] * len(settlements),
            },
            geometry=[s[3] for s in settlements],
            crs=CRS,
        ),
        (WATER_FILE, "rivers"): gpd.GeoDataFrame(
            {
                "id": [f"R{i + 1}" for i in range(len(rivers))],
                "name": [r[0] for r in rivers],
                "type": [r[1] for r in rivers],
                "synthetic": [1] * len(rivers),
            },
            geometry=[r[2] for r in rivers],
            crs=CRS,
        ),
        (WATER_FILE, "lakes"): gpd.GeoDataFrame(
            {
                "id": [f"L{i + 1}" for i in range(len(lakes))],
                "name": [f"{w[0]} (SYNTHETIC)" for w in lakes],
                "type": [w[1] for w in lakes],
                "synthetic": [1] * len(lakes),
            },
            geometry=[w[2] for w in lakes],
            crs=CRS,
        ),
    }
    # Round coordinates to the centimetre: identical bytes regardless of floating-point noise in the
    # last digits, and nothing of value is lost in a synthetic layer.
    for df in frames.values():
        df.geometry = df.geometry.set_precision(0.01)
    written: set[str] = set()
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": _FIXED_DATE})
    try:
        for (file, layer), df in frames.items():
            path = out / file
            if file not in written and path.exists():
                path.unlink()
            pyogrio.write_dataframe(
                df,
                path,
                layer=layer,
                driver="GPKG",
                append=file in written,
                layer_options={"DESCRIPTION": f"{layer} (SYNTHETIC sample data)"},
                dataset_metadata=meta if file not in written else None,
                promote_to_multi=df.geom_type.iloc[0] == "Polygon" and layer == "protected_areas",
            )
            written.add(file)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def _catalog_text(seed: int) -> str:
    return f'''# Dataset catalog of the AETHERA synthetic sample region (seed {seed}).
# SYNTHETIC data: generated by `aethera sample-data`; nothing in it describes a real place.
title = "AETHERA synthetic sample region, Lusatia (SYNTHETIC, seed {seed})"
synthetic = true
attribution = "{_SOURCE}"

[land_cover]
path = "{LAND_COVER_FILE}"
format = "raster"
band = 1
code_scheme = "clc"
title = "Synthetic CORINE land cover, 100 m"

[protected_areas]
path = "{PROTECTED_FILE}"
layer = "protected_areas"
id_column = "site_code"
name_column = "name"
type_column = "type"
title = "Synthetic protected areas (SAC, SPA, national park, nature reserve)"

[settlements]
path = "{SETTLEMENTS_FILE}"
layer = "settlements"
id_column = "id"
name_column = "name"
type_column = "type"
population_column = "population"
title = "Synthetic settlements"

[[water]]
path = "{WATER_FILE}"
layer = "rivers"
id_column = "id"
name_column = "name"
type_column = "type"
title = "Synthetic rivers"

[[water]]
path = "{WATER_FILE}"
layer = "lakes"
id_column = "id"
name_column = "name"
type_column = "type"
title = "Synthetic lakes"

[elevation]
path = "{ELEVATION_FILE}"
format = "raster"
band = 1
title = "Synthetic elevation model, 100 m"
'''
