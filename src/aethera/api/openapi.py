"""The OpenAPI 3.1 document of the service, generated from the app's route table and the msgspec types.

Nothing here is a hand-written copy of a schema: paths and methods come from `app.router`, path
parameters from each route's template, summaries and descriptions from the handlers' docstrings, and
every request and response schema from the msgspec Structs through `msgspec.json.schema_components`
(JSON Schema 2020-12, which OpenAPI 3.1 uses as is). What a route cannot say about itself (which type
its body decodes into, which statuses it answers) is declared once per route in an `Operation`; a route
registered without one still appears in the document, with the generic error shape, and
`undocumented_routes()` lets a test insist that none is left that way.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web

OPENAPI_VERSION = "3.1.0"
SCHEMA_REF = "#/components/schemas/{name}"

# Methods aiohttp or aiohttp-cors add on their own: HEAD beside every GET, OPTIONS for CORS preflight.
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
_PATH_PARAM_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error answer: `detail` is written for the user, `code` is stable and machine-readable.

    Some codes add named fields, always these and always with this meaning."""

    detail: str
    code: str
    status: str | None = None  # `conflict` (409) about a run or task: the run's status (PENDING, FAILED ...)
    field: str | None = None  # `invalid_input` (422): the request field at fault
    limit_bytes: int | None = None  # `payload_too_large` (413): the largest body accepted
    retry_after_s: float | None = None  # `rate_limited` (429): wait this long (also in `Retry-After`)
    request_id: str | None = None  # `internal_error` (500): the id to quote to the operators
    layer: str | None = None  # `dataset_error` (503): the catalog layer that could not be read


@dataclass(frozen=True)
class Body:
    """A request or response body: a msgspec type (or plain JSON Schema) under one media type."""

    type: Any = None  # a msgspec-encodable type; None with `schema` for non-JSON bodies
    media_type: str = "application/json"
    schema: Mapping[str, Any] | None = None  # used when `type` is None (binary, text, multipart)
    description: str = ""


@dataclass(frozen=True)
class Param:
    """A query or header parameter (path parameters are taken from the route template)."""

    name: str
    location: str = "query"  # "query" or "header"
    type: Any = str
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """What one route takes and answers, beyond what the route table and the handler already say."""

    tag: str
    responses: Mapping[int, Body]
    request: Body | None = None
    errors: Mapping[int, str] = field(default_factory=dict)  # status -> when it happens
    params: Sequence[Param] = ()
    path_params: Mapping[str, Any] = field(default_factory=dict)  # name -> msgspec type (default str)
    public: bool = False  # no credentials needed
    summary: str | None = None  # default: first line of the handler's docstring
    operation_id: str | None = None  # default: the handler's name


def _handler_doc(handler: Any) -> tuple[str, str]:
    target = getattr(handler, "__func__", handler)
    doc = inspect.getdoc(target) or ""
    first, _, rest = doc.partition("\n")
    return first.strip(), rest.strip()


def _handler_name(handler: Any) -> str:
    return str(getattr(handler, "__name__", type(handler).__name__)).strip("_")


def _is_cors_preflight(route: web.AbstractRoute) -> bool:
    return _handler_name(route.handler) == "preflight_handler"


def documented_routes(app: web.Application) -> list[tuple[str, str, web.AbstractRoute]]:
    """(METHOD, path template, route) of every route the document describes, in registration order.

    HEAD routes that mirror a GET and CORS preflight OPTIONS routes are not operations of their own; a
    route whose resource has no template (static files) is described by its prefix.
    """
    out: list[tuple[str, str, web.AbstractRoute]] = []
    for route in app.router.routes():
        if route.resource is None:
            continue
        method = route.method.upper()
        if method in _IMPLICIT_METHODS and (method == "HEAD" or _is_cors_preflight(route)):
            continue
        out.append((method, route.resource.canonical, route))
    return out


def undocumented_routes(app: web.Application, operations: Mapping[tuple[str, str], Operation]) -> list[str]:
    """Routes of `app` that have no `Operation` (they appear in the document with generic answers only)."""
    return [f"{m} {p}" for m, p, _ in documented_routes(app) if (m, p) not in operations]


def _ordered_tags(paths: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> list[str]:
    used = list(dict.fromkeys(op["tags"][0] for ops in paths.values() for op in ops.values()))
    return [t for t in order if t in used] + [t for t in used if t not in order]


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(name="ErrorBody")}}},
    }


def build_openapi(
    app: web.Application,
    operations: Mapping[tuple[str, str], Operation],
    *,
    title: str,
    version: str,
    description: str = "",
    common_errors: Mapping[int, str] | None = None,
    auth_errors: Mapping[int, str] | None = None,
    tag_order: Sequence[str] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`.

    `operations` maps (METHOD, path template) to the route's `Operation`. `common_errors` are statuses
    any route may answer (rate limit, dependency down); `auth_errors` those of routes that need a key.
    Tags are listed in `tag_order` first, then in order of first use.
    """
    common_errors = dict(common_errors or {})
    auth_errors = dict(auth_errors or {})

    # Collect every type first: one schema_components call yields consistent, de-duplicated components.
    types: list[Any] = [ErrorBody]
    for operation in operations.values():
        for body in [operation.request, *operation.responses.values()]:
            if body is not None and body.type is not None:
                types.append(body.type)
        types += [p.type for p in operation.params]
        types += list(operation.path_params.values())
    schemas, components = msgspec.json.schema_components(types, ref_template=SCHEMA_REF)
    schema_of: dict[int, dict[str, Any]] = {}
    for tp, schema in zip(types, schemas, strict=True):
        schema_of.setdefault(id(tp), schema)

    def body_content(body: Body) -> dict[str, Any]:
        schema = schema_of[id(body.type)] if body.type is not None else dict(body.schema or {})
        return {body.media_type: {"schema": schema}}

    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    for method, path, route in documented_routes(app):
        op = operations.get((method, path))
        summary, details = _handler_doc(route.handler)
        entry: dict[str, Any] = {}
        base_id = (op.operation_id if op and op.operation_id else _handler_name(route.handler)) or "operation"
        op_id, n = base_id, 2
        while op_id in used_ids:
            op_id, n = f"{base_id}_{n}", n + 1
        used_ids.add(op_id)
        entry["operationId"] = op_id
        entry["summary"] = (op.summary if op and op.summary else summary) or f"{method} {path}"
        if details:
            entry["description"] = details
        entry["tags"] = [op.tag if op else "other"]

        params: list[dict[str, Any]] = []
        for name in _PATH_PARAM_RE.findall(path):
            tp = op.path_params.get(name) if op else None
            params.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": schema_of[id(tp)] if tp is not None else {"type": "string"},
                }
            )
        for p in op.params if op else ():
            param: dict[str, Any] = {"name": p.name, "in": p.location, "required": p.required}
            param["schema"] = schema_of[id(p.type)]
            if p.description:
                param["description"] = p.description
            params.append(param)
        if params:
            entry["parameters"] = params

        if op and op.request is not None:
            entry["requestBody"] = {"required": True, "content": body_content(op.request)}
            if op.request.description:
                entry["requestBody"]["description"] = op.request.description

        responses: dict[str, Any] = {}
        if op:
            for status, body in sorted(op.responses.items()):
                resp: dict[str, Any] = {"description": body.description or HTTPStatus(status).phrase}
                if body.type is not None or body.schema is not None:
                    resp["content"] = body_content(body)
                responses[str(status)] = resp
            errors = dict(op.errors)
            if not op.public:
                for status, why in auth_errors.items():
                    errors.setdefault(status, why)
            if op.request is not None and op.request.media_type == "application/json":
                errors.setdefault(400, "The body is not valid JSON.")
                errors.setdefault(413, "The body is larger than the configured limit.")
                errors.setdefault(422, "A field of the body has a wrong type or value; `detail` names it.")
            for status, why in common_errors.items():
                errors.setdefault(status, why)
            for status, why in errors.items():
                # a status the route answers with a body of its own (503 of /ready) keeps that body
                responses.setdefault(str(status), _error_response(why))
            responses = dict(sorted(responses.items()))
        # any other status is an error in the same shape: nothing answers a bare traceback
        responses["default"] = _error_response("Any other error, in the same shape.")
        entry["responses"] = responses
        if op is not None and op.public:
            entry["security"] = []
        paths.setdefault(path, {})[method.lower()] = entry

    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key issued with `aethera keys create`, sent as "
                    "`Authorization: Bearer <key>`.",
                }
            },
        },
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t} for t in _ordered_tags(paths, tag_order)],
    }
    return doc
