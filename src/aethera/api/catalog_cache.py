"""The dataset catalog as the API sees it: loaded once in a thread, reloaded when its file changes.

The API needs the catalog only to check, before queueing, that an AOI lies inside the land-cover
layer. Loading parses a file and may open dataset headers (GDAL), so it never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


class CatalogCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self._catalog: Any = None
        self._mtime: float | None = None
        self._lock = asyncio.Lock()

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
