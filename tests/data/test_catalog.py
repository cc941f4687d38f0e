"""The dataset catalog: loading, validation messages naming the layer, inspection, `datasets check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from aethera.data.catalog import check_catalog, inspect_source, load_catalog, parse_catalog
from aethera.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_sample_catalog_loads_with_relative_paths(sample_catalog_path: Path) -> None:
    cat = load_catalog(sample_catalog_path)
    assert cat.synthetic and "SYNTHETIC" in cat.title
    lc = cat.land_cover()
    assert lc.format == "raster" and Path(lc.path) == sample_catalog_path.parent / "land_cover.tif"
    assert lc.display == "land_cover.tif"
    water = cat.sources("water")
    assert [w.sublayer for w in water] == ["rivers", "lakes"]
    assert all(w.synthetic for w in water)
    assert cat.sources("settlements")[0].population_column == "population"
    reports = check_catalog(cat)
    assert [r.layer for r in reports] == ["land_cover", "protected_areas", "settlements", "water", "water", "elevation"]
    assert all(r.ok for r in reports), [r.problems for r in reports]
    lc_report = reports[0]
    assert lc_report.crs == "EPSG:3035" and lc_report.size == (300, 300) and lc_report.count == 90_000
    assert lc_report.bounds_wgs84[0] < 14.33 < lc_report.bounds_wgs84[2]
    assert reports[1].count == 7 and reports[2].count == 15


def test_lanjaron_catalog(lanjaron_dir: Path, tmp_path: Path) -> None:
    cat = parse_catalog({"land_cover": {"path": str(lanjaron_dir / "clc.tif")}}, base_dir=tmp_path)
    r = inspect_source(cat.land_cover())
    assert r.ok and r.crs == "EPSG:3042" and r.size == (474, 745)
    assert r.bounds_wgs84 == pytest.approx((-3.525, 36.874, -3.393, 37.042), abs=0.002)
    vec = parse_catalog(
        {"land_cover": {"path": str(lanjaron_dir / "clc.gpkg"), "layer": "clc", "code_column": "CODE_18"}},
        base_dir=tmp_path,
    )
    r = inspect_source(vec.land_cover())
    assert r.ok and r.crs == "EPSG:25830" and r.count == 136


@pytest.mark.parametrize(
    "text,message",
    [
        ("title = 'x'\n", "layer 'land_cover' is required"),
        ("[land_cover]\nformat = 'raster'\n", "needs a 'path'"),
        ("[land_cover]\npath = 'a.tif'\nbands = 2\n", "unknown key 'bands'"),
        ("[land_cover]\npath = 'a.tif'\nformat = 'image'\n", "format must be 'raster' or 'vector'"),
        ("[land_cover]\npath = 'a.gpkg'\n", "needs 'code_column'"),
        ("[land_cover]\npath = 'a.tif'\ncode_column = 'X'\n", "unknown key 'code_column'"),
        ("[land_cover]\npath = 'a.tif'\nband = 0\n", "band must be a positive integer"),
        ("[land_cover]\npath = 'a.tif'\ncode_scheme = 'x'\n", "code_scheme"),
        ("[land_cover]\npath = 'a.tif'\ncrs = 'EPSG:999999'\n", "unknown crs"),
        ("[land_cover]\npath = 'a.dat'\n", "cannot tell the format"),
        ("[land_cover]\npath = 'a.tif'\n[lakes]\npath = 'l.gpkg'\n", "unknown layer or key 'lakes'"),
        (
            "[land_cover]\npath = 'a.tif'\n[elevation]\npath = 'e.gpkg'\nformat = 'vector'\n",
            "'elevation' must be raster",
        ),
        ("[land_cover]\npath = 'a.tif'\n[protected_areas]\npath = 'p.gpkg'\nband = 1\n", "unknown key 'band'"),
        (
            "[land_cover]\npath = 'a.tif'\n[settlements]\npath = 'p.gpkg'\nname_column = 3\n",
            "'name_column' must be a string",
        ),
        (
            "[land_cover]\npath = 'a.tif'\n[[elevation]]\npath = 'a.tif'\n[[elevation]]\npath = 'b.tif'\n",
            "exactly one file",
        ),
        ("[land_cover\npath = 'a.tif'\n", "not valid TOML"),
        ("land_cover = 3\n", "must be a table"),
    ],
)
def test_invalid_catalogs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalog(_write(tmp_path, text))
    assert message in info.value.detail
    assert str(tmp_path) not in info.value.detail


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; set AETHERA_DATASETS"):
        load_catalog(tmp_path / "nope.toml")


def test_paths_and_uris(tmp_path: Path) -> None:
    cat = load_catalog(
        _write(
            tmp_path,
            """
[land_cover]
path = "s3://bucket/clc/clc2018.tif"
[elevation]
path = "https://example.org/dem.tif"
[[water]]
path = "/abs/rivers.gpkg"
[[water]]
path = "sub/lakes.gpkg"
layer = "lakes"
""",
        )
    )
    assert cat.land_cover().path == "/vsis3/bucket/clc/clc2018.tif" and cat.land_cover().display == "clc2018.tif"
    assert cat.single("elevation").path == "/vsicurl/https://example.org/dem.tif"
    rivers, lakes = cat.sources("water")
    assert rivers.path == "/abs/rivers.gpkg" and rivers.format == "vector"
    assert Path(lakes.path) == tmp_path / "sub" / "lakes.gpkg" and lakes.display == "lakes.gpkg:lakes"


def test_check_reports_missing_files_and_columns(tmp_path: Path, sample_catalog_path: Path) -> None:
    d = sample_catalog_path.parent
    cat = load_catalog(
        _write(
            tmp_path,
            f"""
[land_cover]
path = "{d / "land_cover.tif"}"
band = 2
[protected_areas]
path = "{d / "protected_areas.gpkg"}"
id_column = "SITECODE"
[settlements]
path = "gone.gpkg"
""",
        )
    )
    reports = {r.layer: r for r in check_catalog(cat)}
    assert reports["land_cover"].found and "band 2 requested but the file has 1" in reports["land_cover"].problems
    assert any("column 'SITECODE' not found" in p for p in reports["protected_areas"].problems)
    assert not reports["settlements"].found and reports["settlements"].problems == ["file not found"]
    assert reports["water"].problems == ["not configured in the catalog"] and not reports["water"].required


def test_cli_datasets_check(sample_catalog_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aethera.cli import main

    assert main(["datasets", "check", str(sample_catalog_path)]) == 0
    out = capsys.readouterr().out
    for expected in (
        "land_cover",
        "required  OK",
        "EPSG:3035",
        "300 x 300 pixels",
        "7 features",
        "(layer rivers)",
        "extent lon 14.1",
    ):
        assert expected in out, expected
    bad = _write(tmp_path, "[land_cover]\npath = 'missing.tif'\n")
    assert main(["datasets", "check", str(bad)]) == 1
    assert "MISSING" in capsys.readouterr().out
