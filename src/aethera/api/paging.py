"""Paged listings (`GET /projects`, `GET /runs`): the `limit` and `cursor` query parameters and the
headers that carry the next page (`X-Next-Cursor`, `Link: <…>; rel="next"`)."""

from __future__ import annotations

import re

from aiohttp import web

from aethera import keyspace as keys
from aethera.errors import InvalidInput

DEFAULT_PAGE = 200  # a project's whole history in one answer for most clients; the cursor for the rest
MAX_PAGE = 500
_LIMIT_RE = re.compile(r"^[0-9]{1,9}\Z")


class Page:
    """The page a request asks for: `limit` items after `cursor` (None: from the newest)."""

    def __init__(self, request: web.Request) -> None:
        raw_limit = request.query.get("limit", str(DEFAULT_PAGE))
        # ASCII digits only, and few: isdigit() also accepts "²" and int() refuses over 4300 digits (a 500)
        if not _LIMIT_RE.match(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE:
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
        cursor = request.query.get("cursor")
        if cursor is not None and not keys.RUN_INDEX_NAME_RE.match(cursor):
            raise InvalidInput("cursor is not one this service issued (take X-Next-Cursor)", field="cursor")
        self.raw_limit = raw_limit
        self.limit = int(raw_limit)
        self.cursor = cursor


def link_next(
    request: web.Request, resp: web.Response, page: Page, next_cursor: str | None, **params: str
) -> web.Response:
    """Announce the next page, when there is one, keeping the request's filters (`params`)."""
    if next_cursor is not None:
        resp.headers["X-Next-Cursor"] = next_cursor
        query = {"limit": page.raw_limit, "cursor": next_cursor, **params}
        resp.headers["Link"] = f'<{request.rel_url.with_query(query)}>; rel="next"'
    return resp
