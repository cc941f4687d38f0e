"""report.html: self-contained, escaped, and carrying the run's key figures, read back out of the page
(from the renderer directly and from the report inside a downloaded export)."""

from __future__ import annotations

import copy
import io
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import msgspec
import pytest
from exportkit import AOI, export_url, fixture_legal_result, fixture_results_struct, run_record, write_run

from aethera.analysis.results import Results
from aethera.analysis.results import document as results_document
from aethera.legal.engine import LegalResult
from aethera.report import render_report

RUN_ID, PROJECT_ID = "c" * 32, "d" * 32


class Page(HTMLParser):
    """Tags, attributes, figures (data-figure -> (data-value, visible text)) and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.figures: dict[str, tuple[str, str]] = {}
        self.text: list[str] = []
        self.styles: list[str] = []
        self._figure: tuple[str, str] | None = None
        self._figure_text: list[str] = []
        self._depth = 0
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        self._in_style = tag == "style"
        if self._figure is not None:
            self._depth += 1
        elif "data-figure" in a:
            self._figure = (a["data-figure"] or "", a.get("data-value") or "")
            self._figure_text, self._depth = [], 0

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        if self._figure is None:
            return
        if self._depth:
            self._depth -= 1
            return
        name, value = self._figure
        self.figures[name] = (value, "".join(self._figure_text).strip())
        self._figure = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
            return
        self.text.append(data)
        if self._figure is not None:
            self._figure_text.append(data)


def parse(html: bytes) -> Page:
    page = Page()
    page.feed(html.decode("utf-8"))
    page.close()
    return page


def number(text: str) -> float:
    """The first number of a figure's visible text ("1,234.57 ha" -> 1234.57)."""
    match = re.search(r"-?[\d,]+(?:\.\d+)?", text)
    assert match, text
    return float(match.group(0).replace(",", ""))


EXPECTED_FIGURES = {
    # figure name -> where the value lies in the fixture results/legal/run
    "aoi_area_ha": lambda r, lg, run: r["aoi"]["aoi_area_ha"],
    "capacity_mw": lambda r, lg, run: r["parameters"]["capacity_mw"],
    "protected_overlap_ha": lambda r, lg, run: r["biodiversity"]["protected_overlap_ha"],
    "protected_overlap_pct": lambda r, lg, run: r["biodiversity"]["protected_overlap_pct"],
    "distance_to_protected_km": lambda r, lg, run: r["receptor_distances"]["nearest_protected_area"]["distance_km"],
    "distance_to_settlement_km": lambda r, lg, run: r["receptor_distances"]["nearest_settlement"]["distance_km"],
    "net_balance_tco2e": lambda r, lg, run: r["emissions"]["net_balance_tco2e"],
    "carbon_payback_years": lambda r, lg, run: r["emissions"]["payback_years"],
    "biodiversity_sensitivity_score": lambda r, lg, run: r["biodiversity"]["sensitivity"]["score"],
    "resm_score": lambda r, lg, run: r["resm"]["score"],
    "ahsm_score": lambda r, lg, run: r["ahsm"]["score"],
    "cim_score": lambda r, lg, run: r["cim"]["score"],
}


def check_figures(page: Page, results: dict[str, Any], legal: dict[str, Any], run: dict[str, Any]) -> None:
    for name, where in EXPECTED_FIGURES.items():
        try:
            expected = where(results, legal, run)
        except (KeyError, TypeError):
            expected = None
        value, shown = page.figures[name]
        if expected is None:  # not computed: said so, never a number
            assert value == "" and "not computed" in shown, (name, shown)
            continue
        assert float(value) == expected, name  # the exact value, machine-readable
        decimals = 1 if name.endswith("_score") else 2
        assert number(shown) == round(expected, decimals), (name, shown)  # what a reader sees
    water = results["receptor_distances"]["nearest_water_body"]
    value, shown = page.figures["distance_to_water_km"]
    if water is None:
        assert value == "" and "not computed" in shown
    else:
        assert float(value) == water["distance_km"]
    compliant = legal["overall_compliant"]
    shown_compliant = {True: ("true", "yes"), False: ("false", "no")}.get(compliant)
    if shown_compliant:
        assert page.figures["overall_compliant"] == shown_compliant
    assert page.figures["critical_violations"][0] == str(len(legal["critical_violations"]))


def render(results: Results | None = None, legal: LegalResult | None = None) -> tuple[bytes, tuple]:
    """The page of the typed inputs, and those inputs as the plain data the checks read (results.json,
    legal.json, the run record)."""
    results = results or fixture_results_struct()
    legal = legal or fixture_legal_result()
    run = run_record(RUN_ID, PROJECT_ID)
    html = render_report(results, legal, run, aoi_geojson=AOI)
    return html, (results_document(results), msgspec.to_builtins(legal), run)


def test_report_carries_the_key_figures() -> None:
    html, (results, legal, run) = render()
    check_figures(parse(html), results, legal, run)


def test_report_shows_every_section() -> None:
    html, (results, legal, _run) = render()
    page = parse(html)
    text = " ".join(page.text)
    for heading in (
        "Area of interest",
        "Land cover",
        "Protected areas",
        "Receptor distances",
        "Emissions",
        "Indicators",
        "Indices and their drivers",
        "Legal screening",
    ):
        assert heading in text, heading
    for row in results["land_cover"]["aoi"]["classes"]:  # the land-cover table, with areas as computed
        assert row["label"] in text
        assert f"{row['area_ha']:,.2f} ha" in text
    assert "Sierra Nevada" in text and "ES6140004" in text
    assert "not computed: no water layer in the catalog" in text  # the reason a value is missing
    for driver in results["biodiversity"]["sensitivity"]["drivers"]:  # the drivers of an index
        assert driver["feature"] in text
    for status in legal["statuses"]:  # every verdict, with its legal references
        assert status["rule_id"] in text
        for reference in status["details"]["references"]:
            assert reference in text
    assert "not evaluable" in text and "triggered" in text and "passed" in text
    assert "Appropriate assessment required" in text
    assert any(tag == "svg" for tag, _ in page.tags)  # the AOI outline


def test_report_is_self_contained() -> None:
    html, _ = render()
    page = parse(html)
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for attr in ("src", "href", "srcset", "action"):
            assert attr not in attrs, (tag, attr)
    css = " ".join(page.styles)
    assert "url(" not in css and "@import" not in css


def test_report_escapes_what_the_results_say() -> None:
    results = fixture_results_struct()
    legal = fixture_legal_result()
    legal.statuses[0].message = '<script>alert("x")</script>'
    results.biodiversity.sites_overlapping[0].name = '<img src=x onerror="alert(1)">'
    html, _ = render(results, legal)
    page = parse(html)
    assert not any(tag in ("script", "img") for tag, _ in page.tags)
    text = " ".join(page.text)
    assert '<script>alert("x")</script>' in text  # shown as text, not run
    assert '<img src=x onerror="alert(1)">' in text
    assert "Sierras de Tejeda <&> Almijara" in text


def test_missing_values_read_not_computed_with_their_reason() -> None:
    results = fixture_results_struct()
    results.resm = None  # an index the run could not compute
    results.emissions.payback_years = None
    results.emissions.payback_reason = "the project never pays back its emissions"
    results.land_cover.buffer = None
    results.land_cover.buffer_reason = "the buffer ring lies outside the <layer>"
    html = render_report(results, None, run_record(RUN_ID, PROJECT_ID))
    page = parse(html)
    assert page.figures["resm_score"][0] == "" and "not computed" in page.figures["resm_score"][1]
    assert page.figures["carbon_payback_years"] == ("", "not computed: the project never pays back its emissions")
    assert page.figures["distance_to_water_km"] == ("", "not computed: no water layer in the catalog")
    assert "overall_compliant" not in page.figures
    text = " ".join(page.text)
    assert "the run stored no legal verdict" in text
    assert "not computed: the buffer ring lies outside the <layer>" in text


def test_same_run_renders_the_same_bytes() -> None:
    first, _ = render()
    second, _ = render(copy.deepcopy(fixture_results_struct()))
    assert first == second


async def test_report_in_the_export_carries_the_key_figures(service) -> None:
    run = await write_run(service.storage, layer_bytes=20_000)
    body = await (await service.client.get(export_url(run.run_id))).read()
    html = zipfile.ZipFile(io.BytesIO(body)).read("report.html")
    check_figures(parse(html), run.results, run.legal, run.record)


@pytest.fixture(scope="module")
def sample_screening(sample_data: Path) -> tuple[Results, LegalResult, dict]:
    """A real screening: the pipeline on the synthetic sample region, then the legal engine."""
    from pyproj import Transformer

    from aethera.analysis import pipeline
    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.metrics import natura_sites, screening_metrics
    from aethera.analysis.params import RunParams
    from aethera.data.catalog import load_catalog
    from aethera.data.sample import sample_region
    from aethera.legal.engine import evaluate
    from aethera.settings import load_settings

    catalog = load_catalog(sample_data)
    region = sample_region()
    to_wgs84 = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    ring = [list(to_wgs84.transform(*region.xy(e, n))) for e, n in ((6, -8), (7, -8), (7, -7), (6, -7), (6, -8))]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    params = RunParams.from_request("solar", "DEU", {}, load_settings({}))
    out = pipeline.run(load_aoi(geometry), params, catalog, lambda *a: None, lambda: False)
    legal = (
        out.legal
        if out.legal is not None
        else evaluate(screening_metrics(out.results, params), "DEU", natura_sites(out.results))
    )
    run = run_record(RUN_ID, PROJECT_ID)
    return out.results, legal, {**run, "aoi": geometry}


def test_report_of_a_real_pipeline_run(sample_screening: tuple[Results, LegalResult, dict]) -> None:
    typed_results, typed_legal, run = sample_screening
    html = render_report(typed_results, typed_legal, run, aoi_geojson=run["aoi"])
    page = parse(html)
    results, legal = results_document(typed_results), msgspec.to_builtins(typed_legal)
    check_figures(page, results, legal, run)
    text = " ".join(page.text)
    for row in results["land_cover"]["aoi"]["classes"]:
        assert row["label"] in text
    assert "SYNTHETIC" in text  # the sample data says what it is, and the report passes it on


def test_the_page_template_ships_as_package_data_and_escapes_by_itself() -> None:
    import tomllib
    from importlib.resources import files
    from pathlib import Path

    templates = files("aethera") / "templates"
    assert (templates / "report.html.j2").is_file() and (templates / "report.css").is_file()
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["aethera"]
    assert "templates/*.j2" in shipped and "templates/*.css" in shipped
    run = {"run_id": "<b>x</b>", "project_type": "<script>alert(1)</script>"}
    html = render_report(fixture_results_struct(), None, run).decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<title>Screening report &lt;b&gt;x&lt;/b&gt;</title>" in html


def test_hostile_text_anywhere_in_the_results_is_escaped_by_the_templates() -> None:
    """Every section's template escapes: a tag planted in each kind of text field stays text."""
    hostile = "<b onclick=x>bold</b>"
    results = fixture_results_struct()
    results.land_cover.aoi.classes[0].label = hostile
    results.receptor_distances.nearest_settlement.receptor_name = hostile  # type: ignore[union-attr]
    results.emissions.notes = [hostile]
    next(iter(results.kpis.values())).definition = hostile
    results.warnings = [hostile]
    legal = fixture_legal_result()
    legal.overall_reason = hostile
    legal.notes = [hostile]
    legal.screening.habitats_directive_art6_3.reason = hostile
    run = {**run_record(RUN_ID, PROJECT_ID), "config": {hostile: hostile}}
    page = parse(render_report(results, legal, run, site_map=""))
    assert not any(tag == "b" for tag, _ in page.tags)
    assert " ".join(page.text).count(hostile) >= 9  # the config key and value, and every field above


def test_an_index_given_as_plain_data_renders_as_the_typed_one() -> None:
    """`Results.resm` and co. are filled late and typed loosely: plain data is converted at the boundary."""
    typed, _ = render()
    results = fixture_results_struct()
    results.resm = msgspec.to_builtins(results.resm)
    results.biodiversity.sensitivity = msgspec.to_builtins(results.biodiversity.sensitivity)
    plain, _ = render(results)
    assert plain == typed


def test_report_module_builds_no_html() -> None:
    """The page is the templates': report.py prepares data only (the SVG pictures come from
    report_outline.py and report_map.py)."""
    import aethera.report

    source = Path(aethera.report.__file__).read_text()
    for tag in ("<h2", "<h3", "<table", "<tr", "<td", "<p", "<span", "<ul", "<div"):
        assert tag not in source, tag
