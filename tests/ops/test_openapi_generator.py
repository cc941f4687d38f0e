"""The OpenAPI generator and the reference page, against a small app of their own."""

from __future__ import annotations

import re
from typing import Literal

import aiohttp_cors
import msgspec
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from aethera.api.docs_page import render_docs_html
from aethera.api.openapi import Body, Operation, Param, build_openapi, documented_routes, undocumented_routes


class ThingCreate(msgspec.Struct, kw_only=True):
    """What a new thing needs."""

    name: str
    kind: Literal["a", "b"] = "a"
    size_m: float | None = None


class Thing(msgspec.Struct, kw_only=True):
    """A stored thing."""

    id: str
    name: str
    tags: list[str] = []


async def create_thing(request: web.Request) -> web.Response:
    """Create a thing.

    The name must be unique; see `kind` for the options.
    """
    raise NotImplementedError


async def get_thing(request: web.Request) -> web.Response:
    """Read one thing."""
    raise NotImplementedError


async def list_things(request: web.Request) -> web.Response:
    """List things <newest first>."""
    raise NotImplementedError


async def health(request: web.Request) -> web.Response:
    """Liveness."""
    raise NotImplementedError


async def forgotten(request: web.Request) -> web.Response:
    raise NotImplementedError


OPS = {
    ("POST", "/things"): Operation(
        tag="things",
        request=Body(ThingCreate),
        responses={201: Body(Thing, description="The new thing.")},
        errors={409: "The name is taken."},
    ),
    ("GET", "/things/{thing_id}"): Operation(
        tag="things", responses={200: Body(Thing)}, errors={404: "Unknown thing."}, path_params={"thing_id": str}
    ),
    ("GET", "/things"): Operation(
        tag="things",
        responses={200: Body(list[Thing])},
        params=[Param("limit", type=int, description="At most this many.")],
    ),
    ("GET", "/health"): Operation(tag="operations", responses={200: Body(dict), 503: Body(Thing)}, public=True),
}


def _app(with_forgotten: bool = False) -> web.Application:
    app = web.Application()
    app.router.add_post("/things", create_thing)
    app.router.add_get("/things", list_things)
    app.router.add_get(r"/things/{thing_id:[0-9a-f]{32}}", get_thing)
    app.router.add_get("/health", health)
    if with_forgotten:
        app.router.add_delete("/things/{thing_id}", forgotten)
    cors = aiohttp_cors.setup(app, defaults={"*": aiohttp_cors.ResourceOptions(allow_headers="*")})
    for route in list(app.router.routes()):
        cors.add(route)
    return app


def _doc(app: web.Application) -> dict:
    return build_openapi(
        app,
        OPS,
        title="Things",
        version="1.0",
        common_errors={503: "A dependency is down."},
        auth_errors={401: "No valid key."},
    )


def test_document_is_valid_openapi_31_and_covers_every_route() -> None:
    app = _app()
    doc = _doc(app)
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"] == "3.1.0"
    for route in app.router.routes():
        method, path = route.method.lower(), route.resource.canonical
        if method in {"head", "options"}:
            # aiohttp's HEAD mirrors of GET and aiohttp-cors' preflight: covered by the path's operations
            assert path in doc["paths"]
            continue
        assert method in doc["paths"][path], f"{method} {path} missing"


def test_operation_contents_come_from_types_and_docstrings() -> None:
    doc = _doc(_app())
    post = doc["paths"]["/things"]["post"]
    assert post["summary"] == "Create a thing."
    assert "see `kind`" in post["description"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ThingCreate"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/Thing")
    for status in ("400", "401", "409", "413", "422", "503", "default"):
        assert post["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    schemas = doc["components"]["schemas"]
    assert schemas["ThingCreate"]["properties"]["kind"]["enum"] == ["a", "b"]
    assert schemas["ThingCreate"]["required"] == ["name"]
    assert set(schemas["ErrorBody"]["required"]) == {"detail", "code"}

    get_one = doc["paths"]["/things/{thing_id}"]["get"]
    assert get_one["parameters"] == [{"name": "thing_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    listing = doc["paths"]["/things"]["get"]
    assert listing["parameters"][0]["schema"] == {"type": "integer"}
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"].endswith("/Thing")

    # security: bearer everywhere except public routes, which carry an empty requirement
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert "401" not in doc["paths"]["/health"]["get"]["responses"]
    # a status the route declares itself keeps its own body, not the generic error shape
    assert doc["paths"]["/health"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Thing"
    )
    assert list(post["responses"]) == sorted(post["responses"])


def test_routes_without_an_operation_are_found_and_still_listed() -> None:
    app = _app(with_forgotten=True)
    assert undocumented_routes(app, OPS) == ["DELETE /things/{thing_id}"]
    doc = _doc(app)
    validate(doc)
    assert doc["paths"]["/things/{thing_id}"]["delete"]["responses"]["default"]
    assert [(m, p) for m, p, _ in documented_routes(app)].count(("GET", "/things")) == 1


def test_docs_page_is_self_contained_and_escaped() -> None:
    html = render_docs_html(_doc(_app()))
    assert html.startswith("<!DOCTYPE html>")
    for path in ("/things", "/things/{thing_id}", "/health"):
        assert f"{path}</h3>" in html
    assert "ThingCreate" in html and "bearerAuth" in html
    assert "List things &lt;newest first&gt;." in html  # docstring text is escaped
    # no asset from another host: no src/href to http(s), no @import or url() to one
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"""(@import|url\()\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower()


@pytest.mark.parametrize("schema", [{"$ref": "#/components/schemas/X"}, {"type": ["string", "null"]}])
def test_docs_page_renders_schema_forms(schema: dict) -> None:
    from aethera.api.docs_page import type_html

    assert type_html(schema)
