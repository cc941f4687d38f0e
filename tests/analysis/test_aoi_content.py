"""`load_aoi` decides formats by content, checks every zip before reading it, and trusts no client repairs.

These cover every reader path at once (the API, the worker and `aethera analyze` all call `load_aoi`):
a name cannot steer a file to a reader, and a zip reaches a reader only through `CheckedZip`.
"""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from aethera.analysis.aoi import REPAIRS_MEMBER, load_aoi
from aethera.errors import InvalidAOI, InvalidInput, UnsafeArchive
from aethera.security.archives import ArchiveLimits

SITE = box(14.30, 51.70, 14.34, 51.73)
MIB = 1024 * 1024
BOWTIE = [[14.30, 51.70], [14.32, 51.72], [14.32, 51.70], [14.30, 51.72], [14.30, 51.70]]


def _kml(tmp_path: Path) -> bytes:
    path = tmp_path / "site.kml"
    gpd.GeoDataFrame({"name": ["site"]}, geometry=[SITE], crs="EPSG:4326").to_file(path, driver="KML")
    return path.read_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _shapefile_zip(tmp_path: Path) -> bytes:
    folder = tmp_path / "shp"
    folder.mkdir()
    gpd.GeoDataFrame({"name": ["site"]}, geometry=[SITE], crs="EPSG:4326").to_file(folder / "site.shp")
    return _zip({f.name: f.read_bytes() for f in sorted(folder.iterdir())})


def kml_bomb(unpacked_bytes: int) -> bytes:
    """A KMZ whose one KML inflates to `unpacked_bytes` of blanks (written in chunks: the test stays small)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open("doc.kml", "w") as member:
        member.write(b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>')
        for _ in range(unpacked_bytes // MIB):
            member.write(b" " * MIB)
        member.write(b"</Document></kml>")
    return buf.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return kml_bomb(64 * MIB)  # about 64 KB packed, 1,000 times over the ratio limit


def test_formats_are_decided_by_content_without_a_name(tmp_path: Path) -> None:
    geojson = json.dumps({"type": "Polygon", "coordinates": [[list(c) for c in SITE.exterior.coords]]}).encode()
    assert load_aoi(geojson).source_format == "geojson"
    assert load_aoi(SITE.wkt.encode()).source_format == "wkt"
    assert load_aoi(_kml(tmp_path)).source_format == "kml"
    assert load_aoi(_shapefile_zip(tmp_path)).source_format == "shapefile"
    assert load_aoi(_zip({"doc.kml": _kml(tmp_path)})).source_format == "kml"  # a KMZ, whatever its name


@pytest.mark.parametrize(
    "name, content, what",
    [
        ("site.geojson", "zip", "a zip archive"),
        ("site.kml", "zip", "a zip archive"),
        ("site.gpkg", "zip", "a zip archive"),
        ("site.wkt", "zip", "a zip archive"),
        ("site.kml", "geojson", "JSON"),
        ("site.zip", "geojson", "JSON"),
        ("site.json", "wkt", "text (WKT)"),
        ("site.gpkg", "wkt", "text (WKT)"),
    ],
)
def test_a_name_that_promises_another_format_is_refused(tmp_path: Path, name: str, content: str, what: str) -> None:
    data = {
        "zip": _shapefile_zip(tmp_path),
        "geojson": json.dumps({"type": "Polygon", "coordinates": [[list(c) for c in SITE.exterior.coords]]}).encode(),
        "wkt": SITE.wkt.encode(),
    }[content]
    with pytest.raises(InvalidAOI) as caught:
        load_aoi(data, filename=name)
    assert f"named .{name.split('.')[1]}" in caught.value.detail and what in caught.value.detail


def test_a_zip_behind_a_preamble_is_a_zip(tmp_path: Path, bomb: bytes) -> None:
    # Python's zipfile opens a zip with junk in front of it; so the service treats it as the zip it is
    assert load_aoi(b"JUNK" + _shapefile_zip(tmp_path)).source_format == "shapefile"
    with pytest.raises(UnsafeArchive, match="decompression bomb"):
        load_aoi(b"JUNK" + bomb)
    with pytest.raises(InvalidAOI, match="content is a zip archive"):
        load_aoi(b"JUNK" + bomb, filename="aoi.geojson")


@pytest.mark.parametrize("name", [None, "site.zip", "site.kmz", "site.geojson", "site.kml", "site.gpkg", "site.wkt"])
def test_a_kml_bomb_is_refused_under_any_name_without_inflating_it(bomb: bytes, name: str | None) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as caught:  # UnsafeArchive, or InvalidAOI for the lying name
            load_aoi(bomb, filename=name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code in ("unsafe_archive", "invalid_aoi")
    assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB allocated while refusing a 64 MiB bomb"


def test_a_directory_that_hides_a_bomb_is_caught_before_any_reader(tmp_path: Path) -> None:
    """The central directory says the KML is tiny; inflating it in bounded chunks proves otherwise."""
    data = bytearray(kml_bomb(8 * MIB))
    central = data.find(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")  # declared unpacked size: 100 bytes
    local = data.find(b"PK\x03\x04")
    data[local + 22 : local + 26] = (100).to_bytes(4, "little")
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchive):
            load_aoi(bytes(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB


def test_the_unpacked_limit_bounds_what_a_reader_may_get(tmp_path: Path) -> None:
    kmz = _zip({"doc.kml": _kml(tmp_path) + b" " * 300_000})
    assert load_aoi(kmz).source_format == "kml"
    with pytest.raises(UnsafeArchive, match="unpacks to more than 100000 bytes"):
        load_aoi(kmz, archive_limits=ArchiveLimits(max_unpacked_bytes=100_000))


def test_hostile_zips_are_refused_under_any_name(tmp_path: Path) -> None:
    inner = _zip({"a.shp": b"x"})
    link = zipfile.ZipInfo("site.shp")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(link, "/etc/passwd")
    hostile = {
        "traversal": _zip({"../../evil.txt": b"x"}),
        "symlink": buf.getvalue(),
        "nested zip named .zip": _zip({"inner.zip": inner}),
        "nested zip named .dat": _zip({"inner.dat": inner, "site.shp": b"x"}),
        "nested gzip named .dbf": _zip({"site.dbf": gzip.compress(b"x" * 100)}),
    }
    for _case, data in hostile.items():
        for name in (None, "site.zip", "site.kmz"):
            with pytest.raises(UnsafeArchive):
                load_aoi(data, filename=name)
            with pytest.raises(UnsafeArchive):
                load_aoi(b"JUNK" + data, filename=name)
        for name in ("site.geojson", "site.kml", "site.gpkg", "site.wkt"):
            with pytest.raises(InvalidInput, match="content is a zip archive"):
                load_aoi(data, filename=name)


def test_compressed_files_are_refused_with_a_clear_message() -> None:
    geojson = json.dumps({"type": "Polygon", "coordinates": [[list(c) for c in SITE.exterior.coords]]}).encode()
    for name in (None, "site.geojson", "site.zip"):  # whatever the name: the clear reason, not a mismatch
        with pytest.raises(InvalidAOI, match="gzip-compressed; upload it uncompressed"):
            load_aoi(gzip.compress(geojson), filename=name)


def test_a_kml_inside_a_kmz_is_checked_for_entities_too(tmp_path: Path) -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY x SYSTEM "file:///etc/passwd">]><kml>&x;</kml>'
    for data in (xxe, _zip({"doc.kml": xxe})):
        with pytest.raises(InvalidAOI, match="DOCTYPE or ENTITY"):
            load_aoi(data)


def test_a_clients_repairs_member_is_ignored() -> None:
    square = [list(c) for c in SITE.exterior.coords]
    forged = {
        "type": "FeatureCollection",
        REPAIRS_MEMBER: ["the service fixed your border dispute"],
        "aethera:anything": True,
        "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [square]}}],
    }
    for source in (forged, json.dumps(forged), json.dumps(forged).encode()):
        assert load_aoi(source, client_input=True).repairs == ()
    # a client's bow-tie: only the service's own repair is reported, and it survives storage
    forged["features"][0]["geometry"]["coordinates"] = [BOWTIE]  # type: ignore[index]
    aoi = load_aoi(json.dumps(forged).encode(), client_input=True)
    assert len(aoi.repairs) == 1 and "make_valid" in aoi.repairs[0]
    stored = aoi.to_geojson()
    assert load_aoi(stored, filename="aoi.geojson", client_input=False).repairs == aoi.repairs  # the worker reads
    assert load_aoi(stored, filename="aoi.geojson").repairs == ()  # by default an input is a client's
