"""The ZIP layout itself: checked against Python's zipfile and Info-ZIP's unzip, and ZIP64 on a real
member past 4 GiB (a sparse file, so it costs no disk), read back through HTTP Range requests."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from exportkit import export_url, write_run
from hypothesis import given, settings
from hypothesis import strategies as st

from aethera.export import ExportMember, ExportPlan, iter_archive, layout
from aethera.storage.artifacts import Artifact, ArtifactIndex, artifact_key

WHEN = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)


def extra_ids(extra: bytes) -> list[int]:
    ids, i = [], 0
    while i + 4 <= len(extra):
        ids.append(int.from_bytes(extra[i : i + 2], "little"))
        i += 4 + int.from_bytes(extra[i + 2 : i + 4], "little")
    return ids


def inline(name: str, data: bytes) -> ExportMember:
    return ExportMember(
        name=name,
        size=len(data),
        crc32=zlib.crc32(data),
        sha256=hashlib.sha256(data).hexdigest(),
        media_type="application/octet-stream",
        data=data,
    )


async def build(members: list[ExportMember]) -> bytes:
    segments, size = layout(members, WHEN)
    plan = ExportPlan("a" * 32, tuple(members), segments, size, '"t"', WHEN)
    body = b"".join([c async for c in iter_archive(plan, storage=None)])  # type: ignore[arg-type]
    assert len(body) == size
    return body


async def test_layout_matches_zipfile_and_unzip(tmp_path: Path) -> None:
    members = [
        inline("manifest.json", b'{"a": 1}\n'),
        inline("empty.txt", b""),
        inline("layers/natura.geojson", os.urandom(70_000)),
        inline("ünïcode name.txt", b"text\n"),
    ]
    body = await build(members)
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    assert [i.filename for i in archive.infolist()] == [m.name for m in members]
    for m in members:
        assert archive.read(m.name) == m.data
        info = archive.getinfo(m.name)
        assert info.date_time == (2025, 3, 14, 9, 26, 52)
        assert (info.external_attr >> 16) == 0o100644
    assert archive.getinfo("ünïcode name.txt").flag_bits & 0x800  # UTF-8 name flag
    if shutil.which("unzip"):
        path = tmp_path / "t.zip"
        path.write_bytes(body)
        done = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(max_size=3000), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**6),
)
def test_any_byte_range_is_the_slice_of_the_whole(datas: list[bytes], a: int, b: int) -> None:
    members = [inline(f"m{i}.bin", d) for i, d in enumerate(datas)]
    segments, size = layout(members, WHEN)
    plan = ExportPlan("a" * 32, tuple(members), segments, size, '"t"', WHEN)

    async def collect(start: int, end: int | None) -> bytes:
        return b"".join([c async for c in iter_archive(plan, None, start, end)])  # type: ignore[arg-type]

    whole = asyncio.run(collect(0, None))
    start, end = sorted((a % (size + 1), b % (size + 1)))
    assert asyncio.run(collect(start, end)) == whole[start:end]
    assert zipfile.ZipFile(io.BytesIO(whole)).testzip() is None


def test_layout_refuses_duplicates_and_a_huge_first_member() -> None:
    with pytest.raises(ValueError):
        layout([inline("a", b"1"), inline("a", b"2")], WHEN)
    huge = ExportMember(name="big", size=1 << 32, crc32=0, sha256="", media_type="x", key="k")
    with pytest.raises(ValueError):
        layout([huge], WHEN)


# --- ZIP64 through the real service ---------------------------------------------------------------

HUGE = (1 << 32) + 3  # one member past the 32-bit limit: ZIP64 sizes, and offsets past 4 GiB after it
TAIL = b"END-OF-HUGE-LAYER"


def _crc_of_sparse(size: int, tail: bytes) -> int:
    zeros = bytes(64 << 20)
    crc, left = 0, size - len(tail)
    while left:
        n = min(left, len(zeros))
        crc = zlib.crc32(zeros if n == len(zeros) else zeros[:n], crc)
        left -= n
    return zlib.crc32(tail, crc) & 0xFFFFFFFF


class _RangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP Range requests (zipfile reads only what it needs)."""

    def __init__(self, fetch: Any, size: int) -> None:
        self._fetch, self._size, self._pos = fetch, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = {0: offset, 1: self._pos + offset, 2: self._size + offset}[whence]
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._fetch(self._pos, self._pos + n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


async def test_zip64_member_past_4_gib_read_through_ranges(local_service, tmp_path: Path) -> None:
    storage = local_service.storage
    run = await write_run(storage, layer_bytes=20_000)
    name = "layers/huge.geojson"
    path = tmp_path / "storage" / "runs" / run.run_id / "layers" / "huge.geojson"
    with open(path, "wb") as f:  # sparse: no disk used for the zeros
        f.truncate(HUGE - len(TAIL))
        f.seek(HUGE - len(TAIL))
        f.write(TAIL)
    if os.stat(path).st_blocks * 512 > 64 << 20:
        pytest.skip("this file system does not store sparse files")
    crc = await asyncio.to_thread(_crc_of_sparse, HUGE, TAIL)
    # FIXTURE: the index entry save_artifact would write, added by hand (it would need 4 GiB in memory)
    index = msgspec.json.decode(await storage.read(artifact_key(run.run_id, "artifacts.json")), type=ArtifactIndex)
    index.artifacts.append(
        Artifact(name=name, size=HUGE, crc32=crc, sha256="0" * 64, media_type="application/geo+json")
    )
    await storage.save(artifact_key(run.run_id, "artifacts.json"), msgspec.json.encode(index))

    head = await local_service.client.head(export_url(run.run_id))
    size = int(head.headers["Content-Length"])
    etag = head.headers["ETag"]
    assert size > HUGE
    loop = asyncio.get_running_loop()

    async def get(start: int, end: int) -> bytes:
        resp = await local_service.client.get(
            export_url(run.run_id), headers={"Range": f"bytes={start}-{end - 1}", "If-Range": etag}
        )
        assert resp.status == 206
        return await resp.read()

    def fetch(start: int, end: int) -> bytes:
        return asyncio.run_coroutine_threadsafe(get(start, end), loop).result(timeout=60)

    def inspect() -> dict[str, Any]:
        archive = zipfile.ZipFile(io.BufferedReader(_RangeFile(fetch, size), buffer_size=1 << 16))
        infos = {i.filename: i for i in archive.infolist()}
        first = archive.infolist()[0]
        after = [i for i in archive.infolist() if i.header_offset > HUGE]
        return {
            "first": (first.filename, first.extra, first.create_version, first.extract_version),
            "huge": infos[name],
            "after": {i.filename: archive.read(i.filename) for i in after},
            "manifest": json.loads(archive.read("manifest.json")),
        }

    found = await asyncio.to_thread(inspect)
    first_name, first_extra, _, first_needs = found["first"]
    assert first_name == "manifest.json"
    assert first_needs < 45 and 0x0001 not in extra_ids(first_extra)  # the first member is Zip32
    huge = found["huge"]
    assert huge.file_size == HUGE and crc == huge.CRC
    assert huge.extract_version == 45
    # every member stored after the huge one sits past 4 GiB and still reads back intact
    assert found["after"], "the layout put no member after the huge one"
    for member, data in found["after"].items():
        assert data == run.members[member]
    listed = next(m for m in found["manifest"]["members"] if m["name"] == name)
    assert (listed["size"], listed["crc32"]) == (HUGE, f"{crc:08x}")
    # the huge member's last bytes, fetched straight from where its data lies in the archive
    local = await get(huge.header_offset, huge.header_offset + 30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    data_start = huge.header_offset + 30 + name_len + extra_len
    assert await get(data_start + HUGE - len(TAIL), data_start + HUGE) == TAIL
    # ZIP64 end-of-central-directory record and locator precede the classic end record
    tail = await get(size - 200, size)
    assert b"PK\x06\x06" in tail and b"PK\x06\x07" in tail
