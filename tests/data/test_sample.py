"""The synthetic sample region: deterministic, labelled synthetic, plausible, and where it should be."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from pyproj import Transformer

from aethera.data import sample


def _digests(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


def test_same_seed_same_bytes(tmp_path: Path, sample_catalog_path: Path) -> None:
    again = sample.generate_sample_data(tmp_path / "again", seed=42)
    # the files the generator writes (the shared copy may also hold GDAL's .aux.xml sidecars, left by
    # tests that read it)
    shared = _digests(sample_catalog_path.parent)
    assert _digests(again.parent) == {name: shared.get(name) for name in _digests(again.parent)}
    assert set(_digests(again.parent)) == {
        "catalog.toml",
        "land_cover.tif",
        "elevation.tif",
        "protected_areas.gpkg",
        "settlements.gpkg",
        "water.gpkg",
    }


def test_same_seed_same_layer_contents(tmp_path: Path, sample_catalog_path: Path) -> None:
    # Beyond bytes: the decoded layers are identical (what a reader would see).
    again = sample.generate_sample_data(tmp_path / "again", seed=42).parent
    first = sample_catalog_path.parent
    for name in ("land_cover.tif", "elevation.tif"):
        with rasterio.open(first / name) as a, rasterio.open(again / name) as b:
            assert np.array_equal(a.read(1), b.read(1)) and a.transform == b.transform
    for file, layer in (
        ("protected_areas.gpkg", "protected_areas"),
        ("settlements.gpkg", "settlements"),
        ("water.gpkg", "rivers"),
        ("water.gpkg", "lakes"),
    ):
        a = pyogrio.read_dataframe(first / file, layer=layer)
        b = pyogrio.read_dataframe(again / file, layer=layer)
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
        assert all(x.equals_exact(y, 0) for x, y in zip(a.geometry, b.geometry))


def test_other_seed_other_region(tmp_path: Path, sample_catalog_path: Path) -> None:
    other = sample.generate_sample_data(tmp_path / "other", seed=7).parent
    with (
        rasterio.open(other / "land_cover.tif") as a,
        rasterio.open(sample_catalog_path.parent / "land_cover.tif") as b,
    ):
        assert not np.array_equal(a.read(1), b.read(1))


def test_region_and_grid(sample_catalog_path: Path) -> None:
    with rasterio.open(sample_catalog_path.parent / "land_cover.tif") as ds:
        assert ds.crs.to_epsg() == 3035 and ds.res == (100.0, 100.0) and (ds.width, ds.height) == (300, 300)
        assert ds.dtypes[0] == "uint16" and ds.nodata == 0
        assert ds.tags()["SYNTHETIC"] == "true"
        cx, cy = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
        codes = ds.read(1)
    lon, lat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True).transform(cx, cy)
    assert lon == pytest.approx(14.33, abs=0.001) and lat == pytest.approx(51.76, abs=0.001)
    present = set(np.unique(codes).tolist())
    # forest, arable, pasture, urban cores and fabric, industrial, water, wetlands, mining
    assert {311, 312, 211, 231, 111, 112, 121, 511, 512, 411, 131} <= present
    assert 0 not in present  # no nodata inside the square
    counts = Counter(codes.ravel().tolist())
    assert counts[312] > 0.15 * codes.size and counts[211] > 0.15 * codes.size  # pine forest and fields dominate
    with rasterio.open(sample_catalog_path.parent / "elevation.tif") as ds:
        elev = ds.read(1)
        assert ds.crs.to_epsg() == 3035 and 40 < elev.min() < elev.max() < 250


def test_vectors_are_labelled_and_plausible(sample_catalog_path: Path) -> None:
    d = sample_catalog_path.parent
    pa = pyogrio.read_dataframe(d / "protected_areas.gpkg")
    assert pa.crs.to_epsg() == 3035 and len(pa) == 7
    assert all("SYNTHETIC" in n for n in pa["name"])
    assert set(pa["type"]) == {"SAC", "SPA", "National park", "Nature reserve"}
    assert all(pa.geometry.is_valid)
    natura = pa[pa["type"].isin(["SAC", "SPA"])]
    assert all(len(c) == 9 and c.startswith("DE") and c[2:].isdigit() for c in natura["site_code"])
    overlapping_pairs = sum(
        1
        for i in range(len(pa))
        for j in range(i + 1, len(pa))
        if pa.geometry.iloc[i].intersection(pa.geometry.iloc[j]).area > 1e4
    )
    assert overlapping_pairs >= 3
    st = pyogrio.read_dataframe(d / "settlements.gpkg")
    assert len(st) == 15 and set(st.geom_type) == {"Point"} and (st["population"] > 0).all()
    assert st["population"].max() > 50_000 and (st["synthetic"] == 1).all()
    rivers = pyogrio.read_dataframe(d / "water.gpkg", layer="rivers")
    lakes = pyogrio.read_dataframe(d / "water.gpkg", layer="lakes")
    assert set(rivers.geom_type) == {"LineString"} and set(lakes.geom_type) == {"Polygon"}
    assert all("SYNTHETIC" in n for n in list(rivers["name"]) + list(lakes["name"]))
    meta = pyogrio.read_info(d / "settlements.gpkg")["dataset_metadata"]
    assert meta["synthetic"] == "true"


def test_cli_sample_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aethera.cli import main

    assert main(["sample-data", str(tmp_path / "s"), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "catalog.toml" in out and "seed 3" in out
    assert (tmp_path / "s" / "catalog.toml").is_file()
