"""report.html costs time and bytes in proportion to what it draws: the AOI outline is simplified to the
drawing's resolution, and no step is quadratic in vertices or features (a 450k-vertex AOI, under the
500k limit, used to take hours).

Times are CPU time of this process (`time.process_time`), best of 3 per size, so other work on a busy
machine does not make a size look slower than it is; the bounds are ratios between two sizes of the
same input, never absolute times.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from exportkit import fixture_legal_result, fixture_results_struct, run_record

from aethera.analysis.results import FactorUsed, Results, SiteNearby
from aethera.report import MAX_TABLE_COLUMNS, OUTLINE_MAX_POINTS, render_report

RUN_ID, PROJECT_ID = "e" * 32, "f" * 32
# 10x the input may cost at most this many times the time (linear is 10, n log n a little more)
MAX_RATIO_FOR_10X = 15.0


def _best_cpu_s(work: Callable[[], Any], repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def wavy_aoi(vertices: int, seed: int = 1) -> dict[str, Any]:
    """A closed ring of `vertices` positions around 51.74 N 14.30 E, about 2 km across, every vertex a
    little off a smooth curve (so simplification has real detail to drop)."""
    rng = random.Random(seed)
    ring = []
    for i in range(vertices - 1):
        angle = 2 * math.pi * i / (vertices - 1)
        radius_deg = 0.01 * (1 + 0.3 * math.sin(7 * angle) + 0.002 * rng.random())
        ring.append([14.30 + radius_deg * math.cos(angle) / 0.62, 51.74 + radius_deg * math.sin(angle)])
    ring.append(ring[0])
    return {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _render(
    aoi: dict[str, Any] | None = None, results: Results | None = None, config: dict[str, Any] | None = None
) -> bytes:
    run = run_record(RUN_ID, PROJECT_ID)
    if config is not None:
        run["config"] = config
    return render_report(results or fixture_results_struct(), fixture_legal_result(), run, aoi_geojson=aoi)


def _outline_points(html: bytes) -> int:
    path = re.search(rb'<path d="([^"]*)"', html)
    assert path is not None, "no outline"
    return len(re.findall(rb"[ML]-?[0-9.]+,-?[0-9.]+", path.group(1)))


def _ratio(small: Callable[[], Any], large: Callable[[], Any]) -> tuple[float, float, float]:
    small_s, large_s = _best_cpu_s(small), _best_cpu_s(large)
    return large_s / max(small_s, 1e-6), small_s, large_s


def test_outline_time_is_linear_in_vertices() -> None:
    small, large = wavy_aoi(5_000), wavy_aoi(50_000)
    ratio, small_s, large_s = _ratio(lambda: _render(small), lambda: _render(large))
    assert ratio <= MAX_RATIO_FOR_10X, f"5k vertices {small_s:.3f} s, 50k {large_s:.3f} s"


def test_aoi_near_the_vertex_limit_renders_like_a_tenth_of_it() -> None:
    small, large = wavy_aoi(45_000), wavy_aoi(450_000)
    ratio, small_s, large_s = _ratio(lambda: _render(small), lambda: _render(large))
    assert ratio <= MAX_RATIO_FOR_10X, f"45k vertices {small_s:.3f} s, 450k {large_s:.3f} s"


def test_outline_is_bounded_by_the_drawing_resolution() -> None:
    html = _render(wavy_aoi(450_000))
    assert 100 < _outline_points(html) <= OUTLINE_MAX_POINTS
    # the page does not grow with the AOI: at most one "L123.4,567.8" per drawn point
    assert len(html) < len(_render(wavy_aoi(50))) + 14 * OUTLINE_MAX_POINTS


def test_a_small_aoi_is_drawn_vertex_for_vertex() -> None:
    aoi = wavy_aoi(60)
    # every vertex lies in a cell of its own; the closing one (the first again) is the path's "Z"
    assert _outline_points(_render(aoi)) == 59


def test_a_ring_that_zigzags_between_cells_is_still_bounded() -> None:
    """A comb of 100k teeth, each vertex far from the last, defeats grid snapping; every k-th vertex
    bounds it."""
    vertices = 200_000
    ring = []
    for i in range(vertices):
        angle = 2 * math.pi * i / vertices
        radius_deg = 0.01 if i % 2 else 0.005
        ring.append([14.30 + radius_deg * math.cos(angle) / 0.62, 51.74 + radius_deg * math.sin(angle)])
    ring.append(ring[0])
    html = _render({"type": "Polygon", "coordinates": [ring]})
    assert 100 < _outline_points(html) <= OUTLINE_MAX_POINTS


def test_many_small_parts_give_way_to_the_large_one() -> None:
    """A MultiPolygon of 40k specks (under a pixel of the drawing each) and one large part: the specks
    go first (a coarser grid drops what fits in a cell), the large part stays drawn in detail."""
    large = wavy_aoi(2_000)["geometry"]["coordinates"]
    rng = random.Random(3)
    specks = []
    for _ in range(40_000):
        lon, lat = 14.28 + rng.random() * 0.04, 51.73 + rng.random() * 0.02
        specks.append([[[lon, lat], [lon + 2e-5, lat], [lon + 2e-5, lat + 2e-5], [lon, lat]]])
    html = _render({"type": "MultiPolygon", "coordinates": [large, *specks]})
    path = re.search(rb'<path d="([^"]*)"', html)
    assert path is not None
    first_ring = path.group(1).split(b"Z")[0]
    assert _outline_points(html) <= OUTLINE_MAX_POINTS
    assert len(re.findall(rb"[ML]", first_ring)) > 500  # the large part: a point every 2 px or so
    assert path.group(1).count(b"Z") < 40_000 // 10  # most specks are gone


def _many_features(count: int) -> tuple[Results, dict[str, Any]]:
    """Results whose lists and maps hold `count` entries (sites in the zone of influence, emission
    factors), and a run config (free-form client JSON, drawn generically) with `count` keys and a list
    of rows each with a key of its own."""
    results = fixture_results_struct()
    results.emissions.factors = {
        f"factor_{i}": FactorUsed(value=float(i), unit="tCO2e/ha", source=f"source {i}") for i in range(count)
    }
    results.biodiversity.sites_in_buffer = [
        SiteNearby(
            site_code=f"ES{i:07d}", name=f"site {i}", type="SCI", natura2000=True, distance_km=i / 1000, overlap_ha=0.0
        )
        for i in range(count)
    ]
    config = {f"option_{i}": {"name": f"option {i}", "year": 2020} for i in range(count)}
    config["rows"] = [{"name": f"row {i}", f"attribute_{i}": i} for i in range(count)]
    return results, config


@pytest.mark.slow
def test_generic_sections_are_linear_in_features() -> None:
    small, large = _many_features(1_000), _many_features(10_000)
    ratio, small_s, large_s = _ratio(
        lambda: _render(results=small[0], config=small[1]), lambda: _render(results=large[0], config=large[1])
    )
    assert ratio <= MAX_RATIO_FOR_10X, f"1k features {small_s:.3f} s, 10k {large_s:.3f} s"
    # rows with a key each would make a table of rows x rows cells; they are drawn row by row instead
    assert len(_render(results=large[0], config=large[1])) < 400 * 10_000 * 3


def test_a_table_with_few_columns_stays_a_table() -> None:
    rows = [{f"c{j}": j for j in range(MAX_TABLE_COLUMNS)} for _ in range(3)]
    html = _render(config={"rows": rows})
    assert b"<th>C39</th>" in html
