"""POST /uploads through the real API: accepted formats, refused files, and upload ids as `aoi_path`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from servicekit import aoi_feature

from aethera.security.apikeys import create_key


def form(filename: str, data: bytes, field: str = "file") -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return body


def geojson_bytes() -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": [aoi_feature()]}).encode()


def written_by_gdal(tmp_path: Path, driver: str, name: str) -> Path:
    import geopandas as gpd
    from shapely.geometry import shape

    frame = gpd.GeoDataFrame({"name": ["site"]}, geometry=[shape(aoi_feature()["geometry"])], crs="EPSG:4326")
    path = tmp_path / name
    frame.to_file(path, driver=driver)
    return path


def shapefile_zip(tmp_path: Path) -> bytes:
    folder = tmp_path / "shp"
    folder.mkdir()
    written_by_gdal(folder, "ESRI Shapefile", "site.shp")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    return buf.getvalue()


@pytest.fixture
async def service(make_service: Any, tmp_path: Path) -> Any:
    keys_file = tmp_path / "keys.json"
    key, _ = create_key(keys_file, "acme")
    other, _ = create_key(keys_file, "globex")
    svc = await make_service(
        AETHERA_API_KEYS_FILE=str(keys_file), AETHERA_RATE_LIMIT_PER_S="0", AETHERA_MAX_UPLOAD_BYTES="200000"
    )
    svc.acme = {"Authorization": f"Bearer {key}"}
    svc.globex = {"Authorization": f"Bearer {other}"}
    return svc


async def upload(svc: Any, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    resp = await svc.client.post("/uploads", data=body, headers=headers or svc.acme)
    return resp.status, await resp.json()


async def test_each_format_uploads_and_runs(service: Any, tmp_path: Path) -> None:
    files = {
        "site.geojson": geojson_bytes(),
        "site.zip": shapefile_zip(tmp_path),
        "site.gpkg": written_by_gdal(tmp_path, "GPKG", "site.gpkg").read_bytes(),
        "site.kml": written_by_gdal(tmp_path, "KML", "site.kml").read_bytes(),
    }
    resp = await service.client.post("/projects", json={"name": "p"}, headers=service.acme)
    project = await resp.json()
    for name, data in files.items():
        status, answer = await upload(service, form(name, data))
        assert status == 201, (name, answer)
        upload_id = answer["upload_id"]
        assert answer["aoi_path"] == upload_id and answer["size"] == len(data)
        stored = Path(service.settings.storage_base_path) / "uploads" / upload_id
        assert sorted(p.name for p in stored.iterdir()) == ["aoi." + name.split(".")[1], "upload.json"]
        assert json.loads((stored / "upload.json").read_bytes())["tenant"] == "acme"
        resp = await service.client.get(f"/uploads/{upload_id}", headers=service.acme)
        assert resp.status == 200 and (await resp.json())["sha256"] == answer["sha256"]
        resp = await service.client.post(
            f"/projects/{project['id']}/runs",
            headers=service.acme,
            json={"project_type": "solar", "aoi_path": upload_id},
        )
        assert resp.status == 202, (name, await resp.text())


async def test_another_tenant_cannot_see_or_use_an_upload(service: Any) -> None:
    status, answer = await upload(service, form("site.geojson", geojson_bytes()))
    assert status == 201
    upload_id = answer["upload_id"]
    resp = await service.client.get(f"/uploads/{upload_id}", headers=service.globex)
    assert resp.status == 404
    unknown = await service.client.get(f"/uploads/{'0' * 32}", headers=service.globex)
    assert await resp.json() == await unknown.json()
    project = await (await service.client.post("/projects", json={"name": "g"}, headers=service.globex)).json()
    resp = await service.client.post(
        f"/projects/{project['id']}/runs", headers=service.globex, json={"project_type": "solar", "aoi_path": upload_id}
    )
    theirs = await resp.json()
    resp2 = await service.client.post(
        f"/projects/{project['id']}/runs", headers=service.globex, json={"project_type": "solar", "aoi_path": "0" * 32}
    )
    assert resp.status == resp2.status == 422
    assert theirs["detail"].replace(upload_id, "0" * 32) == (await resp2.json())["detail"]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data, status, code",
    [
        ("evil.zip", _zip([("../evil.shp", b"x"), ("evil.shx", b"x"), ("evil.dbf", b"x")]), 422, "unsafe_archive"),
        (
            "bomb.zip",
            _zip([("a.shp", b"x"), ("a.shx", b"x"), ("a.dbf", b"\0" * (90 * 1024 * 1024))]),
            422,
            "unsafe_archive",
        ),
        ("many.zip", _zip([(f"f{i}.txt", b"x") for i in range(100)]), 422, "unsafe_archive"),
        ("noshp.zip", _zip([("readme.txt", b"hello")]), 422, "invalid_aoi"),
        (
            "xxe.kml",
            b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY x SYSTEM "file:///etc/passwd">]><kml>&x;</kml>',
            422,
            "invalid_aoi",
        ),
        ("fake.gpkg", b"not a database", 422, "invalid_aoi"),
        ("point.geojson", json.dumps({"type": "Point", "coordinates": [14.3, 51.7]}).encode(), 422, "invalid_aoi"),
        ("broken.geojson", b"{not json", 422, "invalid_aoi"),
        ("empty.geojson", b"", 422, "invalid_input"),
        ("tool.exe", b"MZ\x90\x00", 422, "invalid_input"),
        ("noextension", geojson_bytes(), 422, "invalid_input"),
    ],
)
async def test_refused_files(service: Any, name: str, data: bytes, status: int, code: str) -> None:
    got, answer = await upload(service, form(name, data))
    assert (got, answer["code"]) == (status, code), answer
    assert "/tmp" not in answer["detail"] and "Traceback" not in answer["detail"]
    uploads = Path(service.settings.storage_base_path) / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # nothing stored


async def test_too_large_malformed_and_hostile_names(service: Any) -> None:
    big = geojson_bytes() + b" " * 200_001
    status, answer = await upload(service, form("big.geojson", big))
    assert status == 413 and answer["code"] == "payload_too_large"

    async def chunked() -> Any:  # no Content-Length: the read itself stops at the limit
        for _ in range(30):
            yield b"x" * 10_000

    resp = await service.client.post(
        "/uploads", data=chunked(), headers={**service.acme, "Content-Type": "multipart/form-data; boundary=xyz"}
    )
    assert resp.status in (400, 413), await resp.text()

    resp = await service.client.post("/uploads", json={"file": "x"}, headers=service.acme)
    assert resp.status == 400 and (await resp.json())["code"] == "malformed_request"
    body = form("a.geojson", geojson_bytes())
    body.add_field("other", b"x", filename="b.geojson")
    status, answer = await upload(service, body)
    assert status == 400
    status, answer = await upload(service, form("a.geojson", geojson_bytes(), field="upload"))
    assert status == 400

    # a client's file name never becomes a path: it is shown cleaned, the file is stored as aoi.geojson
    for hostile in ("../../../etc/cron.d/x.geojson", "/abs/x.geojson"):
        # written by hand: aiohttp's client would percent-encode the name, a browser sends it as it is
        raw = (
            b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="'
            + hostile.encode()
            + b'"\r\nContent-Type: application/geo+json\r\n\r\n'
            + geojson_bytes()
            + b"\r\n--b0undary--\r\n"
        )
        resp = await service.client.post(
            "/uploads", data=raw, headers={**service.acme, "Content-Type": "multipart/form-data; boundary=b0undary"}
        )
        status, answer = resp.status, await resp.json()
        assert status == 201, answer
        assert answer["filename"] == "x.geojson"
        stored = Path(service.settings.storage_base_path) / "uploads" / answer["upload_id"]
        assert sorted(p.name for p in stored.iterdir()) == ["aoi.geojson", "upload.json"]


async def test_chunked_body_is_bounded_before_the_first_part(service: Any) -> None:
    """A chunked body declares no length, and aiohttp skips whatever precedes the first boundary line by
    line: those bytes count against AETHERA_MAX_UPLOAD_BYTES (200 000 here) like the file's own."""
    part = (
        b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.geojson"\r\n\r\n'
        + geojson_bytes()
        + b"\r\n--b0undary--\r\n"
    )

    async def preamble_then_part() -> Any:
        for _ in range(300):  # 300 kB of short lines, then a valid file part
            yield b"p" * 998 + b"\r\n"
        yield part

    resp = await service.client.post(
        "/uploads",
        data=preamble_then_part(),
        headers={**service.acme, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["code"] == "payload_too_large"
    uploads = Path(service.settings.storage_base_path) / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # nothing stored


def test_display_names_lose_directories_and_control_characters() -> None:
    from aethera.api.routes.uploads import _display_name

    assert _display_name("..\\..\\windows\\x.geojson") == "x.geojson"
    assert _display_name("a/b/\x00x\r\n.kml") == "x.kml"
    assert _display_name(None) == _display_name("") == _display_name("../") == "upload"
    assert len(_display_name("a" * 500 + ".zip")) == 100


async def test_malformed_part_headers_are_a_400(service: Any) -> None:
    # found by fuzzing: a part header aiohttp cannot parse (NUL, raw UTF-8) must not be a 500
    raw = b'--b0undary\r\nContent-Disposition: form-data; name="\x00\xc3\x9ca\\"\r\n\r\n{}\r\n--b0undary--\r\n'
    resp = await service.client.post(
        "/uploads", data=raw, headers={**service.acme, "Content-Type": "multipart/form-data; boundary=b0undary"}
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["code"] == "malformed_request"
