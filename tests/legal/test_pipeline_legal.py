"""End to end on the synthetic sample region: `aethera sample-data`, then `aethera analyze --country DEU`.

An AOI inside a sample Natura 2000 site must give a critical violation and "appropriate assessment
required"; an AOI far from every sensitive feature must be compliant. The real pipeline also proves that
every metric the packs read is computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyproj import Transformer
from shapely.geometry import box

from aethera.cli import main
from aethera.data.sample import sample_region
from aethera.legal.conditions import metrics_of
from aethera.legal.metrics import METRICS
from aethera.legal.packs import load_all_packs


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sample-region")
    assert main(["sample-data", str(directory)]) == 0
    return directory


def _aoi_file(directory: Path, name: str, east_km: float, north_km: float, w_km: float, h_km: float) -> Path:
    """A rectangle placed in km from the sample region's centre, written as GeoJSON in EPSG:4326."""
    x, y = sample_region().xy(east_km, north_km)
    to_wgs84 = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    corners = [to_wgs84.transform(cx, cy) for cx, cy in box(x, y, x + w_km * 1000, y + h_km * 1000).exterior.coords]
    geometry = {"type": "Polygon", "coordinates": [corners]}
    path = directory / f"{name}.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": geometry}))
    return path


def _analyze(sample: Path, aoi: Path, project_type: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(
        [
            "analyze",
            str(aoi),
            "--project-type",
            project_type,
            "--country",
            "DEU",
            "--datasets",
            str(sample / "catalog.toml"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_aoi_inside_a_natura_site_is_a_critical_violation(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # inside the Grubensee SPA (an ellipse 3.6 x 2.6 km around 7 km west, 9 km south of the centre)
    doc = _analyze(sample, _aoi_file(tmp_path, "inside", -7.5, -9.5, 1.5, 1.0), "wind", capsys)
    legal = doc["legal"]
    assert legal["country_code"] == "DEU" and legal["packs_applied"] == ["EU", "DEU"]
    assert legal["overall_compliant"] is False
    critical = {s["rule_id"] for s in legal["critical_violations"]}
    assert {"EU-HD-6.3-OVERLAP", "DEU-BNATSCHG-34"} <= critical
    art = legal["screening"]["habitats_directive_art6_3"]
    assert art["verdict"] == "appropriate assessment required"
    assert "DE4351401" in {s["site_code"] for s in art["natura2000_sites"]}
    assert "2(c)(v)" in {f["criterion"] for f in legal["screening"]["eia_annex_iii"]}
    # the indices are printed too, and agree with where the AOI lies
    sens = doc["biodiversity"]["sensitivity"]
    assert sens["category"] in ("high", "very_high") and sens["confidence"] == 1.0
    for key in ("resm", "ahsm", "cim"):
        assert 0 <= doc[key]["score"] <= 100 and doc[key]["model"]["name"]
    assert set(doc["ahsm"]["components"]) == {"flood", "wildfire", "landslide"}


def test_aoi_far_from_every_sensitive_feature_is_compliant(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _analyze(sample, _aoi_file(tmp_path, "far", 7.0, -9.0, 2.0, 2.0), "solar", capsys)
    legal = doc["legal"]
    assert doc["biodiversity"]["sites_in_buffer"] == []
    assert legal["overall_compliant"] is True and legal["critical_violations"] == []
    assert legal["screening"]["habitats_directive_art6_3"]["verdict"] == "not required"
    assert legal["summary"]["not_evaluable"] == 0
    assert doc["biodiversity"]["sensitivity"]["score"] < doc["resm"]["score"]


def test_real_run_computes_every_metric_the_packs_read(sample: Path, tmp_path: Path) -> None:
    from aethera.analysis import pipeline
    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.metrics import screening_metrics
    from aethera.analysis.params import RunParams
    from aethera.data.catalog import load_catalog

    aoi = load_aoi(_aoi_file(tmp_path, "edge", -7.5, -12.0, 2.0, 1.5).read_bytes(), filename="edge.geojson")
    params = RunParams.from_request("wind", "DEU", None, None)
    out = pipeline.run(aoi, params, load_catalog(sample / "catalog.toml"), lambda *a: None, lambda: False)
    metrics = screening_metrics(out.results, params)
    assert set(metrics) == set(METRICS)
    used = {m for pack in load_all_packs().values() for rule in pack.rules for m in rule.metrics}
    assert used <= set(METRICS)
    missing = sorted(m for m in used if metrics[m] is None)
    # a Natura 2000 site lies in this AOI's zone of influence, so even its distance is known
    assert missing == [], f"the pipeline left these pack metrics uncomputed: {missing}"
    conditions = {m for pack in load_all_packs().values() for rule in pack.rules for m in metrics_of(rule.condition)}
    assert {"project_type", "capacity_mw", "water_ratio", "agricultural_ratio"} <= conditions
    statuses = {s.status for s in out.legal.statuses}
    assert "not_evaluable" not in statuses


def test_missing_layers_lower_confidence_and_make_rules_not_evaluable(sample: Path, tmp_path: Path) -> None:
    import shutil

    from aethera.analysis import pipeline
    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.params import RunParams
    from aethera.data.catalog import load_catalog

    data = tmp_path / "data"
    shutil.copytree(sample, data)
    text = (data / "catalog.toml").read_text()
    # the water and elevation sections close the file: without them there is no slope, and CORINE water
    # classes stand in for the water layer
    assert text.index("[[water]]") < text.index("[elevation]")
    text = text[: text.index("[[water]]")]
    (data / "catalog.toml").write_text(text)
    aoi = load_aoi(_aoi_file(tmp_path, "a", -1.0, -4.0, 2.0, 1.5).read_bytes(), filename="a.geojson")
    out = pipeline.run(
        aoi,
        RunParams.from_request("solar", "DEU", None, None),
        load_catalog(data / "catalog.toml"),
        lambda *a: None,
        lambda: False,
    )
    r = out.results
    ahsm = r.ahsm
    assert ahsm.components["landslide"] is None and ahsm.confidence < 1.0
    slope = next(d for d in ahsm.drivers if d.feature == "mean_slope_deg")
    assert slope.value is None and "elevation" in (slope.note or "")
    water = r.receptor_distances.nearest_water_body
    assert water is not None and water.source == "land_cover_fallback"  # counts half in the confidence
    assert ahsm.confidence == pytest.approx(1.0 - 0.25 - 0.15 * 0.5)
    assert r.cim.confidence < 1.0 and r.biodiversity.sensitivity.confidence == 1.0
    steep = next(s for s in out.legal.statuses if s.rule_id == "EU-STEEP-TERRAIN")
    assert steep.status == "not_evaluable" and steep.passed is None and "mean_slope_deg" in steep.message
    assert out.legal.overall_compliant is True  # no critical rule depends on slope
