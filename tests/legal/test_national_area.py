"""National area thresholds compare against the area measured in the national grid, not on the ellipsoid.

A 1,000 m x 1,000 m square drawn in ETRS89 / UTM 30N (how a Spanish plan is drawn) is 100.00 ha there
and about 100.08 ha on the ellipsoid: Spain's "> 100 ha" ordinary-EIA rule must not fire on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import box

from aethera.analysis import national_area, pipeline
from aethera.analysis.aoi import load_aoi
from aethera.analysis.params import RunParams
from aethera.data.catalog import Catalog, parse_catalog
from aethera.errors import RulePackError
from aethera.legal.packs import load_all_packs, parse_pack

# A point in Lanjarón (ETRS89 / UTM 30N), inside the land-cover raster
X0, Y0 = 457_000.0, 4_086_000.0
GEOD = Geod(ellps="GRS80")


def _geodesic_ha(geom: shapely.Geometry, crs: str) -> float:
    t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    ll = shapely.transform(
        shapely.segmentize(geom, 10.0), lambda c: __import__("numpy").column_stack(t.transform(c[:, 0], c[:, 1]))
    )
    return abs(GEOD.geometry_area_perimeter(ll)[0]) / 1e4


@pytest.fixture(scope="module")
def lanjaron_lc(lanjaron_dir: Path) -> Catalog:
    return parse_catalog({"land_cover": {"path": "clc.tif", "format": "raster"}}, base_dir=lanjaron_dir)


def _run(geom_wkt: str, crs: str, country: str, catalog: Catalog) -> pipeline.PipelineOutput:
    aoi = load_aoi(geom_wkt, crs=crs)
    params = RunParams.from_request("solar", country, {"capacity_mw": 50, "buffer_km": 1}, None)
    return pipeline.run(aoi, params, catalog, lambda *a: None, lambda: False)


def _status(out: pipeline.PipelineOutput, rule_id: str) -> str:
    return next(s.status for s in out.legal.statuses if s.rule_id == rule_id)


def test_a_100_ha_utm_square_does_not_trigger_the_spanish_over_100_ha_rule(lanjaron_lc: Catalog) -> None:
    square = box(X0, Y0, X0 + 1000.0, Y0 + 1000.0)
    out = _run(square.wkt, "EPSG:25830", "ESP", lanjaron_lc)
    a = out.results.aoi
    # independent figures: 100.00 ha by construction in UTM; the ellipsoidal area from pyproj's Geod
    assert a.aoi_area_national_ha == pytest.approx(100.0, abs=1e-4)
    assert a.aoi_area_ha == pytest.approx(_geodesic_ha(square, "EPSG:25830"), rel=1e-5)
    assert a.aoi_area_ha > 100.05  # the ellipsoidal area is over the threshold ...
    assert a.national_area_crs.startswith("EPSG:25830") and "1071/2007" in a.national_area_basis
    # ... but the rule reads the national area: ordinary EIA not triggered, simplified EIA triggered
    assert _status(out, "ESP-L21-2013-ANEXO-I-SOLAR") == "passed"
    assert _status(out, "ESP-L21-2013-ANEXO-II-SOLAR") == "triggered"
    msg = next(s.message for s in out.legal.statuses if s.rule_id == "ESP-L21-2013-ANEXO-II-SOLAR")
    assert "100.00 ha in ETRS89 / UTM" in msg and f"{a.aoi_area_ha:.2f} ha on the ellipsoid" in msg


def test_the_same_square_given_in_wgs84_measures_the_same_in_the_national_grid(lanjaron_lc: Catalog) -> None:
    to_ll = Transformer.from_crs("EPSG:25830", "EPSG:4326", always_xy=True)
    square = box(X0, Y0, X0 + 1000.0, Y0 + 1000.0)
    ll = shapely.Polygon([to_ll.transform(x, y) for x, y in shapely.segmentize(square, 50.0).exterior.coords])
    n = national_area.measure(load_aoi(ll.wkt, crs="EPSG:4326"), "ESP")
    assert n.area_ha == pytest.approx(100.0, rel=1e-5)


def test_a_square_just_over_100_ha_in_the_national_grid_triggers(lanjaron_lc: Catalog) -> None:
    side = math.sqrt(100.2e4)
    out = _run(box(X0, Y0, X0 + side, Y0 + side).wkt, "EPSG:25830", "ESP", lanjaron_lc)
    assert out.results.aoi.aoi_area_national_ha == pytest.approx(100.2, abs=1e-4)
    assert _status(out, "ESP-L21-2013-ANEXO-I-SOLAR") == "triggered"


@pytest.mark.parametrize(
    ("country", "lon", "lat", "epsg"),
    [
        ("ESP", -3.46, 36.95, 25830),  # Granada: zone 30
        ("ESP", 2.17, 41.39, 25831),  # Barcelona: zone 31
        ("ESP", -8.41, 43.36, 25829),  # A Coruña: zone 29
        ("ESP", -16.25, 28.46, 25828),  # Tenerife: zone 28
        ("ESP", -17.98, 27.76, 25828),  # El Hierro, in zone 27, measured in 28 (the pack's range)
        ("DEU", 8.68, 50.11, 25832),  # Frankfurt
        ("DEU", 13.40, 52.52, 25833),  # Berlin
        ("ITA", 9.19, 45.46, 25832),  # Milan
        ("ITA", 12.50, 41.90, 25833),  # Rome
        ("ITA", 18.17, 40.35, 25833),  # Lecce, in zone 34, measured in 33
        ("FRA", 2.35, 48.86, 2154),  # Lambert-93 everywhere
        ("GRC", 23.73, 37.98, 2100),  # Greek Grid everywhere
    ],
)
def test_each_pack_states_the_crs_its_areas_are_measured_in(country: str, lon: float, lat: float, epsg: int) -> None:
    d = 0.005
    aoi = load_aoi(box(lon, lat, lon + d, lat + d).wkt, crs="EPSG:4326")
    n = national_area.measure(aoi, country)
    assert n.crs is not None and n.crs.startswith(f"EPSG:{epsg} ") and n.basis
    # independent: the planimetric area of the same (densified) polygon projected with pyproj directly
    t = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    dense = shapely.segmentize(box(lon, lat, lon + d, lat + d), 0.0001)
    planar = shapely.Polygon([t.transform(x, y) for x, y in dense.exterior.coords])
    assert n.area_ha == pytest.approx(planar.area / 1e4, abs=1e-4)  # rounded to 1 m²
    # and it differs from the ellipsoidal area by the projection's scale, never by more than 0.5 %
    assert n.area_ha == pytest.approx(aoi.area_ha, rel=5e-3)


def test_no_national_pack_no_national_area_and_the_rule_is_not_evaluable() -> None:
    aoi = load_aoi(box(-9.14, 38.72, -9.13, 38.73).wkt, crs="EPSG:4326")
    for country in ("PRT", None):
        n = national_area.measure(aoi, country)
        assert n.area_ha is None and n.crs is None and "no national rule pack" in (n.reason or "")


def test_every_national_pack_states_its_area_crs_and_only_they_use_the_national_area() -> None:
    packs = load_all_packs()
    for pid, pack in packs.items():
        uses = any("aoi_area_national_ha" in r.metrics for r in pack.rules)
        if pid == "EU":
            assert pack.area_crs is None and not uses
        else:
            assert pack.area_crs and pack.area_crs_basis, pid
    # the national area thresholds (Spain, Germany) read the national area, none the ellipsoidal one
    for pid in ("ESP", "DEU"):
        area_rules = [r for r in packs[pid].rules if "aoi_area_national_ha" in r.metrics]
        assert len(area_rules) == 2, pid
        for rule in packs[pid].rules:
            assert "aoi_area_ha" not in str(rule.condition), rule.id


_PACK = """
[pack]
id = "XXX"
name = "Test"
version = "1"
description = "test"
{extra}

[[rules]]
id = "XXX-1"
name = "area"
description = "area"
category = "land_use"
severity = "low"
condition = {{ aoi_area_national_ha = {{ ">" = 10.0 }} }}
message = "m"
pass_message = "p"
references = ["a law"]
heuristic = false
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "states no area_crs"),
        ('area_crs = "EPSG:2154"', "needs an area_crs_basis"),
        ('area_crs = "lambert"\narea_crs_basis = "x"', "neither"),
        ('area_crs = "utm:33-32"\narea_crs_basis = "x"', "first <= last"),
    ],
)
def test_pack_area_crs_statements_are_checked_at_load(extra: str, message: str) -> None:
    with pytest.raises(RulePackError, match=message):
        parse_pack(_PACK.format(extra=extra))


def test_a_valid_area_crs_statement_loads() -> None:
    pack = parse_pack(_PACK.format(extra='area_crs = "utm:28-31"\narea_crs_basis = "a decree"'))
    assert pack.area_crs == "utm:28-31"
