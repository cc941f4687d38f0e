"""Uploaded zips are checked before anything extracts them; each hostile shape is refused."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import pytest

from aethera.errors import UnsafeArchive
from aethera.security.archives import ArchiveLimits, check_zip, extract_zip

LIMITS = ArchiveLimits(max_members=10, max_unpacked_bytes=4 * 1024 * 1024, max_ratio=200.0)


def make_zip(members: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def shapefile_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real zipped Shapefile (a polygon written by GDAL)."""
    import geopandas as gpd
    from shapely.geometry import box

    folder = tmp_path_factory.mktemp("shp")
    gpd.GeoDataFrame({"name": ["site"]}, geometry=[box(-3.5, 36.9, -3.4, 37.0)], crs="EPSG:4326").to_file(
        folder / "site.shp"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"site/{path.name}")
    return buf.getvalue()


def test_a_real_shapefile_zip_passes(shapefile_zip: bytes, tmp_path: Path) -> None:
    members = check_zip(shapefile_zip, LIMITS)
    names = {m.name for m in members}
    assert {"site/site.shp", "site/site.shx", "site/site.dbf", "site/site.prj"} <= names
    written = extract_zip(shapefile_zip, tmp_path / "out", LIMITS)
    assert {p.relative_to((tmp_path / "out").resolve()).as_posix() for p in written} == names
    import geopandas as gpd

    assert len(gpd.read_file(tmp_path / "out" / "site" / "site.shp")) == 1


def _symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def _fifo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o010644 << 16
    return info


def _patched(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and data.count(old) == 2  # local header and central directory
    return data.replace(old, new)


HOSTILE: dict[str, bytes] = {
    "parent segment": make_zip([("../evil.shp", b"x")]),
    "parent segment deep": make_zip([("site/../../evil.shp", b"x")]),
    "absolute path": make_zip([("/etc/cron.d/evil", b"x")]),
    "drive letter": make_zip([("C:/evil.shp", b"x")]),
    "backslash traversal": make_zip([("..\\evil.shp", b"x")]),
    "nul in name": _patched(make_zip([("evilXshp", b"x")]), b"evilXshp", b"evil\x00shp"),
    "newline in name": make_zip([("evil\n.shp", b"x")]),
    "symlink": make_zip([(_symlink("site.shp", "/etc/passwd"), b"/etc/passwd")]),
    "fifo": make_zip([(_fifo("site.shp"), b"")]),
    "too many members": make_zip([(f"f{i}.txt", b"x") for i in range(11)]),
    "ratio bomb": make_zip([("site.dbf", b"\0" * (3 * 1024 * 1024))]),
    "total too large": make_zip([(f"f{i}.bin", os.urandom(1024 * 1024)) for i in range(5)], zipfile.ZIP_STORED),
    "nested archive": make_zip([("inner.zip", make_zip([("a.shp", b"x")]))]),
    "duplicate names": make_zip([("a.shp", b"x"), ("A.SHP", b"y")]),
    "bzip2 method": make_zip([("a.shp", b"x" * 100)], zipfile.ZIP_BZIP2),
    "not a zip": b"PK\x03\x04 this is not a zip at all",
    "empty bytes": b"",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused(case: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive) as caught:
        check_zip(HOSTILE[case], LIMITS)
    assert caught.value.code == "unsafe_archive"
    assert str(tmp_path) not in caught.value.detail
    with pytest.raises(UnsafeArchive):
        extract_zip(HOSTILE[case], tmp_path / "out", LIMITS)
    assert not any((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True
    assert not (tmp_path / "evil.shp").exists()


def test_encrypted_member_is_refused() -> None:
    data = bytearray(make_zip([("a.shp", b"x" * 10)], zipfile.ZIP_STORED))
    # set the "encrypted" general-purpose flag in both headers (offset 6 in the local header, 8 in the central one)
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    for offset in (local + 6, central + 8):
        (flags,) = struct.unpack_from("<H", data, offset)
        struct.pack_into("<H", data, offset, flags | 0x1)
    with pytest.raises(UnsafeArchive, match="encrypted"):
        check_zip(bytes(data), LIMITS)


def test_a_directory_that_lies_about_sizes_is_caught_by_verification() -> None:
    payload = os.urandom(64 * 1024)
    data = bytearray(make_zip([("a.dbf", payload)], zipfile.ZIP_STORED))
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)  # claims 100 bytes unpacked
    # the declared sizes pass the cheap checks ...
    check_zip(bytes(data), LIMITS, verify=False)
    # ... decompressing proves them wrong
    with pytest.raises(UnsafeArchive, match="corrupt"):
        check_zip(bytes(data), LIMITS)


def test_a_corrupted_member_is_refused() -> None:
    data = bytearray(make_zip([("a.dbf", os.urandom(4096))], zipfile.ZIP_STORED))
    data[100] ^= 0xFF  # flip a byte inside the stored data: the CRC no longer matches
    with pytest.raises(UnsafeArchive, match="corrupt"):
        check_zip(bytes(data), LIMITS)


def test_a_broken_deflate_stream_is_refused_not_raised() -> None:
    # zlib's own error is none of zipfile's: it must still end as UnsafeArchive (a 422, never a 500)
    data = bytearray(make_zip([("a.dbf", os.urandom(100) + b"x" * 5000)]))
    start = data.find(b"a.dbf") + len("a.dbf")
    for i in range(start, start + 40):
        data[i] ^= 0x5A
    with pytest.raises(UnsafeArchive, match="corrupt"):
        check_zip(bytes(data), LIMITS)


def test_small_highly_compressible_files_are_not_bombs() -> None:
    # a shapefile .dbf of blank text fields compresses very well; below 1 MiB the ratio does not apply
    members = check_zip(make_zip([("a.dbf", b" " * 500_000)]), LIMITS)
    assert members[0].size == 500_000


def test_limits_come_from_settings() -> None:
    from aethera.settings import load_settings

    limits = ArchiveLimits.from_settings(load_settings({"AETHERA_ARCHIVE_MAX_MEMBERS": "3"}))
    assert limits.max_members == 3
    with pytest.raises(UnsafeArchive, match="at most 3"):
        check_zip(make_zip([(f"f{i}", b"x") for i in range(4)]), limits)
