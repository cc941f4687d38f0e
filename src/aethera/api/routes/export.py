"""`GET|HEAD /runs/{run_id}/export`: the run as one ZIP, streamed from storage, resumable.

The archive's layout is computed before the first byte (`aethera.export.plan_export`), so the answer
carries an exact `Content-Length`, a strong `ETag` and `Accept-Ranges: bytes`, and a single `Range`
(`bytes=a-b`, `bytes=a-`, `bytes=-n`) is served as `206` with exactly those bytes. Several ranges in one
request are answered with the whole archive (`200`), which HTTP allows and every download manager
handles; `If-Range` with an entity tag or date that no longer matches also gets the whole archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import UTC
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web

from aethera.api.keys import REQUEST_ID, STORAGE
from aethera.errors import RangeNotSatisfiable
from aethera.export import ExportPlan, PlanCache, iter_archive, plan_export
from aethera.security.auth import tenant_of

log = logging.getLogger(__name__)

EXPORT_PATH = "/runs/{run_id}/export"
PLAN_CACHE = web.AppKey("export_plan_cache", PlanCache)

# Bytes read from storage per chunk: large enough that per-chunk overhead (a thread hop locally, a
# socket read on S3) is small next to copying it, small enough that 64 downloads stay in a few MiB.
CHUNK_BYTES = 256 * 1024

_RANGE = re.compile(r"^\s*bytes\s*=\s*(.+)$", re.IGNORECASE)
_SPEC = re.compile(r"^(\d*)-(\d*)$")


class RangeUnsatisfiable(Exception):
    """The request's Range selects no byte of the archive (answered 416)."""


# No archive reaches 2**63 bytes; a longer position stands for "past the end" (int() would refuse one of
# more than 4300 digits, which a Range header has room for, with a ValueError).
_MAX_DIGITS = 19
_PAST_ANY_ARCHIVE = 1 << 64


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"  # leading zeros are allowed and change nothing
    return int(digits) if len(digits) <= _MAX_DIGITS else _PAST_ANY_ARCHIVE


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range `header` asks for, as (start, end exclusive), or None to send everything.

    None for a malformed header, another unit, or several ranges (RFC 9110 §14.2 lets a server ignore
    Range); raises `RangeUnsatisfiable` when a well-formed single range selects nothing.
    """
    match = _RANGE.match(header)
    if not match:
        return None
    specs = [s.strip() for s in match.group(1).split(",") if s.strip()]
    if len(specs) != 1:
        return None
    spec = _SPEC.match(specs[0])
    if not spec:
        return None
    first, last = spec.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = _position(last)
        if suffix == 0:
            raise RangeUnsatisfiable
        return max(0, size - suffix), size
    start = _position(first)
    if last and _position(last) < start:
        return None  # "5-3" is invalid syntax, not an empty range
    if start >= size:
        raise RangeUnsatisfiable
    end = size if not last else min(_position(last) + 1, size)
    return start, end


def _if_range_matches(value: str, plan: ExportPlan) -> bool:
    """RFC 9110 §13.1.5: a strong entity tag equal to ours, or exactly our Last-Modified date."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == plan.etag  # weak tags never match in this strong comparison
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: a year or zone past C's ints
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when == plan.modified


def _none_match(value: str, plan: ExportPlan) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    tags = [t.strip().removeprefix("W/") for t in value.split(",")]
    return "*" in tags or plan.etag in tags


def _headers(plan: ExportPlan) -> dict[str, str]:
    return {
        "ETag": plan.etag,
        "Last-Modified": format_datetime(plan.modified.astimezone(UTC), usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{plan.filename}"',
        # the archive can be large and the API may require credentials: no shared caches
        "Cache-Control": "private, no-cache",
    }


async def export_run(request: web.Request) -> web.StreamResponse:
    """GET and HEAD /runs/{run_id}/export."""
    storage = request.app[STORAGE]
    plan = await plan_export(
        storage, request.match_info["run_id"], request.app.get(PLAN_CACHE), tenant=tenant_of(request)
    )
    headers = _headers(plan)

    inm = request.headers.get("If-None-Match")
    if inm is not None and _none_match(inm, plan):
        return web.Response(status=304, headers=headers)

    start, end, status = 0, plan.size, 200
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if range_header is not None and (if_range is None or _if_range_matches(if_range, plan)):
        try:
            wanted = parse_range(range_header, plan.size)
        except RangeUnsatisfiable:
            raise RangeNotSatisfiable(
                f"the requested range lies outside the archive ({plan.size} bytes)",
                headers={**headers, "Content-Range": f"bytes */{plan.size}"},
            ) from None
        if wanted is not None:
            start, end, status = *wanted, 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{plan.size}"

    request_id = request.get(REQUEST_ID)
    if request_id:  # the request-id middleware sets it after the handler, too late for a stream
        headers["X-Request-ID"] = str(request_id)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = "application/zip"
    response.content_length = end - start
    await response.prepare(request)
    if request.method == "HEAD":
        await response.write_eof()
        return response

    try:
        async with contextlib.aclosing(iter_archive(plan, storage, start, end, chunk_size=CHUNK_BYTES)) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
    except ConnectionError:
        # the client went away; leaving the `async with` closed the storage stream it was reading
        log.debug("export of run %s: client disconnected", plan.run_id)
        return response
    except asyncio.CancelledError:
        # the same, on a server that cancels the handlers of lost connections (handler_cancellation)
        log.debug("export of run %s: client disconnected (handler cancelled)", plan.run_id)
        raise
    except Exception as exc:
        # Headers (and an exact Content-Length) are already sent, so an error answer is impossible:
        # cut the connection, and the client sees an incomplete download rather than a wrong archive.
        log.error("export of run %s aborted: %s", plan.run_id, getattr(exc, "detail", type(exc).__name__))
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    """Register GET and HEAD /runs/{run_id}/export (the app must hold `STORAGE`)."""
    app[PLAN_CACHE] = PlanCache()
    app.router.add_get(EXPORT_PATH, export_run, allow_head=True, name="run_export")
