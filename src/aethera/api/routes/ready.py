"""`GET /ready`: can this API process serve requests? A load balancer's readiness check.

Readiness is about this process alone: it is not stopping (SIGTERM drains it) and its storage answers,
since every read (projects, runs, results, exports) is served from storage. Workers and Redis do not
gate it: with every worker stopped, or Redis down, the API still serves everything already stored, so
taking it out of the load balancer would only turn those reads into errors too. Their state is in
`/health` and `/metrics` (`aethera_workers_alive`), where an operator and an alert read it.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from aethera.api.instrumentation import DRAIN
from aethera.api.keys import SETTINGS, STORAGE
from aethera.api.routes.health import Check, probe, storage_probe


class Readiness(msgspec.Struct, kw_only=True):
    """Answer of `GET /ready`: 200 with status "ready", or 503 with "not_ready" and why."""

    status: str  # "ready" or "not_ready"
    storage: Check
    draining: bool  # SIGTERM received: finishing the requests in flight, taking no new ones


async def ready(request: web.Request) -> web.Response:
    """Readiness of this process: storage takes a write and the process is not stopping.

    200 when this process can serve; 503 otherwise, with `storage.detail` or `draining` saying why.
    """
    drain = request.app.get(DRAIN)
    draining = drain is not None and drain.draining
    storage = await probe("storage", storage_probe(request.app[STORAGE]), request.app[SETTINGS].backend_deadline_s)
    ok = storage.ok and not draining
    body = Readiness(status="ready" if ok else "not_ready", storage=storage, draining=draining)
    return web.Response(
        status=200 if ok else 503,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ready", ready, name="ready")
