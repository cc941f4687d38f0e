"""Fixtures of the operations tests: a Redis database of their own on the session's real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
