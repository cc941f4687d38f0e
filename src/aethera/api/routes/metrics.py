"""`GET /metrics`: Prometheus text exposition of the API process and of all workers (through Redis).

Only for keys with the `admin` scope: the figures are global (every tenant's runs) and name worker
hosts and pids, which no tenant should see. With auth off every caller has every scope (development).
"""

from __future__ import annotations

from aiohttp import web

from aethera.api.instrumentation import METRICS
from aethera.api.keys import REDIS, SETTINGS
from aethera.keyspace import QUEUE_NAME
from aethera.observability.metrics import CONTENT_TYPE
from aethera.security.auth import require_scope


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics.

    Requests by route and status with latency histograms, requests in flight, export bytes sent (this
    API process); runs by status, run and step duration histograms and worker heartbeats (recorded by
    every worker in Redis); queue depth and workers alive (read at scrape time). The text format is
    Prometheus' 0.0.4. Needs an API key with the `admin` scope (403 for tenant keys).
    """
    require_scope(request, "admin")
    app = request.app
    body = await app[METRICS].exposition(
        app.get(REDIS), queue_key=QUEUE_NAME, workers_seen_within_s=app[SETTINGS].run_lease_s
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics, name="metrics")
