"""The report's site map: inline SVG of the AOI, its zone, protected areas and land cover in CORINE
colours, with a legend, a scale bar and a north arrow, nothing fetched; drawn from a real run."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import msgspec
import pytest
from pyproj import CRS
from shapely.geometry import box, mapping

from aethera.analysis import pipeline
from aethera.analysis.aoi import load_aoi
from aethera.analysis.params import RunParams
from aethera.data import corine
from aethera.data.catalog import Catalog
from aethera.data.sample import sample_region
from aethera.report import render_report
from aethera.report_map import site_map_svg


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def spa_site(sample_catalog: Catalog) -> tuple[dict, pipeline.PipelineOutput]:
    x, y = sample_region().xy(-8.0, -9.8)
    aoi = load_aoi(box(x, y, x + 2000, y + 1500).wkt, crs="EPSG:3035")
    params = RunParams.from_request("solar", "DEU", {"buffer_km": 3}, None)
    out = pipeline.run(aoi, params, sample_catalog, lambda *a: None, lambda: False)
    geojson = json.loads(
        msgspec.json.encode({"type": "Feature", "properties": {}, "geometry": mapping(aoi.in_crs(CRS.from_epsg(4326)))})
    )
    return geojson, out


def test_the_site_map_shows_what_the_run_found(spa_site, sample_catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    geojson, out = spa_site
    html = site_map_svg(geojson, 3.0, protected_geojson=out.layers["natura"], catalog=sample_catalog)
    page = Tags()
    page.feed(html)
    names = [t for t, _ in page.tags]
    assert names.count("svg") == 1 and "script" not in names and "img" not in names and "image" not in names
    assert not re.search(r"href|url\(|<use|@import", html)  # nothing fetched or referenced
    kinds = [a.get("data-kind") for t, a in page.tags if t == "li"]
    assert kinds[:3] == ["aoi", "zone", "protected"] and "class" in kinds
    # every land-cover class of the AOI is in the legend, in its CORINE colour
    for cls in out.results.land_cover.aoi.classes:
        if cls.code is not None and cls.share > 0.01:
            assert f"background:{corine.colour(cls.code)}" in html, cls.code
            assert f"{cls.code} {corine.label(cls.code)}" in html
    assert re.search(r'class="scalebar".*?>\d+(\.\d+)? k?m</text>', html)
    assert 'class="north"' in html and ">N</text>" in html
    assert len(html) < 400_000  # simplified to the drawing's pixel, whatever the layers hold


def test_the_report_embeds_it(spa_site, sample_catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    geojson, out = spa_site
    site_map = site_map_svg(geojson, 3.0, protected_geojson=out.layers["natura"], catalog=sample_catalog)
    html = render_report(out.results, None, {"run_id": "r" * 32}, aoi_geojson=geojson, site_map=site_map).decode()
    assert html.count("<svg") == 1 and 'class="sitemap"' in html and "<script" not in html
    # without a catalog (no land cover) it still draws the AOI, zone and protected areas
    bare = site_map_svg(geojson, 3.0, protected_geojson=out.layers["natura"], catalog=None)
    assert 'data-kind="class"' not in bare and 'data-kind="protected"' in bare
    assert site_map_svg(None, 3.0) == ""


def test_the_map_draws_the_eligible_land_and_the_report_explains_it(sample_catalog: Catalog) -> None:
    x, y = sample_region().xy(5.0, -3.0)
    aoi = load_aoi(box(x, y, x + 2000, y + 2000).wkt, crs="EPSG:3035")
    params = RunParams.from_request("solar", "DEU", {"buffer_km": 2}, None)
    out = pipeline.run(aoi, params, sample_catalog, lambda *a: None, lambda: False)
    el = out.results.eligibility
    assert el is not None and 0 < el.eligible_ha < el.aoi_area_ha, "the site must be partly eligible"
    geojson = json.loads(
        msgspec.json.encode({"type": "Feature", "properties": {}, "geometry": mapping(aoi.in_crs(CRS.from_epsg(4326)))})
    )
    html = site_map_svg(
        geojson,
        2.0,
        protected_geojson=out.layers["natura"],
        eligible_geojson=out.layers["eligible"],
        catalog=sample_catalog,
    )
    page = Tags()
    page.feed(html)
    assert "eligible" in [a.get("data-kind") for t, a in page.tags if t == "li"]
    assert sum(1 for t, a in page.tags if t == "path" and a.get("data-layer") == "eligible") == 1
    report = render_report(out.results, None, {"run_id": "r" * 32}, aoi_geojson=geojson, site_map=html).decode()
    assert "<h2>Land eligibility</h2>" in report
    assert f"Binding constraints, largest exclusive area first: {', '.join(el.binding_constraints)}." in report
    for rule in el.rules:
        assert f"<td>{rule.rule}</td>" in report or rule.rule in report
