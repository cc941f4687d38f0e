"""The dataset catalog as the API sees it: loaded once in a thread, reloaded when its file changes.

The API needs the catalog to check, before queueing, that an AOI lies inside the land-cover layer,
and to draw the base map layers. Loading parses a file and may open dataset headers (GDAL), so it
never runs on the event loop; what is derived from a catalog (`derived`) is kept until it reloads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class CatalogCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self._catalog: Any = None
        self._mtime: float | None = None
        self._lock = asyncio.Lock()
        self._derived: dict[str, tuple[Any, Any]] = {}  # name -> (the catalog it came from, value)
        self._derived_lock = asyncio.Lock()

    def _current_mtime(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime
        except OSError:
            return None

    async def get(self) -> Any:
        """The catalog (`aethera.data.catalog.load_catalog`); its errors (ConfigError, DatasetError) pass."""
        async with self._lock:
            mtime = await asyncio.to_thread(self._current_mtime)
            if self._catalog is None or mtime != self._mtime:
                from aethera.data.catalog import load_catalog

                self._catalog = await asyncio.to_thread(load_catalog, self.path)
                self._mtime = mtime
            return self._catalog

    async def derived(self, name: str, build: Callable[[Any], T]) -> T:
        """`build(catalog)` (run in a thread), computed once per loaded catalog."""
        catalog = await self.get()
        async with self._derived_lock:  # one build at a time: concurrent first requests share it
            cached = self._derived.get(name)
            if cached is not None and cached[0] is catalog:
                return cast(T, cached[1])  # stored under `name` by this same `build`
            value = await asyncio.to_thread(build, catalog)
            self._derived[name] = (catalog, value)
            return value
