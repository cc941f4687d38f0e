"""The shortcuts that make a run's transformations and CRS names cheap give exactly what the full
searches give: the same coordinates from `projection.transformer` as from a fresh `Transformer.from_crs`,
the same names from `aoi._crs_name` as from `to_epsg`, and a vector layer's info read again once its file
changed."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import CRS, Transformer
from shapely.geometry import Point

from aethera.analysis import aoi as aoi_module
from aethera.analysis import projection
from aethera.data import vector_info

# points over Europe and beyond (lon, lat), where each CRS below is used
LON = np.array([-8.5, -3.4, 2.3, 10.0, 14.2, 21.7, 24.0, 30.1, 36.8, 150.0])
LAT = np.array([37.1, 36.9, 48.8, 52.0, 51.7, 38.2, 60.2, 45.5, -1.3, -33.9])


def _ours() -> list[CRS]:
    """The AOI-centred CRSs the analysis builds (PROJ strings on an ellipsoid, no known datum)."""
    return [
        projection.metric_crs_for(14.2, 51.7),
        projection.local_equal_area_crs(14.2, 51.7),
        projection.area_crs_for(150.0, -33.9),  # outside Europe: a centred LAEA
        projection.metric_crs_for(-3.4, 36.9),
    ]


def _authority() -> list[CRS]:
    return [
        CRS.from_epsg(4326),
        CRS.from_epsg(3035),
        CRS.from_epsg(25833),
        CRS.from_epsg(3042),  # northing first
        CRS.from_epsg(2100),  # GGRS87: a datum with a shift from WGS 84
        CRS.from_epsg(27700),  # OSGB 36: a shift that PROJ may take from a grid
        CRS.from_wkt(CRS.from_epsg(2100).to_wkt("WKT1_GDAL")),  # a BoundCRS (TOWGS84) as GDAL writes it
    ]


def _points(src: CRS) -> tuple[np.ndarray, np.ndarray]:
    to_src = Transformer.from_crs(CRS.from_epsg(4326), src, always_xy=True)
    return to_src.transform(LON, LAT)


def _same(src: CRS, dst: CRS) -> None:
    x, y = _points(src)
    expected = Transformer.from_crs(src, dst, always_xy=True).transform(x, y)
    got = projection.transformer(src, dst).transform(x, y)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize("ours", range(4))
def test_an_aoi_centred_crs_transforms_as_the_full_search_does(ours: int) -> None:
    crs = _ours()[ours]
    for other in [*_authority(), *_ours()]:
        _same(crs, other)
        _same(other, crs)


def test_a_dataset_wkt_equal_to_an_epsg_crs_transforms_as_itself(sample_dir: Path) -> None:
    with rasterio.open(sample_dir / "land_cover.tif") as ds:
        from_file = projection.to_crs(ds.crs)
    assert not from_file.srs.startswith("EPSG:")  # a WKT: keyed as EPSG:3035 by the shortcut
    for other in [CRS.from_epsg(4326), CRS.from_epsg(25833), *_ours()]:
        _same(from_file, other)
        _same(other, from_file)
    # the transformation the forkserver prepared for EPSG:3035 serves the file's CRS
    assert projection.transformer(from_file, projection.WGS84) is projection.transformer(
        projection.ETRS89_LAEA, projection.WGS84
    )


def test_a_crs_close_to_an_epsg_one_is_not_taken_for_it() -> None:
    # EPSG:3035's name and WKT with another latitude of origin (and no id): not EPSG:3035
    wkt = CRS.from_epsg(3035).to_wkt().replace('ID["EPSG",3035]', "")
    near = CRS.from_wkt(wkt.replace('"Latitude of natural origin",52', '"Latitude of natural origin",53'))
    assert projection._canonical(near) is near
    _same(near, CRS.from_epsg(4326))


@pytest.mark.parametrize("index", range(11))
def test_crs_names_are_those_of_the_full_identification(index: int) -> None:
    crs = [*_ours(), *_authority()][index]
    epsg = crs.to_epsg(min_confidence=90)
    expected = f"EPSG:{epsg}" if epsg else (crs.srs or crs.name)
    assert aoi_module._crs_name(crs) == expected
    assert aoi_module._crs_name(crs) == expected  # the second answer comes from the cache


def test_vector_info_is_read_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "layer.gpkg"
    gpd.GeoDataFrame({"n": [1]}, geometry=[Point(14.2, 51.7)], crs="EPSG:4326").to_file(path, layer="a")
    first = vector_info.read_info(str(path), layer="a")
    assert first["features"] == 1 and CRS.from_user_input(first["crs"]).to_epsg() == 4326
    first["features"] = 99  # a caller's copy: the cache keeps its own
    assert vector_info.read_info(str(path), layer="a")["features"] == 1

    # replaced in place, with another CRS and more features: the cache must not answer for the old file
    path.unlink()
    gpd.GeoDataFrame({"n": [1, 2]}, geometry=[Point(0, 0), Point(1, 1)], crs="EPSG:3035").to_file(path, layer="a")
    second = vector_info.read_info(str(path), layer="a")
    assert second["features"] == 2 and CRS.from_user_input(second["crs"]).to_epsg() == 3035
