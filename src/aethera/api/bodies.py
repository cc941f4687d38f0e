"""Reading request bodies: bounded while reading, then decoded straight into a msgspec Struct."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import msgspec
from aiohttp import web

from aethera.api.middlewares import body_limit
from aethera.errors import InvalidInput, MalformedRequest, PayloadTooLarge

T = TypeVar("T")
_READ_CHUNK = 64 * 1024
_PATH_RE = re.compile(r" - at `\$\.?(.*)`$")
_MISSING_RE = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN_RE = re.compile(r"^Object contains unknown field `([^`]*)`")
_MAX_NAME_SHOWN = 64  # a client-chosen name is cut, so the answer (and a log line) stays small


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole body, refusing it as soon as it grows past `limit` (chunked bodies declare no length).

    Time is bounded on the stream itself (`middlewares.body_deadline_middleware`): a body slower than
    `AETHERA_BODY_TIMEOUT_S` makes the read below raise (408), and so does a client that disconnects (499)."""
    limit = body_limit(request) if limit is None else limit
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes", limit_bytes=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def validation_error(exc: msgspec.ValidationError, type_: type | None = None) -> InvalidInput:
    """A 422 naming the offending field, e.g. `config.capacity_mw`; an unknown field is named too, with
    the fields `type_` (the body's Struct) accepts."""
    message = str(exc)
    match = _PATH_RE.search(message)
    field = match.group(1) if match else None
    reason = _PATH_RE.sub("", message)
    unknown = _UNKNOWN_RE.match(reason)
    if unknown:
        name = unknown.group(1)
        name = name if len(name) <= _MAX_NAME_SHOWN else name[:_MAX_NAME_SHOWN] + "…"
        field = f"{field}.{name}" if field else name
        accepted = getattr(type_, "__struct_fields__", None) if not match or not match.group(1) else None
        hint = f"; use {', '.join(accepted)}" if accepted else ""
        return InvalidInput(f"unknown field '{field}' is not accepted here{hint}", field=field)
    if field is None:
        missing = _MISSING_RE.search(message)
        field = missing.group(1) if missing else None
    if field:
        return InvalidInput(f"invalid field '{field}': {reason}", field=field)
    return InvalidInput(f"invalid request body: {reason}", field=None)


async def decode_json(
    request: web.Request,
    type_: type[T],
    explain: Callable[[msgspec.ValidationError], InvalidInput | None] | None = None,
) -> T:
    """The body decoded into `type_`; `explain` may word a validation error better (None: the default)."""
    body = await read_body(request)
    if not body.strip():
        raise MalformedRequest("request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise (explain and explain(exc)) or validation_error(exc, type_) from None
    except msgspec.DecodeError as exc:
        raise MalformedRequest(f"request body is not valid JSON ({exc})") from None
    except RecursionError:  # msgspec's answer to nesting past its depth limit (a few KB of "[" do it)
        raise MalformedRequest("request body is nested too deeply") from None
