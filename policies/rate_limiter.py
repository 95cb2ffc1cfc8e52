"""Sliding-window counters for rules with ``rate_limits``.

With Redis (``REDIS_URL``), every web worker shares one counter per bucket: a Lua script prunes,
counts and records all of a rule's buckets in one atomic step, using Redis's own clock, so two
workers can never both admit the last free slot. Without Redis (the embedded single-process
mode) the counters live in the process.

A call counts against a rule's buckets when evaluation reaches that rule and its conditions
match. If a later rule then denies the call anyway, the caller hands the slots back (``refund``):
a refused call must not use up an agent's allowance. Between counting and refunding, a
concurrent call may see one slot fewer than it could have; the limiter can under-admit for
that moment, never over-admit.

Redis calls are bounded by ``REDIS_TIMEOUT_SECONDS`` (common/redis.py): a Redis that does not
answer raises a ``RedisError`` within it (at once for a moment after one timed out), and the
caller applies the rule set's ``fail_mode``.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass

from common.redis import async_redis, guarded, redis_configured
from policies.engine import RateLimit, RateLimitCheck

# KEYS: the rule's bucket keys. ARGV: member, then window_ms and max_calls per key.
# Returns 0 when the call was counted in every bucket, else the 1-based index of the full bucket.
_CHECK_AND_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[i * 2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[i * 2 + 1]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[i * 2]))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class CountedCall:
    """Where one call was counted, so that it can be handed back."""

    keys: tuple[str, ...]
    member: str


def _bucket_key(team_id: uuid.UUID, bucket: str) -> str:
    # The hash tag keeps a team's buckets in one Redis Cluster slot, as a script needs.
    return f"veto:{{{team_id}}}:rate:{bucket}"


class RedisRateLimiter:
    def __init__(self) -> None:
        self._script_sha: str | None = None

    async def hit(
        self, team_id: uuid.UUID, check: RateLimitCheck
    ) -> tuple[RateLimit | None, CountedCall | None]:
        client = async_redis()
        keys = [_bucket_key(team_id, bucket) for _, bucket in check.buckets]
        member = uuid.uuid4().hex
        args: list[str | int] = [member]
        for limit, _ in check.buckets:
            args += [limit.window_seconds * 1000, limit.max_calls]
        with guarded():
            full = int(await client.eval(_CHECK_AND_RECORD, len(keys), *keys, *args))
        if full:
            return check.buckets[full - 1][0], None
        return None, CountedCall(tuple(keys), member)

    async def refund(self, counted: list[CountedCall]) -> None:
        client = async_redis()
        with guarded():
            async with client.pipeline(transaction=False) as pipe:
                for call in counted:
                    for key in call.keys:
                        pipe.zrem(key, call.member)
                await pipe.execute()


class LocalRateLimiter:
    """The same windows in this process (embedded mode runs one web process). Callers run on one
    event loop and nothing here awaits, so each hit is atomic."""

    def __init__(self) -> None:
        self._windows: dict[str, deque[tuple[float, str]]] = {}

    async def hit(
        self, team_id: uuid.UUID, check: RateLimitCheck
    ) -> tuple[RateLimit | None, CountedCall | None]:
        now = time.monotonic()
        keys = [_bucket_key(team_id, bucket) for _, bucket in check.buckets]
        for key, (limit, _) in zip(keys, check.buckets, strict=True):
            window = self._windows.setdefault(key, deque())
            while window and window[0][0] <= now - limit.window_seconds:
                window.popleft()
            if len(window) >= limit.max_calls:
                return limit, None
        member = uuid.uuid4().hex
        for key in keys:
            self._windows[key].append((now, member))
        return None, CountedCall(tuple(keys), member)

    async def refund(self, counted: list[CountedCall]) -> None:
        for call in counted:
            for key in call.keys:
                window = self._windows.get(key)
                if window:
                    self._windows[key] = deque(entry for entry in window if entry[1] != call.member)

    def clear(self) -> None:
        self._windows.clear()


_local = LocalRateLimiter()
_redis = RedisRateLimiter()


def rate_limiter() -> RedisRateLimiter | LocalRateLimiter:
    return _redis if redis_configured() else _local
