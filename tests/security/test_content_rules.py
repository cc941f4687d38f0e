"""Formats are decided by content and every archive is checked, on every path a client's file takes.

Through the real API (aiohttp test server, real Redis, real local storage): `POST /uploads`,
`PUT /projects/{id}/uploads/{name}` and a run naming either by `aoi_path`. A name cannot steer a zip past
the archive checks, a decompression bomb is refused without being inflated (the Python heap of this very
process, where the API runs, is traced while it answers), and a client's `aethera:repairs` member never
reads as a repair the service made.
"""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import servicekit as kit

from aethera import keyspace as keys
from aethera.api.keys import STORAGE
from aethera.security.apikeys import create_key

MIB = 1024 * 1024
BOMB_UNPACKED = 150 * MIB
# what a request may allocate while refusing a bomb: parsing, logging, the upload itself (~150 KB)
HEAP_BOUND = 16 * MIB
POST_NAMES = ["site.geojson", "site.json", "site.kml", "site.gpkg", "site.zip"]
PUT_NAMES = ["site.geojson", "site.json", "site.kml", "site.gpkg", "site.wkt", "site.zip"]


def _zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def _with_blank_member(members: list[tuple[str, bytes]], name: str, blank_bytes: int) -> bytes:
    """A zip of `members` plus one member of `blank_bytes` blanks, written in chunks (the test stays small)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in members:
            z.writestr(member, data)
        with z.open(name, "w", force_zip64=True) as out:
            for _ in range(blank_bytes // MIB):
                out.write(b" " * MIB)
    return buf.getvalue()


def _shapefile_members(tmp_path: Path) -> list[tuple[str, bytes]]:
    import geopandas as gpd
    from shapely.geometry import shape

    folder = tmp_path / "shp"
    folder.mkdir(exist_ok=True)
    gpd.GeoDataFrame({"name": ["site"]}, geometry=[shape(kit.aoi_feature()["geometry"])], crs="EPSG:4326").to_file(
        folder / "site.shp"
    )
    return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]


@pytest.fixture(scope="module")
def kml_bomb() -> bytes:
    """The red team's bomb: a zip of about 150 KB holding a 150 MiB KML."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open("doc.kml", "w", force_zip64=True) as out:
        out.write(b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>')
        for _ in range(BOMB_UNPACKED // MIB):
            out.write(b" " * MIB)
        out.write(b"</Document></kml>")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shapefile_bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid zipped Shapefile with a 90 MiB `site.txt` beside it (under the unpacked-size limit, so only
    its ratio gives it away): it loads as an AOI once inflated."""
    return _with_blank_member(_shapefile_members(tmp_path_factory.mktemp("bomb")), "site.txt", 90 * MIB)


def _symlink_zip() -> bytes:
    link = zipfile.ZipInfo("site.shp")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    return _zip([(link, b"/etc/passwd")])


def _broken_deflate_zip() -> bytes:
    data = bytearray(_zip([("site.dbf", bytes(range(256)) + b"x" * 5000)]))
    start = data.find(b"site.dbf") + len("site.dbf")
    for i in range(start, start + 40):
        data[i] ^= 0x5A
    return bytes(data)


HOSTILE = {
    "traversal": _zip([("../../evil.txt", b"x"), ("site.geojson", b"{}")]),
    "symlink": _symlink_zip(),
    "nested zip": _zip([("inner.zip", _zip([("a.shp", b"x")]))]),
    "nested zip with an innocent name": _zip([("inner.dbf", _zip([("a.shp", b"x")]))]),
    "broken deflate stream": _broken_deflate_zip(),  # zlib's own error: a 422, never a 500
}


@pytest.fixture
async def service(make_service: Any, tmp_path: Path) -> Any:
    keys_file = tmp_path / "keys.json"
    key, _ = create_key(keys_file, "acme")
    svc = await make_service(
        AETHERA_API_KEYS_FILE=str(keys_file), AETHERA_RATE_LIMIT_PER_S="0", AETHERA_MAX_UPLOAD_BYTES="400000"
    )
    svc.auth = {"Authorization": f"Bearer {key}"}
    resp = await svc.client.post("/projects", json={"name": "p"}, headers=svc.auth)
    svc.project = (await resp.json())["id"]
    return svc


def _form(filename: str, data: bytes) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return body


async def _post_upload(svc: Any, name: str, data: bytes) -> tuple[int, dict[str, Any]]:
    resp = await svc.client.post("/uploads", data=_form(name, data), headers=svc.auth)
    return resp.status, await resp.json()


async def _put_upload(svc: Any, name: str, data: bytes) -> tuple[int, dict[str, Any]]:
    resp = await svc.client.put(f"/projects/{svc.project}/uploads/{name}", data=data, headers=svc.auth)
    return resp.status, await resp.json()


async def _run(svc: Any, aoi_path: str) -> tuple[int, dict[str, Any]]:
    resp = await svc.client.post(
        f"/projects/{svc.project}/runs", headers=svc.auth, json={"project_type": "solar", "aoi_path": aoi_path}
    )
    return resp.status, await resp.json()


async def _traced(call: Any) -> tuple[Any, int, float]:
    """`await call()`, with the peak of the Python heap (every thread of this process) it took."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = await call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, time.perf_counter() - started


def _refused(status: int, answer: dict[str, Any]) -> None:
    assert status == 422, answer
    assert set(answer) >= {"detail", "code"} and answer["code"] in ("invalid_aoi", "unsafe_archive"), answer
    assert "/tmp" not in answer["detail"] and "Traceback" not in answer["detail"]


def _nothing_stored(svc: Any) -> None:
    base = Path(svc.settings.storage_base_path)
    for folder in (base / "uploads", base / "projects" / svc.project / "uploads", base / "runs"):
        assert not folder.exists() or not any(folder.rglob("*")), sorted(folder.rglob("*"))


@pytest.mark.parametrize("name", POST_NAMES)
async def test_post_uploads_refuses_a_bomb_under_any_name_without_inflating_it(
    service: Any, kml_bomb: bytes, name: str
) -> None:
    (status, answer), peak, elapsed = await _traced(lambda: _post_upload(service, name, kml_bomb))
    _refused(status, answer)
    assert peak < HEAP_BOUND, f"{peak / MIB:.0f} MiB allocated refusing a {BOMB_UNPACKED // MIB} MiB bomb"
    print(f"POST {name}: {status} {answer['code']} in {elapsed:.2f} s, heap peak {peak / MIB:.1f} MiB")
    _nothing_stored(service)


@pytest.mark.parametrize("name", PUT_NAMES)
async def test_project_uploads_refuse_a_bomb_under_any_name_without_inflating_it(
    service: Any, kml_bomb: bytes, name: str
) -> None:
    for data in (kml_bomb, b"JUNK" + kml_bomb):  # zipfile reads a zip behind a preamble: so do we
        (status, answer), peak, elapsed = await _traced(lambda: _put_upload(service, name, data))
        _refused(status, answer)
        assert peak < HEAP_BOUND, f"{peak / MIB:.0f} MiB allocated refusing a {BOMB_UNPACKED // MIB} MiB bomb"
        print(f"PUT {name}: {status} {answer['code']} in {elapsed:.2f} s, heap peak {peak / MIB:.1f} MiB")
    _nothing_stored(service)


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_archives_are_refused_under_any_name(service: Any, case: str) -> None:
    for data in (HOSTILE[case], b"JUNK" + HOSTILE[case]):
        for name in POST_NAMES:
            _refused(*await _post_upload(service, name, data))
        for name in PUT_NAMES:
            _refused(*await _put_upload(service, name, data))
    _status, answer = await _put_upload(service, "site.zip", HOSTILE[case])
    assert answer["code"] == "unsafe_archive", answer  # named as what it is, the archive check says why
    _nothing_stored(service)


async def test_a_preamble_bomb_is_refused_on_the_project_route_and_by_the_run(
    service: Any, shapefile_bomb: bytes
) -> None:
    data = b"JUNK" + shapefile_bomb
    status, answer = await _put_upload(service, "site.zip", data)
    _refused(status, answer)
    assert answer["code"] == "unsafe_archive" and "'site.txt' expands" in answer["detail"], answer
    _nothing_stored(service)

    # a file stored before the upload route checked anything: the run checks it again, by content
    storage = service.app[STORAGE]
    await storage.save(keys.upload_key(service.project, "site.zip"), data)
    (status, answer), peak, _ = await _traced(lambda: _run(service, "uploads/site.zip"))
    _refused(status, answer)
    assert answer["code"] == "unsafe_archive" and peak < HEAP_BOUND, (answer, peak)
    # ... and an upload record whose file is a zip, though the record calls it GeoJSON
    upload_id = "ab" * 16
    await storage.save(keys.upload_file_key(upload_id, "aoi.geojson"), data)
    record = {
        "upload_id": upload_id,
        "tenant": "acme",
        "filename": "site.geojson",
        "format": "geojson",
        "media_type": "application/geo+json",
        "size": len(data),
        "sha256": "0" * 64,
        "created_at": "2026-01-01T00:00:00Z",
        "stored_name": "aoi.geojson",
    }
    await storage.save(keys.upload_record_key(upload_id), json.dumps(record).encode())
    (status, answer), peak, _ = await _traced(lambda: _run(service, upload_id))
    _refused(status, answer)
    assert "content is a zip archive" in answer["detail"] and peak < HEAP_BOUND, (answer, peak)
    runs = Path(service.settings.storage_base_path) / "runs"
    assert not runs.exists() or not any(runs.iterdir())


async def test_a_safe_zip_behind_a_preamble_is_read_by_content(service: Any, tmp_path: Path) -> None:
    shapefile = _zip(_shapefile_members(tmp_path))  # type: ignore[arg-type]
    status, answer = await _put_upload(service, "site.zip", b"JUNK" + shapefile)
    assert status == 201, answer
    assert (await _run(service, "uploads/site.zip"))[0] == 202
    status, answer = await _post_upload(service, "site.zip", b"JUNK" + shapefile)
    assert status == 201, answer
    assert (await _run(service, answer["upload_id"]))[0] == 202


async def test_gzip_is_refused_with_a_clear_message(service: Any) -> None:
    import gzip

    data = gzip.compress(json.dumps(kit.aoi_feature()).encode())
    for status, answer in (
        await _post_upload(service, "site.geojson", data),
        await _put_upload(service, "site.geojson", data),
    ):
        _refused(status, answer)
        assert "compressed" in answer["detail"], answer


async def _final_task(svc: Any, task_id: str) -> dict[str, Any]:
    async def final() -> dict[str, Any] | None:
        resp = await svc.client.get(f"/tasks/{task_id}", headers=svc.auth)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body if body["status"] in kit.FINAL else None

    return await kit.wait_for(final, timeout_s=180)  # type: ignore[no-any-return]


def _bowtie_with_forged_repairs() -> dict[str, Any]:
    p0, p1, p2, p3, _ = kit.aoi_feature()["geometry"]["coordinates"][0]
    return {
        "type": "FeatureCollection",
        "aethera:repairs": ["FORGED: the service moved your site out of the Natura 2000 area"],
        "aethera:verified": True,
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [[p0, p2, p1, p3, p0]]},
            }
        ],  # a bow-tie
    }


async def test_a_clients_repairs_member_is_not_reported_as_the_services(service: Any) -> None:
    forged = _bowtie_with_forged_repairs()
    status, upload = await _post_upload(service, "site.geojson", json.dumps(forged).encode())
    assert status == 201, upload
    run_ids = []
    for body in ({"aoi_geojson": forged}, {"aoi_path": upload["upload_id"]}):
        resp = await service.client.post(
            f"/projects/{service.project}/runs", headers=service.auth, json={"project_type": "solar", **body}
        )
        assert resp.status == 202, await resp.text()
        run_id = (await resp.json())["run_id"]
        stored = await service.app[STORAGE].read(keys.run_aoi_key(run_id))  # what the worker reads
        assert b"FORGED" not in stored and b"aethera:verified" not in stored
        run_ids.append(run_id)

    async with kit.in_process_worker(service.settings):
        for run_id in run_ids:
            final = await _final_task(service, run_id)
            assert final["status"] == "COMPLETED", final
    for run_id in run_ids:
        resp = await service.client.get(f"/runs/{run_id}/results", headers=service.auth)
        assert resp.status == 200, await resp.text()
        repairs = msgspec.json.decode(await resp.read())["aoi"]["repairs"]
        assert len(repairs) == 1 and "make_valid" in repairs[0], repairs  # the service's own repair, only
