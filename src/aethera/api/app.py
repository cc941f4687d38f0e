"""The aiohttp application: `create_app(settings)` and `serve(settings)`.

Resources (storage, the Redis client of the task records, the job queue) are opened in `cleanup_ctx`
generators, so each is closed on shutdown only if it was opened. The Redis connections are lazy: the
API starts while Redis is down and `/health` says so.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from aethera.api import keys as K
from aethera.api.aoi_input import start_checkers
from aethera.api.catalog_cache import CatalogCache
from aethera.api.cors import setup_cors
from aethera.api.errors import error_middleware
from aethera.api.final_cache import FINAL_ANSWERS, FinalAnswers
from aethera.api.instrumentation import observability_middleware, setup_instrumentation
from aethera.api.lifecycle import run_api
from aethera.api.middlewares import (
    REQUEST_ID_HEADER,
    body_deadline_middleware,
    body_limit_middleware,
)
from aethera.api.routes import batches, docs, health, layers, metrics, projects, ready, runs, tasks, uploads
from aethera.data.gdal_io import configure_gdal, gdal_options
from aethera.errors import ConfigError, StorageUnavailable
from aethera.jobs.queue import JobQueue, connection_pool
from aethera.observability.logs import configure_logging
from aethera.security.auth import make_auth_middleware, setup_security
from aethera.settings import Settings, load_settings
from aethera.storage.deadline import BoundedStorage

log = logging.getLogger(__name__)

EXPORT_MODULE = "aethera.api.routes.export"
STARTUP_DEADLINES = 3  # the storage check at start-up may take this many backend deadlines


def _redis_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set: the API needs a Redis (`aethera dev` starts one)")
    return settings.redis_url


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    from aethera.storage.factory import open_storage

    settings = app[K.SETTINGS]
    # start-up (client, credentials, the bucket check) gets a few deadlines; a hung endpoint stops it
    # with a message instead of holding it for the client's own timeouts
    startup_s = STARTUP_DEADLINES * settings.backend_deadline_s
    try:
        async with asyncio.timeout(startup_s):
            backend = await open_storage(settings)
    except TimeoutError:
        raise StorageUnavailable(f"storage did not answer within {startup_s:g} s at start-up") from None
    # every storage call of a request is bounded by the deadline: 503 past it (storage/deadline.py)
    storage = BoundedStorage(backend, settings.backend_deadline_s)
    app[K.STORAGE] = storage
    yield
    await storage.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[K.SETTINGS]
    pool = connection_pool(_redis_url(settings), deadline_s=settings.backend_deadline_s)
    redis = Redis(connection_pool=pool)
    app[K.REDIS] = redis
    yield
    await redis.aclose(close_connection_pool=True)


async def _queue_ctx(app: web.Application) -> AsyncIterator[None]:
    queue = JobQueue(_redis_url(app[K.SETTINGS]), deadline_s=app[K.SETTINGS].backend_deadline_s)
    app[K.QUEUE] = queue
    yield
    await queue.close()


def _add_export_routes(app: web.Application) -> bool:
    """The streaming ZIP export lives in its own module; wire it in when this deployment has it."""
    if importlib.util.find_spec(EXPORT_MODULE) is None:
        return False
    module = importlib.import_module(EXPORT_MODULE)
    module.add_routes(app)
    return True


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or load_settings()
    _redis_url(settings)
    app = web.Application(
        # auth before the body limit: a caller without a key learns nothing, not even the limit
        # the body deadline right inside the error middleware: it holds for every route, and its 408
        # and 499 are answered (and logged) like any other error
        # the observability middleware picks the request id too, so it comes first
        middlewares=[
            observability_middleware,
            error_middleware,
            body_deadline_middleware,
            make_auth_middleware(settings, rate_limit=True),  # the rate limit once the caller is known
            body_limit_middleware,
        ],
        # a backstop: handlers read bodies through api.bodies.read_body, bounded per route
        client_max_size=max(settings.max_body_bytes, settings.max_upload_bytes) + 1,
    )
    app[K.SETTINGS] = settings
    # the AOI check and the base layers read catalog layers, which may be on S3 or a web server
    configure_gdal(gdal_options(settings))
    app[K.CATALOG] = CatalogCache(settings.datasets)
    start_checkers()  # the AOI check threads prepare their transformations before the first request
    app[FINAL_ANSWERS] = FinalAnswers()
    setup_security(app, settings)  # reads the keys file: a missing or malformed one stops start-up here
    setup_instrumentation(app)
    app.cleanup_ctx.extend([_storage_ctx, _redis_ctx, _queue_ctx])
    for module in (health, ready, metrics, docs, projects, runs, tasks, uploads, layers, batches):
        module.add_routes(app)
    app[K.EXPORT_ENABLED] = _add_export_routes(app)
    setup_cors(app, settings.cors_origins)
    return app


def serve(settings: Settings | None = None) -> int:
    """Run the API on `AETHERA_HOST:AETHERA_PORT` until SIGINT/SIGTERM (blocking)."""
    settings = settings or load_settings()
    configure_logging(settings, "api")
    app = create_app(settings)
    # SIGTERM: stop listening, give in-flight requests and exports the grace period, then run cleanup
    run_api(app, host=settings.host, port=settings.port, grace_s=settings.shutdown_grace_s)
    return 0


__all__ = ["REQUEST_ID_HEADER", "create_app", "serve"]
