"""The token bucket against a real Redis server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from aethera.errors import InvalidInput
from aethera.security.ratelimit import KEY_PREFIX, RateLimiter


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def bucket() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_burst_then_limited_with_retry_after(redis: Redis) -> None:
    limiter = RateLimiter(redis, rate_per_s=0.5, burst=3)  # one token every 2 s
    name = bucket()
    decisions = [await limiter.hit(name) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after_s == 2


async def test_concurrent_requests_never_overdraw_the_bucket(redis: Redis) -> None:
    # the Lua script is atomic: 60 requests racing over 6 connections take exactly `burst` tokens
    limiter = RateLimiter(redis, rate_per_s=0.001, burst=10)
    name = bucket()
    decisions = await asyncio.gather(*(limiter.hit(name) for _ in range(60)))
    assert sum(d.allowed for d in decisions) == 10


async def test_buckets_are_independent(redis: Redis) -> None:
    limiter = RateLimiter(redis, rate_per_s=0.001, burst=1)
    a, b = bucket(), bucket()
    assert (await limiter.hit(a)).allowed
    assert not (await limiter.hit(a)).allowed
    assert (await limiter.hit(b)).allowed


async def test_idle_buckets_expire(redis: Redis) -> None:
    limiter = RateLimiter(redis, rate_per_s=10, burst=20)
    name = bucket()
    await limiter.hit(name)
    ttl_ms = await redis.pttl(KEY_PREFIX + name)
    # one token short of full refills in 0.1 s; the key lives that long plus a second of slack
    assert 0 < ttl_ms <= 1100


async def test_survives_a_flushed_script_cache(redis: Redis) -> None:
    limiter = RateLimiter(redis, rate_per_s=0.001, burst=2)
    name = bucket()
    assert (await limiter.hit(name)).allowed
    await redis.script_flush()  # what a restarted Redis looks like to EVALSHA
    assert (await limiter.hit(name)).allowed
    assert not (await limiter.hit(name)).allowed


async def test_zero_cost_peeks_without_taking(redis: Redis) -> None:
    limiter = RateLimiter(redis, rate_per_s=0.001, burst=2)
    name = bucket()
    assert (await limiter.hit(name, cost=0)).remaining == 2
    assert (await limiter.hit(name)).remaining == 1


async def test_bucket_names_are_checked(redis: Redis) -> None:
    limiter = RateLimiter(redis, rate_per_s=1, burst=1)
    for bad in ("", "a b", "x" * 200, "k\r\nFLUSHALL"):
        with pytest.raises(InvalidInput):
            await limiter.hit(bad)


def test_limiter_needs_positive_limits(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    with pytest.raises(ValueError):
        RateLimiter(client, rate_per_s=0, burst=1)
