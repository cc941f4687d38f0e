"""Per-key rate limiting: a token bucket in Redis, updated by one atomic Lua script.

Each bucket holds up to `burst` tokens and refills at `rate_per_s`; a request takes one. A caller that
reserves a token before costly work may give it back afterwards (`refund`) in the same script. The script
reads Redis's own clock (TIME), so every API process shares one notion of time and one bucket per key
whatever their clocks say, and the read-refill-take-write happens atomically with no race between
processes. A bucket left alone expires once it would be full again, so idle keys cost no memory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from redis.asyncio import Redis

from aethera.errors import InvalidInput
from aethera.keyspace import RATE_LIMIT_PREFIX as KEY_PREFIX

_BUCKET_RE = re.compile(r"[A-Za-z0-9:._-]{1,128}\Z")

# KEYS[1] bucket; ARGV rate (tokens/s), burst, cost (negative gives tokens back, never past burst). Returns {allowed 0|1, tokens left (string),
# microseconds until `cost` tokens are available (0 when allowed)}. Floats go back as strings because
# Redis truncates Lua numbers to integers on the way out.
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate / 1000000)
local allowed = 0
local wait_us = 0
if tokens >= cost then
  tokens = math.min(burst, tokens - cost)
  allowed = 1
else
  wait_us = math.ceil((cost - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {allowed, tostring(tokens), wait_us}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int  # whole tokens left after this request
    retry_after_s: int  # 0 when allowed; else whole seconds (at least 1) until a retry can succeed


class RateLimiter:
    """Token buckets in Redis; one bucket per API key (or per client address when auth is off)."""

    def __init__(self, redis: Redis, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be positive; leave the limiter out to turn limiting off")
        self.rate_per_s = rate_per_s
        self.burst = burst
        # register_script: EVALSHA, falling back to EVAL on NOSCRIPT (a restarted Redis forgot the script)
        self._script = redis.register_script(_TOKEN_BUCKET_LUA)

    @staticmethod
    def key(bucket: str) -> str:
        if not _BUCKET_RE.match(bucket):
            raise InvalidInput("invalid rate-limit bucket")
        return KEY_PREFIX + bucket

    async def hit(self, bucket: str, cost: int = 1) -> Decision:
        """Take `cost` tokens from `bucket`. Redis errors propagate: the caller decides what an outage means."""
        allowed, tokens, wait_us = await self._script(
            keys=[self.key(bucket)], args=[repr(float(self.rate_per_s)), self.burst, cost]
        )
        remaining = int(float(tokens))
        if int(allowed) == 1:
            return Decision(allowed=True, remaining=remaining, retry_after_s=0)
        return Decision(allowed=False, remaining=remaining, retry_after_s=max(1, math.ceil(int(wait_us) / 1e6)))

    async def refund(self, bucket: str) -> None:
        """Give back one token taken by `hit` (the bucket never holds more than `burst`)."""
        await self.hit(bucket, cost=-1)
