"""GET/HEAD /runs/{id}/export through the real API on both storage backends: a valid archive whose
members equal the stored bytes, exact lengths, ranges that resume, validators, and the error answers."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from exportkit import StoredRun, export_url, run_record, write_run

from aethera.storage.artifacts import artifact_key, save_artifact

ZIP64_EXTRA = 0x0001


async def download(service, run_id: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    resp = await service.client.get(export_url(run_id), headers=headers or {})
    body = await resp.read()
    return resp.status, resp.headers, body


def extra_ids(extra: bytes) -> list[int]:
    ids, i = [], 0
    while i + 4 <= len(extra):
        ident, size = int.from_bytes(extra[i : i + 2], "little"), int.from_bytes(extra[i + 2 : i + 4], "little")
        ids.append(ident)
        i += 4 + size
    return ids


def check_archive(body: bytes, run: StoredRun, tmp_path: Path) -> dict:
    """The archive is valid and holds exactly the run's members, byte for byte; returns the manifest."""
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    infos = archive.infolist()
    assert infos[0].filename == "manifest.json"
    assert ZIP64_EXTRA not in extra_ids(infos[0].extra)  # the first member is plain Zip32
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    assert sorted(i.filename for i in infos) == sorted([*run.members, "manifest.json"])
    for name, data in run.members.items():
        assert archive.read(name) == data, name
    manifest = json.loads(archive.read("manifest.json"))
    listed = {m["name"]: m for m in manifest["members"]}
    assert set(listed) == set(run.members)
    for name, data in run.members.items():
        assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert listed[name]["size"] == len(data)
    if shutil.which("unzip"):
        path = tmp_path / "export.zip"
        path.write_bytes(body)
        done = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "No errors detected" in done.stdout
    return manifest


async def test_archive_is_valid_and_members_equal_stored_bytes(service, tmp_path: Path) -> None:
    run = await write_run(service.storage)
    status, headers, body = await download(service, run.run_id)
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Content-Disposition"] == f'attachment; filename="{run.run_id}_export.zip"'
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"].startswith('"') and headers["ETag"].endswith('"')  # strong, not W/
    assert "Transfer-Encoding" not in headers
    manifest = check_archive(body, run, tmp_path)
    assert manifest["run_id"] == run.run_id
    assert manifest["run"]["params"] == run.record["params"]
    assert manifest["datasets"] == run.results["datasets"]
    assert manifest["timings"]["step_durations_s"] == run.results["step_durations_s"]
    assert manifest["timings"]["run"]["finished_at"] == run.record["finished_at"]
    # bookkeeping of the queue and the client's idempotency key stay out of the archive
    assert "job_id" not in manifest["run"] and "idempotency_key_sha256" not in manifest["run"]
    assert manifest["not_included"] == {}


async def test_every_member_carries_the_completion_time(local_service) -> None:
    run = await write_run(local_service.storage)
    _, _, body = await download(local_service, run.run_id)
    for info in zipfile.ZipFile(io.BytesIO(body)).infolist():
        assert info.date_time == (2025, 3, 14, 9, 26, 52)  # 09:26:53 in DOS's 2-second steps


async def test_same_run_gives_the_same_bytes_and_etag(local_service) -> None:
    run = await write_run(local_service.storage)
    first = await download(local_service, run.run_id)
    second = await download(local_service, run.run_id)
    assert first[2] == second[2]
    assert first[1]["ETag"] == second[1]["ETag"]


async def test_changed_output_changes_the_etag(local_service) -> None:
    run = await write_run(local_service.storage)
    _, before, _ = await download(local_service, run.run_id)
    await save_artifact(local_service.storage, run.run_id, "run.log", b"rewritten log\n", "text/plain")
    _, after, body = await download(local_service, run.run_id)
    assert after["ETag"] != before["ETag"]
    assert zipfile.ZipFile(io.BytesIO(body)).read("run.log") == b"rewritten log\n"


async def test_resume_at_arbitrary_bytes_joins_to_the_full_download(service) -> None:
    run = await write_run(service.storage, layer_bytes=300_000)
    _, headers, full = await download(service, run.run_id)
    size, etag = len(full), headers["ETag"]
    rng = random.Random(7)
    # inside the first local header, inside a member, at the start of the central directory, last byte
    central = full.rfind(b"PK\x01\x02", 0, full.rfind(b"PK\x05\x06"))
    cuts = sorted({1, 17, size // 2, central, size - 1, *(rng.randrange(1, size) for _ in range(6))})
    for cut in cuts:
        status, h, tail = await download(service, run.run_id, {"Range": f"bytes={cut}-", "If-Range": etag})
        assert status == 206, cut
        assert h["Content-Range"] == f"bytes {cut}-{size - 1}/{size}"
        assert int(h["Content-Length"]) == size - cut
        assert full[:cut] + tail == full, cut


async def test_closed_and_suffix_ranges(local_service) -> None:
    run = await write_run(local_service.storage, layer_bytes=100_000)
    _, _, full = await download(local_service, run.run_id)
    size = len(full)
    status, h, part = await download(local_service, run.run_id, {"Range": "bytes=100-4099"})
    assert (status, part, h["Content-Range"]) == (206, full[100:4100], f"bytes 100-4099/{size}")
    status, h, part = await download(local_service, run.run_id, {"Range": "bytes=-500"})
    assert (status, part, h["Content-Range"]) == (206, full[-500:], f"bytes {size - 500}-{size - 1}/{size}")
    status, _, part = await download(local_service, run.run_id, {"Range": f"bytes=10-{size * 3}"})
    assert (status, part) == (206, full[10:])  # an end past the archive is clamped
    status, _, part = await download(local_service, run.run_id, {"Range": f"bytes=-{size * 2}"})
    assert (status, part) == (206, full)
    # several ranges, another unit, or nonsense: the whole archive (a server may ignore Range)
    for header in ("bytes=0-1,5-9", "items=0-5", "bytes=9-3", "bytes=abc"):
        status, _, body = await download(local_service, run.run_id, {"Range": header})
        assert (status, body) == (200, full), header


async def test_unsatisfiable_range_is_416(local_service) -> None:
    run = await write_run(local_service.storage, layer_bytes=50_000)
    _, _, full = await download(local_service, run.run_id)
    for header in (f"bytes={len(full)}-", f"bytes={len(full) + 10}-{len(full) + 20}", "bytes=-0"):
        status, h, body = await download(local_service, run.run_id, {"Range": header})
        assert status == 416, header
        assert h["Content-Range"] == f"bytes */{len(full)}"
        assert json.loads(body)["code"] == "range_not_satisfiable"


async def test_range_positions_too_long_for_int_are_answered_not_a_500(local_service) -> None:
    """int() refuses more than 4300 digits, and a Range header has room for more: such positions lie past
    any archive, so they are served like any position past the end."""
    run = await write_run(local_service.storage, layer_bytes=20_000)
    _, _, full = await download(local_service, run.run_id)
    huge = "9" * 5000
    status, _, body = await download(local_service, run.run_id, {"Range": f"bytes={huge}-"})
    assert status == 416 and json.loads(body)["code"] == "range_not_satisfiable"
    status, _, body = await download(local_service, run.run_id, {"Range": f"bytes=10-{huge}"})
    assert (status, body) == (206, full[10:])
    status, _, body = await download(local_service, run.run_id, {"Range": f"bytes=-{huge}"})
    assert (status, body) == (206, full)


async def test_if_range_that_does_not_match_gets_the_whole_archive(local_service) -> None:
    run = await write_run(local_service.storage, layer_bytes=50_000)
    _, headers, full = await download(local_service, run.run_id)
    for validator in ('"an-old-etag"', "W/" + headers["ETag"], "Tue, 01 Jan 2019 00:00:00 GMT", "garbage"):
        status, h, body = await download(local_service, run.run_id, {"Range": "bytes=10-", "If-Range": validator})
        assert (status, body) == (200, full), validator
        assert "Content-Range" not in h
    # the Last-Modified date is a validator too
    status, _, body = await download(
        local_service, run.run_id, {"Range": "bytes=10-", "If-Range": headers["Last-Modified"]}
    )
    assert (status, body) == (206, full[10:])


async def test_if_range_date_out_of_every_range_gets_the_whole_archive(local_service) -> None:
    """A date whose year or zone offset overflows (OverflowError from the date parser) matches nothing."""
    run = await write_run(local_service.storage, layer_bytes=20_000)
    _, _, full = await download(local_service, run.run_id)
    for validator in ("Mon, 01 Jan 99999999999 00:00:00 GMT", "Mon, 01 Jan 2020 00:00:00 +99999999999999999999"):
        status, _, body = await download(local_service, run.run_id, {"Range": "bytes=10-", "If-Range": validator})
        assert (status, body) == (200, full), validator


async def test_if_none_match_is_304(local_service) -> None:
    run = await write_run(local_service.storage, layer_bytes=10_000)
    _, headers, _ = await download(local_service, run.run_id)
    status, h, body = await download(local_service, run.run_id, {"If-None-Match": headers["ETag"]})
    assert (status, body, h["ETag"]) == (304, b"", headers["ETag"])
    status, _, _ = await download(local_service, run.run_id, {"If-None-Match": '"other"'})
    assert status == 200


async def test_head_answers_the_same_headers_without_a_body(service) -> None:
    run = await write_run(service.storage, layer_bytes=50_000)
    _, get_headers, full = await download(service, run.run_id)
    resp = await service.client.head(export_url(run.run_id))
    assert resp.status == 200
    assert await resp.read() == b""
    for name in ("Content-Type", "Content-Length", "ETag", "Accept-Ranges", "Content-Disposition", "Last-Modified"):
        assert resp.headers[name] == get_headers[name], name
    assert int(resp.headers["Content-Length"]) == len(full)
    resp = await service.client.head(export_url(run.run_id), headers={"Range": "bytes=5-9"})
    assert (resp.status, resp.headers["Content-Length"]) == (206, "5")
    assert await resp.read() == b""


async def test_unknown_run_is_404(local_service) -> None:
    for run_id in ("0" * 32, "not-a-run-id", "A" * 32):
        for method in ("GET", "HEAD"):
            resp = await local_service.client.request(method, export_url(run_id))
            assert resp.status == 404, (run_id, method)
            if method == "GET":
                assert (await resp.json())["code"] == "not_found"


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "FAILED", "REVOKED"])
async def test_run_not_completed_is_409(local_service, status: str) -> None:
    run = await write_run(local_service.storage, status=status)
    resp = await local_service.client.get(export_url(run.run_id))
    assert resp.status == 409
    body = await resp.json()
    assert body["code"] == "conflict" and body["status"] == status and "run_status" not in body
    assert status in body["detail"]


async def test_missing_outputs_are_named_in_the_manifest(local_service) -> None:
    """A run whose worker stored no report: the archive holds what exists and says what is missing."""
    storage = local_service.storage
    run = await write_run(storage, layer_bytes=5_000)
    # rebuild the index without report.html, as a run finished by an older worker would have it
    index = json.loads(await storage.read(artifact_key(run.run_id, "artifacts.json")))
    index["artifacts"] = [a for a in index["artifacts"] if a["name"] != "report.html"]
    await storage.save(artifact_key(run.run_id, "artifacts.json"), msgspec.json.encode(index))
    _, _, body = await download(local_service, run.run_id)
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert "report.html" not in archive.namelist()
    manifest = json.loads(archive.read("manifest.json"))
    assert "report.html" in manifest["not_included"]


async def test_member_shorter_than_recorded_cuts_the_download(local_service, tmp_path: Path) -> None:
    """A stored file that no longer matches its recorded size is never served as a valid archive."""
    import aiohttp

    run = await write_run(local_service.storage, layer_bytes=400_000)
    path = tmp_path / "storage" / "runs" / run.run_id / "layers" / "natura.geojson"
    with open(path, "r+b") as f:
        f.truncate(1000)
    resp = await local_service.client.get(export_url(run.run_id))
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_request_id_is_sent_on_the_stream(local_service) -> None:
    run = await write_run(local_service.storage, layer_bytes=5_000)
    resp = await local_service.client.get(export_url(run.run_id), headers={"X-Request-ID": "req-123"})
    await resp.read()
    assert resp.headers.get("X-Request-ID") == "req-123"


def test_run_record_fixture_is_a_valid_run_record() -> None:
    """The fixture run record decodes as the service's RunRecord, so the export reads what the API writes."""
    from aethera.models import RunRecord

    record = msgspec.convert(run_record("a" * 32, "b" * 32), RunRecord)
    assert record.status.value == "COMPLETED" and record.finished_at


async def test_browser_on_another_origin_can_read_the_file_name(local_service) -> None:
    """CORS: the frontend's origin is allowed and may read Content-Disposition (the file name)."""
    run = await write_run(local_service.storage, layer_bytes=5_000)
    origin = "http://localhost:5173"
    resp = await local_service.client.get(export_url(run.run_id), headers={"Origin": origin})
    await resp.read()
    assert resp.headers.get("Access-Control-Allow-Origin") == origin
    exposed = {h.strip().lower() for h in resp.headers.get("Access-Control-Expose-Headers", "").split(",")}
    assert "content-disposition" in exposed
