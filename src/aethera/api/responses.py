"""JSON answers: msgspec-encoded bodies (Structs, lists of them, or raw stored JSON bytes)."""

from __future__ import annotations

import msgspec
from aiohttp import web

_encoder = msgspec.json.Encoder()


def encode_json(obj: object) -> bytes:
    return _encoder.encode(obj)


def json_response(obj: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(obj), content_type="application/json")


def raw_json_response(body: bytes, content_type: str = "application/json", status: int = 200) -> web.Response:
    """Stored JSON served as is (never decoded and re-encoded)."""
    return web.Response(status=status, body=body, content_type=content_type)
