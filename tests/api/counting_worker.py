"""The service's worker with a storage that counts its requests, as S3 would bill them.

Each storage call is counted under the S3 request it becomes (`save`/`save_if` PUT, `read`/`stream` GET,
`exists`/`stat` HEAD, `delete` DELETE, `list` LIST); the counts are written as JSON to
`AETHERA_TEST_COUNT_FILE` when the worker stops. Everything else is the real worker on the real backend.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from typing import Any

_REQUEST = {
    "save": "PUT",
    "save_if": "PUT",
    "read": "GET",
    "read_versioned": "GET",
    "stream": "GET",
    "exists": "HEAD",
    "stat": "HEAD",
    "delete": "DELETE",
    "list": "LIST",
}


class CountingStorage:
    def __init__(self, inner: Any, counts: collections.Counter[str]) -> None:
        self._inner = inner
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        request = _REQUEST.get(name)
        if request is None:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._counts[request] += 1
            return attr(*args, **kwargs)

        return counted


def main() -> int:
    from aethera.jobs.worker import build_worker
    from aethera.observability.logs import configure_logging
    from aethera.settings import load_settings
    from aethera.storage.factory import open_storage

    counts: collections.Counter[str] = collections.Counter()

    async def opener(settings: Any) -> Any:
        return CountingStorage(await open_storage(settings), counts)

    settings = load_settings()
    configure_logging(settings, "worker")
    try:
        build_worker(settings, open_storage=opener).run()
    finally:
        with open(os.environ["AETHERA_TEST_COUNT_FILE"], "w") as f:
            json.dump(counts, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
