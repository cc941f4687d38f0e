"""Fixtures of the analysis tests: the sample region, and the real Lanjarón data as catalogs and an AOI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # geokit

from aethera.analysis.aoi import AOI, load_aoi
from aethera.data.catalog import Catalog, load_catalog, parse_catalog


@pytest.fixture(scope="session")
def sample_dir(sample_data: Path) -> Path:
    return sample_data.parent


@pytest.fixture(scope="session")
def sample_catalog(sample_dir: Path) -> Catalog:
    return load_catalog(sample_dir / "catalog.toml")


@pytest.fixture(scope="session")
def lanjaron_raster(lanjaron_dir: Path) -> Catalog:
    return parse_catalog(
        {"land_cover": {"path": "clc.tif", "format": "raster"}, "elevation": {"path": "mdt.tif"}},
        base_dir=lanjaron_dir,
    )


@pytest.fixture(scope="session")
def lanjaron_vector(lanjaron_dir: Path) -> Catalog:
    return parse_catalog(
        {"land_cover": {"path": "clc.gpkg", "layer": "clc", "code_column": "CODE_18"}}, base_dir=lanjaron_dir
    )


@pytest.fixture(scope="session")
def lanjaron_boundary_wkt(lanjaron_dir: Path) -> str:
    import pyogrio

    df = pyogrio.read_dataframe(lanjaron_dir / "clc.gpkg", layer="lanjaron")
    assert df.crs.to_epsg() == 25830
    return df.geometry.iloc[0].wkt


@pytest.fixture(scope="session")
def lanjaron_aoi(lanjaron_boundary_wkt: str) -> AOI:
    return load_aoi(lanjaron_boundary_wkt, crs="EPSG:25830")
