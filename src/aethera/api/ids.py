"""Path parameters checked before use: anything that is not a 32-char lowercase hex id is a 404.

An id that cannot exist is answered like an unknown one, and never reaches storage or Redis, so a
hostile value such as `../x` cannot name a file or a key.
"""

from __future__ import annotations

from aiohttp import web

from aethera.errors import NotFound
from aethera.keyspace import ID_RE


def path_id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info.get(name, "")
    if not ID_RE.match(value):
        raise NotFound(f"{what} not found")
    return value
