"""`security.content`: what a file is comes from its bytes; and `aethera analyze` (a reader path outside the
API) refuses a bomb by content too. `CheckedZip` hands out only checked members, each read bounded."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import re
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from aethera.errors import InvalidAOI, UnsafeArchive
from aethera.security.archives import ArchiveLimits, CheckedZip, check_zip
from aethera.security.content import Kind, check_content, check_name, sniff

MIB = 1024 * 1024


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _blank_kmz(unpacked_bytes: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open("doc.kml", "w") as out:
        out.write(b"<kml>")
        for _ in range(unpacked_bytes // MIB):
            out.write(b" " * MIB)
    return buf.getvalue()


ZIP = _zip({"a.txt": b"hello"})
SNIFFED = [
    (ZIP, Kind.ZIP),
    (b"JUNK" + ZIP, Kind.ZIP),  # a preamble: zipfile finds the directory from the end
    (b"{}" + ZIP, Kind.ZIP),
    (b"SQLite format 3\x00" + ZIP, Kind.ZIP),  # a polyglot is the zip some reader would open
    (b"<kml>" + ZIP[:40], Kind.ZIP),  # a local header with its directory cut off is still a zip
    (b"PK\x05\x06" + b"\x00" * 18, Kind.ZIP),  # an empty zip
    (gzip.compress(b"{}"), Kind.COMPRESSED),
    (lzma.compress(b"{}"), Kind.COMPRESSED),
    (b"BZh91AY&SY", Kind.COMPRESSED),
    (b"SQLite format 3\x00" + b"\x00" * 100, Kind.SQLITE),
    (b"\xef\xbb\xbf  \n<?xml version='1.0'?><kml/>", Kind.XML),
    (b'\n {"type": "Polygon"}', Kind.JSON),
    (b"[1, 2]", Kind.JSON),
    (b"POLYGON ((0 0, 1 0, 1 1, 0 0))", Kind.TEXT),
    (b"MZ\x90\x00\x03\x00", Kind.BINARY),
]


@pytest.mark.parametrize("data, kind", SNIFFED, ids=[f"{k.name}-{i}" for i, (_, k) in enumerate(SNIFFED)])
def test_sniff(data: bytes, kind: Kind) -> None:
    assert sniff(data) is kind


def test_names_must_agree_with_content() -> None:
    check_name(Kind.ZIP, "a.zip")
    check_name(Kind.ZIP, "a.KMZ")
    check_name(Kind.JSON, "a.json")
    check_name(Kind.TEXT, "notes")  # no known suffix: the name promises nothing
    check_name(Kind.TEXT, None)
    for kind, name in ((Kind.ZIP, "a.geojson"), (Kind.JSON, "a.kml"), (Kind.SQLITE, "a.zip"), (Kind.XML, "a.gpkg")):
        with pytest.raises(InvalidAOI, match=re.escape(f"named .{name.split('.')[1]} but its content is {kind.value}")):
            check_name(kind, name)


def test_check_content_checks_every_zip_whatever_its_name() -> None:
    limits = ArchiveLimits()
    bomb = _blank_kmz(16 * MIB)
    with pytest.raises(UnsafeArchive, match="decompression bomb"):
        check_content(b"JUNK" + bomb, "site.zip", limits)
    with pytest.raises(UnsafeArchive, match="decompression bomb"):
        check_content(bomb, None, limits)
    with pytest.raises(InvalidAOI, match="content is a zip archive"):
        check_content(bomb, "site.wkt", limits)
    with pytest.raises(InvalidAOI, match="gzip-compressed"):
        check_content(gzip.compress(b"{}"), "site.json", limits)
    with pytest.raises(InvalidAOI, match="DOCTYPE"):
        check_content(b"<!DOCTYPE kml><kml/>", "site.kml", limits)
    assert check_content(json.dumps({"type": "Polygon"}).encode(), "site.geojson", limits) is Kind.JSON


def test_an_archive_inside_is_refused_by_content_not_only_by_name() -> None:
    for inner in (ZIP, gzip.compress(b"x" * 100), lzma.compress(b"x")):
        with pytest.raises(UnsafeArchive, match="itself an archive"):
            check_zip(_zip({"site.dbf": inner}), ArchiveLimits())


def test_checked_zip_reads_only_checked_members_within_the_budget() -> None:
    data = _zip({"a.shp": b"a" * 1000, "b.dbf": b"b" * 1000})
    archive = CheckedZip(data, ArchiveLimits(max_unpacked_bytes=2000))
    assert archive.names == ["a.shp", "b.dbf"] and archive.read("a.shp") == b"a" * 1000
    with pytest.raises(UnsafeArchive, match="no checked entry"):
        archive.read("../a.shp")
    archive.read("b.dbf")
    with pytest.raises(UnsafeArchive, match="more bytes than allowed"):
        archive.read("a.shp")  # the 2,000 bytes the limits allow are spent


def test_aethera_analyze_refuses_a_bomb_by_content(
    tmp_path: Path, sample_catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aethera.cli import main

    path = tmp_path / "site.geojson"
    path.write_bytes(_blank_kmz(64 * MIB))
    for name in ("site.geojson", "site.kmz", "site"):
        target = path.rename(tmp_path / name)
        tracemalloc.start()
        try:
            code = main(["analyze", str(target), "--project-type", "solar", "--datasets", str(sample_catalog)])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        err = capsys.readouterr().err
        assert code == 2 and ("content is a zip archive" in err or "decompression bomb" in err), err
        assert peak < 8 * MIB, f"{peak / MIB:.0f} MiB allocated refusing a 64 MiB bomb"
        path = target


def test_xml_is_accepted_only_as_kml() -> None:
    from aethera.security.content import check_xml

    check_xml(b"\xef\xbb\xbf<?xml version='1.0'?>\n<!-- a comment -->\n<kml xmlns='http://www.opengis.net/kml/2.2'/>")
    check_xml(b"<kml:kml xmlns:kml='http://www.opengis.net/kml/2.2'></kml:kml>")
    for other in (
        b"<?xml version='1.0'?><gml:FeatureCollection xmlns:gml='http://www.opengis.net/gml'/>",
        b"<gpx version='1.1'/>",
        b"<!-- <kml> --><gpx/>",
        b"<kmlx/>",
    ):
        with pytest.raises(InvalidAOI, match="not KML"):
            check_xml(other)
    # shapes that make a backtracking pattern take exponential time are refused at once
    for hostile in (b"<?a?>" * 12_000 + b"X", b"<!--a-->" * 8_000 + b"<gml/>", b"<?" * 30_000, b"<!--" * 16_000):
        with pytest.raises(InvalidAOI, match="not KML"):
            check_xml(hostile)
