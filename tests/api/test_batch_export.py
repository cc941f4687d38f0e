"""`GET /batches/{id}/export` on batches of COMPLETED (and FAILED) sites written straight into storage
(tests/batchkit.py): the bytes are those of the in-memory layout of the same members, Range and HEAD
behave as a run's export, the plan's temporary files are removed on every way out, and the memory of
an export does not grow with the number of sites (tracemalloc, no clock)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import tempfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import batchkit
import msgspec
import pytest

from aethera.api.keys import STORAGE
from aethera.api.routes.batches import _member_dir
from aethera.export import ExportMember, archive_time, layout, plan_export
from aethera.jobs.batch_feed import load_batch
from aethera.models import RunStatus


@pytest.fixture
def plan_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the export's temporary plan goes (tempfile's directory, for this test only)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    yield directory


async def _in_memory_export(svc: Any, batch_id: str) -> tuple[bytes, str]:
    """The archive as the export laid it out in memory before the plan was spilled: the summary's CSV
    and GeoJSON as the summary endpoint serves them, then each completed site's run-export members
    under its folder, through `aethera.export.layout`; and the ETag of that member table."""
    c, storage = svc.client, svc.app[STORAGE]
    batch = await load_batch(storage, batch_id)
    summary_csv = await (await c.get(f"/batches/{batch_id}/summary?format=csv")).read()
    summary_geojson = await (await c.get(f"/batches/{batch_id}/summary?format=geojson")).read()

    def inline(name: str, data: bytes) -> ExportMember:
        crc, sha = zlib.crc32(data) & 0xFFFFFFFF, hashlib.sha256(data).hexdigest()
        return ExportMember(name=name, size=len(data), crc32=crc, sha256=sha, media_type="x", data=data)

    members = [inline("summary.csv", summary_csv), inline("summary.geojson", summary_geojson)]
    for site in batch.sites:
        record = msgspec.json.decode(await storage.read(f"runs/{site.run_id}/run.json"))
        if record["status"] != RunStatus.COMPLETED.value:
            continue
        plan = await plan_export(storage, site.run_id)
        members += [msgspec.structs.replace(m, name=_member_dir(site) + m.name) for m in plan.members]
    segments, size = layout(members, archive_time(batch.created_at))
    parts = [seg.data if seg.data is not None else await storage.read(seg.key or "") for seg in segments]
    tag = hashlib.sha256(b"".join(f"{m.name}\0{m.sha256}\n".encode() for m in members)).hexdigest()[:40]
    data = b"".join(parts)
    assert len(data) == size
    return data, f'"{tag}"'


async def test_the_export_is_byte_for_byte_the_in_memory_layout(make_service: Any, plan_dir: Path) -> None:
    svc = await make_service()
    batch_id = batchkit.write_stored_batch(Path(svc.settings.storage_base_path), 40, failed_every=7)
    resp = await svc.client.get(f"/batches/{batch_id}/export")
    assert resp.status == 200 and resp.content_type == "application/zip"
    body = await resp.read()
    expected, etag = await _in_memory_export(svc, batch_id)
    assert body == expected
    assert resp.headers["ETag"] == etag and resp.headers["Accept-Ranges"] == "bytes"
    assert int(resp.headers["Content-Length"]) == len(body)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names[:2] == ["summary.csv", "summary.geojson"]
        assert len(archive.read("summary.csv").decode().splitlines()) == 41
        assert not any(n.startswith("sites/00006_") for n in names)  # the FAILED site has no folder
    await _plan_removed(plan_dir)


async def _plan_removed(plan_dir: Path) -> None:
    """The handler removes the plan after its last byte is sent, so the client may see the end first."""
    deadline = asyncio.get_running_loop().time() + 120
    while list(plan_dir.iterdir()):
        assert asyncio.get_running_loop().time() < deadline, list(plan_dir.iterdir())
        await asyncio.sleep(0.05)


def _cd_offset(body: bytes) -> int:
    """Where the central directory starts, from the end record (no ZIP64 in these small archives)."""
    return int(struct.unpack("<I", body[-6:-2])[0])


async def test_range_head_and_if_range_behave_as_a_runs_export(make_service: Any, plan_dir: Path) -> None:
    svc = await make_service()
    c = svc.client
    batch_id = batchkit.write_stored_batch(Path(svc.settings.storage_base_path), 300, failed_every=11)
    url = f"/batches/{batch_id}/export"
    full = await c.get(url)
    body, etag = await full.read(), full.headers["ETag"]
    size, cd = len(body), _cd_offset(body)
    assert cd > 256 * 1024  # the directory starts past the first page of members the server reads
    head = await c.head(url)
    assert head.status == 200 and int(head.headers["Content-Length"]) == size and head.headers["ETag"] == etag
    wanted = [
        (0, 1),
        (0, 100),
        (12345, 67890),  # across several members
        (cd - 10, cd + 10),  # the last member's end into the directory
        (cd + 5000, cd + 5100),  # inside the directory, past its first page
        (cd, size),
        (size - 22, size),  # the end record
        (size - 1, size),
    ]
    for start, end in wanted:
        resp = await c.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
        assert resp.status == 206, (start, end)
        assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        assert await resp.read() == body[start:end], (start, end)
    suffix = await c.get(url, headers={"Range": "bytes=-1000"})
    assert suffix.status == 206 and await suffix.read() == body[-1000:]
    open_ended = await c.get(url, headers={"Range": f"bytes={size - 3000}-"})
    assert await open_ended.read() == body[-3000:]
    outside = await c.get(url, headers={"Range": f"bytes={size}-"})
    assert outside.status == 416 and outside.headers["Content-Range"] == f"bytes */{size}"
    assert (await outside.json())["code"]
    matching = await c.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert matching.status == 206 and await matching.read() == body[10:20]
    stale = await c.get(url, headers={"Range": "bytes=10-19", "If-Range": '"another"'})
    assert stale.status == 200 and await stale.read() == body
    await _plan_removed(plan_dir)


async def test_a_client_that_disconnects_leaves_no_temporary_files(make_service: Any, plan_dir: Path) -> None:
    svc = await make_service()
    # layers of 8 MiB: the archive is far larger than the socket buffers, so the server is mid-stream
    batch_id = batchkit.write_stored_batch(Path(svc.settings.storage_base_path), 6, layer_bytes=8 << 20)
    url = svc.client.make_url(f"/batches/{batch_id}/export")
    async with aiohttp.ClientSession() as session:
        resp = await session.get(url)
        assert resp.status == 200
        await resp.content.readexactly(64 * 1024)
        assert list(plan_dir.iterdir())  # the plan exists while the download runs
        resp.close()  # drops the connection
    deadline = asyncio.get_running_loop().time() + 120
    while list(plan_dir.iterdir()):  # the handler notices the lost client, then removes the plan
        assert asyncio.get_running_loop().time() < deadline, list(plan_dir.iterdir())
        await asyncio.sleep(0.05)
    # the service still serves the next one whole
    again = await svc.client.get(f"/batches/{batch_id}/export")
    assert len(await again.read()) == int(again.headers["Content-Length"])


async def _export_peak_bytes(svc: Any, batch_id: str) -> int:
    """tracemalloc's peak (above the start) while the whole export is downloaded in 64 KiB reads."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        resp = await svc.client.get(f"/batches/{batch_id}/export")
        length = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            length += len(chunk)
        assert length == int(resp.headers["Content-Length"])
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


async def test_export_memory_does_not_grow_with_the_number_of_sites(make_service: Any, plan_dir: Path) -> None:
    svc = await make_service()
    base = Path(svc.settings.storage_base_path)
    warm, small, large = (batchkit.write_stored_batch(base, n, seed=n) for n in (10, 200, 600))
    await (await svc.client.get(f"/batches/{warm}/export")).read()  # lazy imports and pools, once
    small_peak = await _export_peak_bytes(svc, small)
    large_peak = await _export_peak_bytes(svc, large)
    # 400 more sites (both past the first full page of 128): the in-memory plan held ~16 KiB a site (~6 MiB here); what may still grow is
    # the batch record itself (~0.5 KiB a site, read by every batch endpoint)
    assert large_peak - small_peak < 1 << 20, (small_peak, large_peak)
