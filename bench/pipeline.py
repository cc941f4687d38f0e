"""Land-cover summary against exactextract called directly, and the whole pipeline step by step.

Part 1, method: two synthetic CORINE rasters of the same 126 km x 126 km square in EPSG:3035 are written
to a temporary directory, one at 100 m (1,260 x 1,260) and one at 10 m (12,600 x 12,600, tiled, deflate).
For AOIs of 1, 100, 2,500 and 10,000 km² (regular 64-gons centred on the square, given in EPSG:4326 as the
API receives them) we time
  (a) `aethera.analysis.land_cover.summarize(aoi, catalog, buffer_km=0)`: reprojection of the AOI to the
      layer CRS, its equal-area area, the exact class coverage (interior pixels counted whole with numpy,
      exactextract on the boundary band: `analysis/raster_coverage.py`), labels and groups, and
  (b) `exactextract.exact_extract(path, aoi_in_layer_crs, ["unique", "frac"])`: the bare zonal
      statistics on the same raster and AOI (already reprojected, outside the timing),
and print the median of --repeat runs (after one untimed warm-up each; (a) and (b) alternate, so a
change in the machine's load hits both; one timed run for 10,000 km² at 10 m, where exactextract takes
over 10 s) and the ratio (a) / (b). Then the same for the 5 km buffer ring around the 2,500 km² AOI:
(a) `land_cover.zone_areas` of the ring, (b) exactextract on the ring.
"check" is the largest difference, over every class, between our class share and exactextract's `frac`
(must be <= 1e-6; (a)'s AOI shares are rounded to 6 decimals, the ring's are not).

Part 2: the whole pipeline on the sample region (`aethera sample-data`, generated into the temporary
directory) for a 10 km² AOI, median of --repeat runs after a warm-up, step by step (the land-eligibility
step among them, budget 0.3 s).

Part 3: how the land-eligibility step (`aethera.analysis.eligibility.analyse`, wind rule set: land cover
and slope on the raster grid, protected areas, settlements and water as buffered geometry) scales with
the AOI: 10 and 100 km² on the sample region, and 100, 900 and 2,500 km² on the 60 km square of part 1
(100 m land cover with ~1 km patches and 10 % per-pixel noise, the worst case for turning cells into
polygons; a smooth synthetic elevation on the same grid; 300 settlement points, 40 rivers, 30 protected
polygons scattered over it, seeded).

Bias, stated: rasters are read from the page cache after the warm-up on both sides; the synthetic
pattern (patches of about 1 km with 10 % per-pixel noise) compresses less well than real CORINE at 10 m,
so reads cost somewhat more than they would on real data, equally on both sides (our interior count
reads the same pixels exactextract reads). The 64-gons are convex: a very ragged AOI has a longer
boundary, hence a wider exact band and a smaller gain. Other processes share the CPUs; compare the
ratio, not the absolute figures, across machines.

Run: `.venv/bin/python bench/pipeline.py [--repeat 3] [--skip-10m] [--only-eligibility]`
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SIDE_M = 126_000
CENTER = (4_620_000.0, 3_190_000.0)  # EPSG:3035, Lusatia
CODES = np.array([111, 112, 121, 211, 231, 242, 311, 312, 313, 324, 411, 512], dtype=np.uint16)


def make_raster(path: Path, resolution: float, seed: int = 1) -> None:
    import rasterio
    from rasterio.transform import from_origin

    n = int(SIDE_M / resolution)
    rng = np.random.default_rng(seed)
    patch = 1000.0 / resolution  # ~1 km patches
    coarse = rng.integers(0, len(CODES), size=(math.ceil(n / patch) + 1,) * 2)
    left, top = CENTER[0] - SIDE_M / 2, CENTER[1] + SIDE_M / 2
    profile = dict(driver="GTiff", width=n, height=n, count=1, dtype="uint16", crs="EPSG:3035",
                   transform=from_origin(left, top, resolution, resolution), nodata=0,
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    rows_per_chunk = 512
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, n, rows_per_chunk):
            rows = np.arange(r0, min(n, r0 + rows_per_chunk))
            idx = coarse[(rows / patch).astype(int)][:, (np.arange(n) / patch).astype(int)]
            noise = rng.random(idx.shape) < 0.10
            idx = np.where(noise, rng.integers(0, len(CODES), size=idx.shape), idx)
            ds.write(CODES[idx], 1, window=rasterio.windows.Window(0, r0, n, len(rows)))


def polygon_lonlat(area_km2: float):  # type: ignore[no-untyped-def]
    from pyproj import Transformer
    from shapely.geometry import Polygon

    # A regular 64-gon of the given area, built in EPSG:3035 (equal-area) and sent as lon/lat.
    k = 64
    r = math.sqrt(area_km2 * 1e6 / (0.5 * k * math.sin(2 * math.pi / k)))
    t = np.linspace(0, 2 * math.pi, k, endpoint=False) + 0.1
    xs, ys = CENTER[0] + r * np.cos(t), CENTER[1] + r * np.sin(t)
    lon, lat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True).transform(xs, ys)
    return Polygon(zip(lon, lat))


def timed_pair(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median times of `a` and `b`, run alternately (so drifting load on a shared machine hits both)."""
    a()  # warm-up: imports, GDAL caches, page cache
    b()
    ta, tb = [], []
    for _ in range(repeat):
        for fn, times in ((a, ta), (b, tb)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return statistics.median(ta), statistics.median(tb)


def bench_land_cover(tmp: Path, repeat: int, skip_10m: bool) -> None:
    import geopandas as gpd
    from exactextract import exact_extract

    from aethera.analysis import land_cover
    from aethera.analysis.aoi import load_aoi
    from aethera.data.catalog import parse_catalog

    resolutions = [100.0] if skip_10m else [100.0, 10.0]
    print("land-cover summary vs exactextract direct (median of", repeat, "runs)")
    print(f"{'raster':>8} {'zone':>6} {'km²':>8} {'ours s':>9} {'direct s':>9} {'ratio':>6} {'speed-up':>8} "
          f"{'max |Δshare|':>12}")
    for res in resolutions:
        path = tmp / f"lc_{int(res)}m.tif"
        started = time.perf_counter()
        make_raster(path, res)
        print(f"  (wrote {path.name}: {int(SIDE_M / res)} x {int(SIDE_M / res)} px in "
              f"{time.perf_counter() - started:.1f} s, {path.stat().st_size / 1e6:.1f} MB)")
        catalog = parse_catalog({"land_cover": {"path": str(path)}}, base_dir=tmp)
        source = catalog.land_cover()
        for area in (1.0, 100.0, 2500.0, 10000.0):
            aoi = load_aoi(polygon_lonlat(area).wkt, max_area_km2=20_000.0)
            in_layer = gpd.GeoDataFrame(geometry=[aoi.in_crs(aoi.area_crs)], crs="EPSG:3035")
            result: dict[str, object] = {}

            def ours() -> None:
                result["lc"] = land_cover.summarize(aoi, catalog, buffer_km=0.0)

            def direct() -> None:
                result["ee"] = exact_extract(str(path), in_layer, ["unique", "frac"])

            # exactextract takes 10+ s at 10,000 km² on 10 m: one timed run there (after the warm-up)
            t_ours, t_direct = timed_pair(ours, direct, 1 if area * 1e6 / res**2 > 5e7 else repeat)
            ee = result["ee"][0]["properties"]  # type: ignore[index]
            truth = {int(u): float(f) for u, f in zip(ee["unique"], ee["frac"])}
            shares = {c.code: c.share for c in result["lc"].aoi.classes}  # type: ignore[attr-defined]
            diff = max(abs(shares.get(c, 0.0) - f) for c, f in truth.items())
            _row(res, "aoi", area, t_ours, t_direct, diff)
        for area in (2500.0,):
            aoi = load_aoi(polygon_lonlat(area).wkt, max_area_km2=20_000.0)
            crs = aoi.area_crs  # the layer is in EPSG:3035 too
            ring = land_cover.buffer_ring(aoi, 5.0)
            ring_layer = land_cover.reproject(land_cover.densify(ring, aoi.metric_crs), aoi.metric_crs, crs)
            ring_gdf = gpd.GeoDataFrame(geometry=[ring_layer], crs="EPSG:3035")
            result = {}

            def ours_ring() -> None:
                result["z"] = land_cover.zone_areas(source, crs, ring_layer, ring_layer, crs)

            def direct_ring() -> None:
                result["ee"] = exact_extract(str(path), ring_gdf, ["unique", "frac"])

            t_ours, t_direct = timed_pair(ours_ring, direct_ring, repeat)
            ee = result["ee"][0]["properties"]  # type: ignore[index]
            z = result["z"]
            covered = sum(z.by_code.values()) + z.nodata_m2  # type: ignore[attr-defined]
            diff = max(abs(z.by_code.get(int(u), 0.0) / covered - float(f))  # type: ignore[attr-defined]
                       for u, f in zip(ee["unique"], ee["frac"]))
            _row(res, "ring5", area, t_ours, t_direct, diff)
        if res == 10.0:
            memory_peak(path, tmp)


MEMORY_MAX_BYTES = 4 << 30  # deploy/systemd/aethera-worker@.service: MemoryMax=4G


def memory_peak(raster: Path, tmp: Path, area_km2: float = 10_000.0) -> None:
    """Peak memory of the land-cover step (AOI and its 5 km ring) for a 10,000 km² AOI on the 10 m
    raster, in a fresh process (its peak RSS is its own: imports, GDAL's block cache, our strips)."""
    import subprocess

    catalog = tmp / "memory_catalog.toml"
    catalog.write_text(f'[land_cover]\npath = "{raster}"\n')
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--memory-probe", str(catalog), str(area_km2)],
                         capture_output=True, text=True, check=True)
    peak = int(out.stdout.split()[-1])
    print(f"  memory: land cover of a {area_km2:,.0f} km² AOI + 5 km ring on 10 m, one process: peak RSS "
          f"{peak / 2**20:,.0f} MiB ({peak / MEMORY_MAX_BYTES:.0%} of the worker's MemoryMax 4 GiB; "
          f"{time.perf_counter() - started:.1f} s with the imports)")


def _memory_probe(catalog_path: str, area_km2: float) -> None:
    import resource

    from aethera.analysis import land_cover
    from aethera.analysis.aoi import load_aoi
    from aethera.data.catalog import load_catalog

    catalog = load_catalog(catalog_path)
    aoi = load_aoi(polygon_lonlat(area_km2).wkt, max_area_km2=20_000.0)
    land_cover.summarize(aoi, catalog, buffer_km=5.0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux: kilobytes


def _row(res: float, zone: str, area: float, t_ours: float, t_direct: float, diff: float) -> None:
    print(f"{int(res):>6} m {zone:>6} {area:>8,.0f} {t_ours:>9.4f} {t_direct:>9.4f} {t_ours / t_direct:>6.2f} "
          f"{t_direct / t_ours:>7.1f}x {diff:>12.1e}{'' if diff <= 1e-6 else '  DIFFERENT'}")


def bench_pipeline(tmp: Path, repeat: int) -> None:
    from shapely.geometry import box

    from aethera.analysis import pipeline
    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.params import RunParams
    from aethera.data.catalog import load_catalog
    from aethera.data.sample import generate_sample_data, sample_region

    started = time.perf_counter()
    catalog = load_catalog(generate_sample_data(tmp / "sample", seed=42))
    made_s = time.perf_counter() - started
    print(f"\nwhole pipeline, 10 km² AOI on the sample region (sample data made in {made_s:.2f} s)")
    x, y = sample_region().xy(2.0, -6.0)
    side = math.sqrt(10e6)
    aoi = load_aoi(box(x, y, x + side, y + side).wkt, crs="EPSG:3035")
    params = RunParams.from_request("solar", "DEU", None, None)
    runs: list[dict[str, float]] = []
    totals: list[float] = []
    pipeline.run(aoi, params, catalog, lambda *a: None, lambda: False)  # warm-up
    for _ in range(repeat):
        started = time.perf_counter()
        out = pipeline.run(aoi, params, catalog, lambda *a: None, lambda: False)
        totals.append(time.perf_counter() - started)
        runs.append(out.results.step_durations_s)
    print(f"{'step':>16} {'median s':>10} {'share':>7}")
    total = statistics.median(totals)
    for step in runs[0]:
        t = statistics.median(r[step] for r in runs)
        print(f"{step:>16} {t:>10.4f} {t / total:>7.1%}")
    print(f"{'total':>16} {total:>10.4f}")


def _scatter_layers(tmp: Path, seed: int = 3) -> Path:
    """Elevation, settlements, rivers and protected areas over the 60 km square of part 1 (seeded)."""
    import geopandas as gpd
    import rasterio
    from rasterio.transform import from_origin
    from shapely.geometry import LineString, Point

    rng = np.random.default_rng(seed)
    left, top = CENTER[0] - SIDE_M / 2, CENTER[1] + SIDE_M / 2
    n = int(SIDE_M / 100)
    yy, xx = np.mgrid[0:n, 0:n] / n
    z = 200 + 150 * np.sin(6 * xx) * np.cos(5 * yy) + 80 * np.sin(17 * xx + 3 * yy)
    with rasterio.open(tmp / "dem_100m.tif", "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs="EPSG:3035", transform=from_origin(left, top, 100, 100), nodata=-9999) as ds:
        ds.write(z.astype("float32"), 1)

    def xy(k: int) -> np.ndarray:
        return np.column_stack([left + rng.random(k) * SIDE_M, top - rng.random(k) * SIDE_M])

    gpkg = tmp / "scatter.gpkg"
    pts = xy(300)
    gpd.GeoDataFrame({"sid": [f"S{i}" for i in range(len(pts))]}, geometry=[Point(p) for p in pts],
                     crs="EPSG:3035").to_file(gpkg, layer="settlements")
    rivers = [LineString(np.cumsum(np.vstack([xy(1), rng.normal(0, 800, (30, 2))]), axis=0)) for _ in range(40)]
    gpd.GeoDataFrame({"wid": [f"W{i}" for i in range(40)]}, geometry=rivers, crs="EPSG:3035").to_file(
        gpkg, layer="rivers")
    sites = [Point(p).buffer(rng.uniform(500, 3000), quad_segs=16) for p in xy(30)]
    gpd.GeoDataFrame({"code": [f"P{i}" for i in range(30)], "kind": ["SAC"] * 30}, geometry=sites,
                     crs="EPSG:3035").to_file(gpkg, layer="protected")
    return gpkg


def bench_eligibility(tmp: Path, repeat: int) -> None:
    from shapely.geometry import box

    from aethera.analysis import eligibility
    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.params import RunParams
    from aethera.data.catalog import load_catalog, parse_catalog
    from aethera.data.sample import sample_region

    params = RunParams.from_request("wind", "DEU", None, None)
    sample = load_catalog(tmp / "sample" / "catalog.toml")
    raster = tmp / "lc_100m.tif"
    if not raster.exists():
        make_raster(raster, 100.0)
    gpkg = _scatter_layers(tmp)
    big = parse_catalog({
        "land_cover": {"path": str(raster)}, "elevation": {"path": str(tmp / "dem_100m.tif")},
        "settlements": {"path": str(gpkg), "layer": "settlements", "id_column": "sid"},
        "water": {"path": str(gpkg), "layer": "rivers", "id_column": "wid"},
        "protected_areas": {"path": str(gpkg), "layer": "protected", "id_column": "code", "type_column": "kind"},
    }, base_dir=tmp)
    x, y = sample_region().xy(2.0, -6.0)
    cases = [("sample region", sample, load_aoi(box(x, y, x + math.sqrt(a * 1e6), y + math.sqrt(a * 1e6)).wkt,
                                                 crs="EPSG:3035"), a) for a in (10.0, 100.0)]
    cases += [("60 km square", big, load_aoi(polygon_lonlat(a).wkt), a) for a in (100.0, 900.0, 2500.0)]
    print(f"\nland eligibility (wind rule set), median of {repeat} runs after a warm-up")
    print(f"{'data':>14} {'AOI km²':>8} {'seconds':>8} {'eligible %':>10} {'patches':>8}")
    for name, cat, aoi, area in cases:
        out = {}

        def run() -> None:
            out["r"] = eligibility.analyse(aoi, cat, params)[0]

        t, _ = timed_pair(run, lambda: None, repeat)
        r = out["r"]
        print(f"{name:>14} {area:>8,.0f} {t:>8.3f} {100 * r.eligible_share:>10.1f} {r.patches.count:>8}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-10m", action="store_true", help="only the 100 m raster (quick look)")
    parser.add_argument("--only-eligibility", action="store_true", help="parts 2 and 3 only")
    parser.add_argument("--memory-probe", nargs=2, metavar=("CATALOG", "KM2"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        _memory_probe(args.memory_probe[0], float(args.memory_probe[1]))
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aethera-bench-") as tmp:
        if not args.only_eligibility:
            bench_land_cover(Path(tmp), args.repeat, args.skip_10m)
        bench_pipeline(Path(tmp), args.repeat)
        bench_eligibility(Path(tmp), args.repeat)
    print(f"\nbench/pipeline.py took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
