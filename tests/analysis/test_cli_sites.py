"""`aethera analyze` of a multi-feature file: each feature of a FeatureCollection screened as its own
site, the ranked summary as CSV on stdout (the batch summary's columns and order), progress on stderr."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import msgspec
import pytest
from shapely.geometry import box

from aethera.analysis.aoi import load_aoi
from aethera.batch_summary import COLUMN_NAMES
from aethera.data.sample import sample_region


def _feature(east_km: float, north_km: float, name: str | None) -> dict:
    region = sample_region()
    x, y = region.xy(east_km, north_km)
    aoi = load_aoi(box(x, y, x + 600, y + 600).wkt, crs="EPSG:3035")
    feature = msgspec.json.decode(aoi.to_geojson())["features"][0]
    feature["properties"] = {} if name is None else {"name": name}
    return feature


def test_analyze_sites_prints_the_summary_csv(
    tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aethera.cli import main

    features = [
        _feature(2.0, -6.0, "east"),
        _feature(-4.0, 3.0, None),
        {
            "type": "Feature",
            "properties": {"name": "a point"},
            "geometry": {"type": "Point", "coordinates": [14.3, 51.7]},
        },
    ]
    path = tmp_path / "sites.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    # no --sites: a FeatureCollection of several features is screened site by site
    code = main(
        [
            "analyze",
            str(path),
            "--project-type",
            "solar",
            "--country",
            "DEU",
            "--datasets",
            str(sample_dir / "catalog.toml"),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert "site 1/3: east" in captured.err  # progress on stderr, the table alone on stdout
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert tuple(csv.reader(io.StringIO(out)).__next__()) == COLUMN_NAMES
    assert {r["name"] for r in table} == {"east", "1", "a point"}
    by_name = {r["name"]: r for r in table}
    assert by_name["a point"]["status"] == "FAILED" and "Point" in by_name["a point"]["error"]
    assert table[-1]["name"] == "a point"  # sites that did not complete rank last
    for name in ("east", "1"):
        row = by_name[name]
        assert row["status"] == "COMPLETED"
        assert float(row["area_ha"]) == pytest.approx(36.0, rel=1e-3)
        assert 0 <= float(row["resm_score"]) <= 100 and row["overall_compliant"] in ("true", "false")


def test_analyze_a_geopackage_of_sites(tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A multi-feature GeoPackage (EPSG:3035, as GDAL writes it) is screened site by site like GeoJSON."""
    import geopandas as gpd
    from shapely.geometry import shape

    from aethera.cli import main

    features = [_feature(2.0, -6.0, "east"), _feature(-4.0, 3.0, "west")]
    frame = gpd.GeoDataFrame(
        {"name": [f["properties"]["name"] for f in features]},
        geometry=[shape(f["geometry"]) for f in features],
        crs="EPSG:4326",
    ).to_crs("EPSG:3035")
    path = tmp_path / "sites.gpkg"
    frame.to_file(path, driver="GPKG")
    code = main(["analyze", str(path), "--project-type", "solar", "--datasets", str(sample_dir / "catalog.toml")])
    out = capsys.readouterr().out
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["name"] for r in table) == ["east", "west"]
    for row in table:
        assert row["status"] == "COMPLETED"
        assert float(row["area_ha"]) == pytest.approx(36.0, rel=1e-3)
