"""Typed keys of the application's state (`app[STORAGE]`), one module so every route sees the same."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from aethera.api.catalog_cache import CatalogCache
from aethera.jobs.queue import JobQueue
from aethera.settings import Settings
from aethera.storage.base import Storage

SETTINGS = web.AppKey("settings", Settings)
STORAGE = web.AppKey("storage", Storage)
REDIS = web.AppKey("redis", Redis)
QUEUE = web.AppKey("queue", JobQueue)
CATALOG = web.AppKey("catalog", CatalogCache)
EXPORT_ENABLED = web.AppKey("export_enabled", bool)

# per-request state
REQUEST_ID = web.RequestKey("request_id", str)


class AppBackends:
    """The application's backends under the names `jobs.creation.Deps` asks for."""

    def __init__(self, app: web.Application) -> None:
        self.storage, self.redis = app[STORAGE], app[REDIS]
        self.settings, self.queue = app[SETTINGS], app[QUEUE]
