"""Fixtures of the operations tests: a Redis database of their own on the session's real Redis."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

# A database number no other test package uses, so flushing it touches nothing of theirs.
OPS_DB = 13


@pytest.fixture
def ops_redis_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{OPS_DB}"


@pytest.fixture
async def ops_redis(ops_redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(ops_redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


# The service test kit of tests/api (settings on a test Redis database, the sample catalog, worker
# processes, a poller), loaded once under one module name for every folder that uses it.
def _load_kit() -> Any:
    if "servicekit" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "api" / "servicekit.py"
        spec = importlib.util.spec_from_file_location("servicekit", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["servicekit"] = module
        spec.loader.exec_module(module)
    return sys.modules["servicekit"]


kit = _load_kit()
sample_catalog = kit.sample_catalog
redis_db = kit.redis_db
make_service = kit.make_service
