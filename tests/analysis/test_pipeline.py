"""The whole pipeline on the synthetic sample region: every field filled or null with a reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest
from shapely.geometry import box, shape

from aethera.analysis import pipeline
from aethera.analysis.aoi import AOI, load_aoi
from aethera.analysis.params import RunParams
from aethera.data.catalog import Catalog, load_catalog
from aethera.data.sample import sample_region
from aethera.errors import AnalysisError, DatasetError, InvalidAOI, RunCancelled

REFERENCE_KPIS = {
    "ghg_intensity",
    "carbon_sequestration_potential",
    "net_carbon_balance",
    "land_use_efficiency",
    "impervious_surface_ratio",
    "natural_habitat_ratio",
    "habitat_fragmentation",
    "patch_density",
    "edge_density",
    "shannon_diversity",
    "connectivity",
    "ecosystem_service_value",
    "water_regulation",
    "soil_erosion_risk",
    "air_quality_impact",
    "particulate_potential",
    "resource_efficiency",
    "renewable_share",
}


def _aoi(east_km: float, north_km: float, w_km: float = 2.0, h_km: float = 1.5) -> AOI:
    region = sample_region()
    x, y = region.xy(east_km, north_km)
    return load_aoi(box(x, y, x + w_km * 1000, y + h_km * 1000).wkt, crs="EPSG:3035")


class Recorder:
    def __init__(self) -> None:
        self.progress: list[tuple[str, float, str]] = []
        self.outputs: dict[str, tuple[bytes, str]] = {}

    def on_progress(self, step: str, percent: float, message: str) -> None:
        self.progress.append((step, percent, message))

    def on_output(self, name: str, data: bytes, media_type: str) -> None:
        self.outputs[name] = (data, media_type)


@pytest.fixture(scope="module")
def spa_run(sample_catalog: Catalog) -> tuple[pipeline.PipelineOutput, Recorder]:
    rec = Recorder()
    params = RunParams.from_request("wind_farm", "DEU", {"buffer_km": 5}, None)
    out = pipeline.run(_aoi(-8.0, -9.8), params, sample_catalog, rec.on_progress, lambda: False, rec.on_output)
    return out, rec


def test_every_step_field_is_filled(spa_run) -> None:  # type: ignore[no-untyped-def]
    out, _ = spa_run
    r = out.results
    assert r.aoi.aoi_area_ha == pytest.approx(300.0, rel=1e-6)
    # no capacity requested: the project is what the eligible land holds (inside an SPA, with the wind
    # rule set's 1.5 km around protected sites, nothing)
    cap = r.eligibility.capacity_mw
    assert r.parameters.project_type == "wind" and r.parameters.capacity_mw == cap == 0.0
    assert r.parameters.capacity_source.startswith("eligible land: density 0.03 MW/ha")
    assert r.land_cover.source == "raster" and r.land_cover.buffer is not None
    assert sum(c.area_ha for c in r.land_cover.aoi.classes) == pytest.approx(300.0, rel=0.005)
    assert r.biodiversity.available and r.biodiversity.protected_overlap_pct > 50
    assert r.biodiversity.natura2000_sites_in_buffer >= 2
    assert {s.site_code for s in r.biodiversity.sites_overlapping} >= {"DE4351401"}
    rd = r.receptor_distances
    for receptor in (rd.nearest_protected_area, rd.nearest_settlement, rd.nearest_water_body):
        assert receptor is not None and receptor.source == "layer" and receptor.distance_km >= 0
    assert rd.nearest_protected_area.distance_km == 0.0
    assert [c.within_km for c in rd.counts] == [0.5, 1.0, 2.0, 5.0]
    assert r.terrain.available and r.terrain.mean_slope_deg is not None
    e = r.emissions
    assert e.capacity_mw == pytest.approx(cap) and e.construction_tco2e == pytest.approx(cap * 600)
    # avoided: summed on Germany's grid trajectory from the first operating year (a mean per year)
    assert e.lifetime_avoided_tco2e == pytest.approx(sum(y.avoided_tco2e for y in e.avoided_by_year), rel=1e-6)
    assert e.avoided_tco2e_per_year == pytest.approx(e.lifetime_avoided_tco2e / 25, rel=1e-6)
    assert e.avoided_by_year[0].year == e.first_operating_year and len(e.avoided_by_year) == 25
    assert e.biome in ("continental", "atlantic") and e.biome_reason
    assert set(r.kpis) >= REFERENCE_KPIS
    for name, kpi in r.kpis.items():
        assert kpi.unit and kpi.definition, name
        assert kpi.value is not None or kpi.reason, name
    # the indices and the legal check ran: every input layer is there, so every confidence is full
    for index in (r.biodiversity.sensitivity, r.resm, r.ahsm, r.cim):
        assert 0 <= index.score <= 100 and index.confidence == 1.0 and index.drivers
    assert r.biodiversity.sensitivity_reason is None and out.legal is not None
    assert [d.layer for d in r.datasets] == ["land_cover", "protected_areas", "settlements", "water", "elevation"]
    assert all(d.available and d.synthetic for d in r.datasets)
    assert all("/" not in f for d in r.datasets for f in d.files)  # file names only, no directories
    # the only warning: no land inside the SPA is eligible for wind, so the emission balance is of 0 MW
    assert len(r.warnings) == 1 and r.warnings[0].startswith("no land of the AOI is eligible"), r.warnings
    assert set(r.step_durations_s) == {s.name for s in pipeline.STEPS}
    assert all(v >= 0 for v in r.step_durations_s.values())


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float)


def test_published_document_holds_scalars_where_a_client_renders_them(spa_run) -> None:  # type: ignore[no-untyped-def]
    """kpis and emissions are flat maps of numbers; what qualifies them moved to sibling objects, whole."""
    from aethera.analysis.results import document

    out, _ = spa_run
    r = out.results
    doc = json.loads(msgspec.json.encode(document(r)))
    assert set(doc["kpis"]) == set(r.kpis) == set(doc["kpi_definitions"])
    for name, kpi in r.kpis.items():
        assert doc["kpis"][name] == kpi.value and _is_scalar(doc["kpis"][name])
        definition = doc["kpi_definitions"][name]
        assert definition["unit"] == kpi.unit and definition["definition"] == kpi.definition
        assert definition["reason"] == kpi.reason and definition["coverage_ratio"] == kpi.coverage_ratio
        assert "value" not in definition
    assert all(isinstance(v, int | float) or v is None for v in doc["emissions"].values())
    assert doc["emissions"]["net_balance_tco2e"] == r.emissions.net_balance_tco2e
    assert doc["emissions"]["payback_years"] == r.emissions.payback_years
    details = doc["emissions_details"]
    assert set(details) >= {
        "technology",
        "land_use_change_by_class",
        "factors",
        "notes",
        "payback_reason",
        "land_use_change_coverage_ratio",
    }
    # nothing lost: the two maps together are the whole emissions step
    assert {**doc["emissions"], **details} == msgspec.to_builtins(r.emissions)
    assert doc["biodiversity"]["score"] == r.biodiversity.sensitivity.score
    assert doc["biodiversity"]["category"] == r.biodiversity.sensitivity.category
    assert doc["biodiversity"]["sensitivity"]["drivers"]  # the index keeps its detail
    for index in ("resm", "ahsm", "cim"):
        assert isinstance(doc[index]["score"], float)


def test_results_serialise_and_feed_the_metrics(spa_run) -> None:  # type: ignore[no-untyped-def]
    from aethera.analysis.metrics import screening_metrics
    from aethera.legal.metrics import METRICS

    out, _ = spa_run
    data = msgspec.json.encode(out.results)
    back = msgspec.json.decode(data)
    assert back["aoi"]["aoi_area_ha"] == out.results.aoi.aoi_area_ha
    metrics = screening_metrics(out.results)
    assert set(metrics) == set(METRICS)
    assert metrics["protected_overlap_pct"] == out.results.biodiversity.protected_overlap_pct
    assert metrics["water_ratio"] is not None and metrics["forest_ratio"] is not None
    assert metrics["distance_to_settlement_km"] == out.results.receptor_distances.nearest_settlement.distance_km


def test_progress_and_outputs(spa_run) -> None:  # type: ignore[no-untyped-def]
    out, rec = spa_run
    steps = [p[0] for p in rec.progress]
    assert steps == [s.name for s in pipeline.STEPS] + ["done"]
    percents = [p[1] for p in rec.progress]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    assert set(rec.outputs) == {
        "layers/natura.geojson",
        "layers/overlap.geojson",
        "layers/sensitivity.geojson",
        "layers/eligible.geojson",
    }
    assert set(out.layers) == {"natura", "overlap", "sensitivity", "eligible"} == set(pipeline.LAYER_NAMES_OUT)
    for name, data in out.layers.items():
        assert rec.outputs[f"layers/{name}.geojson"] == (data, "application/geo+json")
        fc = json.loads(data)
        assert fc["type"] == "FeatureCollection"
        for f in fc["features"]:
            g = shape(f["geometry"])
            minx, miny, maxx, maxy = g.bounds
            assert 14.0 < minx < maxx < 14.7 and 51.5 < miny < maxy < 52.0  # lon, lat in EPSG:4326
    natura = json.loads(out.layers["natura"])
    assert {f["properties"]["site_code"] for f in natura["features"]} == {
        s.site_code for s in out.results.biodiversity.sites_in_buffer
    }
    sens = json.loads(out.layers["sensitivity"])["features"][0]["properties"]
    assert sens["score"] == out.results.biodiversity.sensitivity.score
    assert sens["category"] == out.results.biodiversity.sensitivity.category


def test_clean_site_far_from_everything(sample_catalog: Catalog) -> None:
    params = RunParams.from_request("solar", "DEU", {"capacity_mw": 50, "buffer_km": 2}, None)
    out = pipeline.run(_aoi(7.0, -9.0, 2.0, 2.0), params, sample_catalog, lambda *a: None, lambda: False)
    r = out.results
    assert r.biodiversity.protected_overlap_pct == 0 and r.biodiversity.sites_in_buffer == []
    assert r.receptor_distances.nearest_protected_area.distance_km > 5
    assert r.receptor_distances.nearest_settlement.distance_km > 2
    assert r.parameters.capacity_source == "config" and r.emissions.capacity_mw == 50


def test_cancellation_between_steps(sample_catalog: Catalog) -> None:
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 3  # cancel before the fourth step

    rec = Recorder()
    params = RunParams.from_request("solar", "DEU", None, None)
    with pytest.raises(RunCancelled) as info:
        pipeline.run(_aoi(7.0, -9.0), params, sample_catalog, rec.on_progress, cancelled, rec.on_output)
    assert pipeline.STEPS[3].name in info.value.detail
    assert [p[0] for p in rec.progress] == [s.name for s in pipeline.STEPS[:3]]
    assert rec.outputs == {}


def test_missing_required_layer_names_it(tmp_path: Path, sample_dir: Path) -> None:
    for f in sample_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "land_cover.tif").unlink()
    catalog = load_catalog(tmp_path / "catalog.toml")
    with pytest.raises(DatasetError) as info:
        pipeline.run(
            _aoi(7.0, -9.0), RunParams.from_request("solar", None, None, None), catalog, lambda *a: None, lambda: False
        )
    assert "land_cover" in info.value.detail and str(tmp_path) not in info.value.detail


def test_missing_optional_layers_lower_what_depends_on_them(tmp_path: Path, sample_dir: Path) -> None:
    for f in sample_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "settlements.gpkg").unlink()  # configured but gone
    text = (tmp_path / "catalog.toml").read_text()
    text = text[: text.index("[elevation]")]  # elevation not configured at all
    (tmp_path / "catalog.toml").write_text(text)
    catalog = load_catalog(tmp_path / "catalog.toml")
    out = pipeline.run(
        _aoi(-1.0, -4.0), RunParams.from_request("solar", "DEU", None, None), catalog, lambda *a: None, lambda: False
    )
    r = out.results
    status = {d.layer: d for d in r.datasets}
    assert not status["settlements"].available and "file not found" in status["settlements"].reason
    assert not status["elevation"].configured and "slope" in status["elevation"].reason
    assert r.receptor_distances.nearest_settlement.source == "land_cover_fallback"
    assert r.receptor_distances.population_within_1km is None
    assert r.terrain.available is False and r.terrain.mean_slope_deg is None and r.terrain.reason
    assert r.kpis["soil_erosion_risk"].value is None and r.kpis["soil_erosion_risk"].reason
    assert r.kpis["air_quality_impact"].value is None and r.kpis["air_quality_impact"].reason
    assert any("settlements" in w for w in r.warnings) and any("elevation" in w for w in r.warnings)


def test_aoi_outside_the_data_is_refused(sample_catalog: Catalog) -> None:
    far = load_aoi(box(2.0, 48.0, 2.05, 48.03).wkt)  # Paris
    with pytest.raises(InvalidAOI, match="outside the land-cover data"):
        pipeline.run(
            far, RunParams.from_request("solar", "FRA", None, None), sample_catalog, lambda *a: None, lambda: False
        )


def test_an_unexpected_failure_names_the_step(sample_catalog: Catalog) -> None:
    def broken(ctx: pipeline.RunContext) -> None:
        raise ZeroDivisionError("internal detail /srv/secret")

    steps = [*pipeline.STEPS[:2], pipeline.Step("broken", 1, "failing on purpose", broken)]
    with pytest.raises(AnalysisError) as info:
        pipeline.run(
            _aoi(7.0, -9.0),
            RunParams.from_request("solar", None, None, None),
            sample_catalog,
            lambda *a: None,
            lambda: False,
            steps=steps,
        )
    assert info.value.detail == "the broken step failed unexpectedly"


def test_cli_analyze(tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aethera.cli import main

    aoi = _aoi(2.0, -6.0)
    path = tmp_path / "site.geojson"
    path.write_bytes(aoi.to_geojson())
    code = main(
        [
            "analyze",
            str(path),
            "--project-type",
            "solar",
            "--country",
            "DEU",
            "--capacity-mw",
            "20",
            "--buffer-km",
            "3",
            "--datasets",
            str(sample_dir / "catalog.toml"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)
    assert doc["parameters"]["capacity_mw"] == 20 and doc["parameters"]["buffer_km"] == 3
    assert doc["aoi"]["aoi_area_ha"] == pytest.approx(300.0, rel=1e-4)
    assert "legal" in doc and set(doc["kpis"]) >= REFERENCE_KPIS
    assert all(v is None or isinstance(v, float) for v in doc["kpis"].values())  # the published shape
    assert set(doc["kpi_definitions"]) == set(doc["kpis"])
    assert "land_cover" in captured.err and "100.0%" in captured.err  # the progress bar went to stderr


def test_cli_analyze_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aethera.cli import main

    path = tmp_path / "point.geojson"
    path.write_text('{"type": "Point", "coordinates": [14.3, 51.7]}')
    assert main(["analyze", str(path), "--project-type", "solar"]) == 2
    assert "Point" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nope.geojson"), "--project-type", "solar"]) == 2
    assert main(["analyze", str(path), "--project-type", "nuclear"]) == 2
