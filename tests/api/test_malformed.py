"""A table of malformed and hostile requests: each gets its 4xx with a JSON `{detail, code}`, never a 5xx,
never a traceback or a server path."""

from __future__ import annotations

from typing import Any

import pytest
import servicekit as kit

ZERO = "0" * 32
MiB = 1024 * 1024


async def _project(client: Any) -> str:
    resp = await client.post("/projects", json={"name": "p", "country": "DEU"})
    assert resp.status == 201
    return (await resp.json())["id"]


def _run(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"project_type": "solar", "aoi_geojson": kit.aoi_feature()}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


_DEEP = b"[" * 5000 + b"]" * 5000  # far under the body limit, far past any decoder's nesting depth
_DEEP_RUN = b'{"project_type": "solar", "aoi_geojson": {"type": "Polygon", "coordinates": ' + _DEEP + b"}}"


async def _huge_chunks() -> Any:
    for _ in range(7):
        yield b"x" * MiB


# (name, method, path ("{p}" = a real project id), kwargs, expected status, field named in the answer or None)
CASES: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
    ("bad json", "POST", "/projects", {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400, None),
    ("empty body", "POST", "/projects", {"data": b""}, 400, None),
    ("not utf-8", "POST", "/projects", {"data": b"\xff\xfe{}"}, 400, None),
    ("json array", "POST", "/projects", {"json": []}, 422, None),
    ("name missing", "POST", "/projects", {"json": {}}, 422, "name"),
    ("name wrong type", "POST", "/projects", {"json": {"name": 5}}, 422, "name"),
    ("name empty", "POST", "/projects", {"json": {"name": ""}}, 422, "name"),
    ("country not alpha-3", "POST", "/projects", {"json": {"name": "x", "country": "germany"}}, 422, "country"),
    ("huge declared body", "POST", "/projects", {"data": b"x" * (6 * MiB)}, 413, None),
    ("huge chunked body", "POST", "/projects", {"data": "CHUNKED"}, 413, None),
    ("run bad json", "POST", "/projects/{p}/runs", {"data": b'{"project_type": '}, 400, None),
    ("project_type wrong type", "POST", "/projects/{p}/runs", {"json": _run(project_type=5)}, 422, "project_type"),
    ("project_type missing", "POST", "/projects/{p}/runs", {"json": _run(project_type=...)}, 422, "project_type"),
    ("unknown project_type", "POST", "/projects/{p}/runs", {"json": _run(project_type="nuclear")}, 422, None),
    (
        "both aoi sources",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(aoi_path="uploads/a.geojson")},
        422,
        "aoi_geojson",
    ),
    ("neither aoi source", "POST", "/projects/{p}/runs", {"json": _run(aoi_geojson=...)}, 422, "aoi_geojson"),
    (
        "aoi_path traversal",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(aoi_geojson=..., aoi_path="../../etc/passwd")},
        422,
        "aoi_path",
    ),
    (
        "aoi_path absolute",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(aoi_geojson=..., aoi_path="/etc/passwd")},
        422,
        "aoi_path",
    ),
    (
        "aoi_path unknown upload",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(aoi_geojson=..., aoi_path="uploads/none.geojson")},
        422,
        "aoi_path",
    ),
    ("aoi_geojson a string", "POST", "/projects/{p}/runs", {"json": _run(aoi_geojson="POLYGON")}, 422, "aoi_geojson"),
    (
        "aoi a point",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(aoi_geojson={"type": "Point", "coordinates": [14.3, 51.7]})},
        422,
        None,
    ),
    ("aoi garbage object", "POST", "/projects/{p}/runs", {"json": _run(aoi_geojson={"type": "Nonsense"})}, 422, None),
    (
        "aoi out-of-range coordinates",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(aoi_geojson={"type": "Polygon", "coordinates": [[[500, 95], [501, 95], [501, 96], [500, 95]]]})},
        422,
        None,
    ),
    ("config not an object", "POST", "/projects/{p}/runs", {"json": _run(config=[1, 2])}, 422, "config"),
    ("json nested too deep", "POST", "/projects/{p}/runs", {"data": _DEEP_RUN}, 400, None),  # RecursionError
    (
        "capacity not a number",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(config={"capacity_mw": "lots"})},
        422,
        "config.capacity_mw",
    ),
    (
        "config unknown key",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(config={"colour": "red"})},
        422,
        "config.colour",
    ),
    (
        "config junk key of 4.5 MiB",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(config={"junk": "x" * (9 * MiB // 2)})},
        422,
        "config.junk",
    ),
    (
        "config huge past the body limit",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(config={"junk": "x" * (6 * MiB)})},
        413,
        None,
    ),
    ("country malformed", "POST", "/projects/{p}/runs", {"json": _run(country="XX")}, 422, None),
    (
        "idempotency key with spaces",
        "POST",
        "/projects/{p}/runs",
        {"json": _run(), "headers": {"Idempotency-Key": "a b"}},
        422,
        "Idempotency-Key",
    ),
    ("runs of unknown project", "POST", f"/projects/{ZERO}/runs", {"json": _run()}, 404, None),
    ("runs of hostile project id", "POST", "/projects/..%2F..%2Fetc/runs", {"json": _run()}, 404, None),
    ("hostile run id", "GET", "/runs/..%2Fx", {}, 404, None),
    ("dotted run id", "GET", "/runs/%2E%2E", {}, 404, None),
    ("uppercase run id", "GET", "/runs/" + "A" * 32, {}, 404, None),
    ("unknown run", "GET", f"/runs/{ZERO}", {}, 404, None),
    ("unknown run results", "GET", f"/runs/{ZERO}/results", {}, 404, None),
    ("unknown run legal", "GET", f"/runs/{ZERO}/legal", {}, 404, None),
    ("hostile layer", "GET", f"/runs/{ZERO}/biodiversity/..%2F..%2Frun.json", {}, 404, None),
    ("unknown layer", "GET", f"/runs/{ZERO}/biodiversity/roads", {}, 404, None),
    ("hostile task id", "GET", "/tasks/..%2F..%2Fetc%2Fpasswd", {}, 404, None),
    ("unknown task", "GET", f"/tasks/{ZERO}", {}, 404, None),
    ("cancel unknown task", "DELETE", f"/tasks/{ZERO}", {}, 404, None),
    ("cancel hostile task", "DELETE", "/tasks/x", {}, 404, None),
    ("limit zero", "GET", "/runs?limit=0", {}, 422, "limit"),
    ("limit not a number", "GET", "/runs?limit=ten", {}, 422, "limit"),
    ("limit a superscript digit", "GET", "/runs?limit=%C2%B2", {}, 422, "limit"),  # isdigit() but not int()
    ("limit too long for int", "GET", "/runs?limit=" + "1" * 5000, {}, 422, "limit"),
    ("hostile cursor", "GET", "/runs?cursor=../x", {}, 422, "cursor"),
    ("hostile project filter", "GET", "/runs?project_id=../x", {}, 422, "project_id"),
    ("hostile upload name", "PUT", "/projects/{p}/uploads/..%2Fx.geojson", {"data": b"{}"}, 422, "name"),
    ("wrong method", "PATCH", "/projects", {"json": {}}, 405, None),
    ("no such route", "GET", "/nothing/here", {}, 404, None),
]


@pytest.fixture
async def svc(make_service: Any) -> Any:
    return await make_service()


async def test_malformed_table_has_enough_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(("name", "method", "path", "kwargs", "status", "field"), CASES, ids=[c[0] for c in CASES])
async def test_malformed_request(
    svc: Any, name: str, method: str, path: str, kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    if "{p}" in path:
        path = path.replace("{p}", await _project(svc.client))
    kwargs = dict(kwargs)
    if kwargs.get("data") == "CHUNKED":
        kwargs["data"] = _huge_chunks()
    resp = await svc.client.request(method, path, **kwargs)
    text = await resp.text()
    assert resp.status < 500, (name, resp.status, text)
    assert resp.status == status, (name, resp.status, text)
    assert resp.content_type == "application/json", (name, text)
    body = await resp.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    assert "Traceback" not in text and "/work/" not in text and str(svc.settings.storage_root) not in text
    if field is not None:
        assert body.get("field") == field, (name, body)


async def test_uploaded_aoi_nested_too_deep_is_a_422(svc: Any) -> None:
    """A file uploaded to a project is parsed only when a run names it: a nesting that overflows the
    decoder is the file's fault (422), not a 500."""
    project = await _project(svc.client)
    deep = b'{"type": "Polygon", "coordinates": ' + _DEEP + b"}"
    resp = await svc.client.put(f"/projects/{project}/uploads/deep.geojson", data=deep)
    assert resp.status == 201, await resp.text()
    resp = await svc.client.post(
        f"/projects/{project}/runs", json=_run(aoi_geojson=..., aoi_path="uploads/deep.geojson")
    )
    text = await resp.text()
    assert resp.status == 422, text
    assert (await resp.json())["code"] == "invalid_aoi"
    assert "Traceback" not in text and "Recursion" not in text


async def test_uploaded_aoi_a_reader_chokes_on_is_a_422(svc: Any) -> None:
    """A KML ring of two points makes GEOS raise its own exception type: the file's fault, not a 500."""
    project = await _project(svc.client)
    kml = (
        b"<kml><Document><Placemark><Polygon><outerBoundaryIs><LinearRing><coordinates>-3.49,36.91 "
        b"-3.48,36.92</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark></Document></kml>"
    )
    resp = await svc.client.put(f"/projects/{project}/uploads/two-points.kml", data=kml)
    assert resp.status == 201, await resp.text()
    resp = await svc.client.post(
        f"/projects/{project}/runs", json=_run(aoi_geojson=..., aoi_path="uploads/two-points.kml")
    )
    text = await resp.text()
    assert resp.status == 422, text
    assert (await resp.json())["code"] == "invalid_aoi"
    assert "GEOS" not in text and "Traceback" not in text
