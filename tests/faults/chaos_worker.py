"""The service's worker with a storage that fails now and then, as an unreliable network or S3 would.

Each storage call (read, write, conditional write, delete) fails with `StorageUnavailable` with the
probability `AETHERA_TEST_STORAGE_FAULT_P`, drawn from a generator seeded by
`AETHERA_TEST_STORAGE_FAULT_SEED` and the process id (so a schedule is reproducible per process).
Everything else is the real worker on the real backend.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any


class ChaosStorage:
    def __init__(self, inner: Any, probability: float, seed: int) -> None:
        self._inner = inner
        self._p = probability
        self._rng = random.Random(seed)
        self.injected = 0

    def _maybe_fail(self, what: str) -> None:
        from aethera.errors import StorageUnavailable

        if self._rng.random() < self._p:
            self.injected += 1
            raise StorageUnavailable(f"storage unreachable (injected fault in {what})")

    async def save(self, key: str, data: Any) -> Any:
        self._maybe_fail("save")
        return await self._inner.save(key, data)

    async def save_if(self, key: str, data: bytes, expected_etag: str | None) -> Any:
        self._maybe_fail("save_if")
        return await self._inner.save_if(key, data, expected_etag)

    async def read(self, key: str) -> bytes:
        self._maybe_fail("read")
        return bytes(await self._inner.read(key))

    async def read_versioned(self, key: str) -> tuple[bytes, str]:
        self._maybe_fail("read_versioned")
        return tuple(await self._inner.read_versioned(key))  # type: ignore[return-value]

    async def delete(self, key: str) -> None:
        self._maybe_fail("delete")
        await self._inner.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main() -> int:
    from aethera.jobs.worker import build_worker
    from aethera.observability.logs import configure_logging
    from aethera.settings import load_settings
    from aethera.storage.factory import open_storage

    probability = float(os.environ.get("AETHERA_TEST_STORAGE_FAULT_P", "0"))
    seed = int(os.environ.get("AETHERA_TEST_STORAGE_FAULT_SEED", "0")) ^ os.getpid()

    async def opener(settings: Any) -> Any:
        return ChaosStorage(await open_storage(settings), probability, seed)

    settings = load_settings()
    configure_logging(settings, "worker")
    build_worker(settings, open_storage=opener).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
