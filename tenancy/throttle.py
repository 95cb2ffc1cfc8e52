"""Failed API-key lookups, counted per client address; too many lock the address out for a while.

Why: a key is a long random secret, but nothing stopped a client from trying keys as fast as the
server answers (600 random keys in 4 s went unnoticed). Past ``API_KEY_FAILURES_PER_ADDRESS``
failed lookups of unknown keys in ``API_KEY_FAILURE_WINDOW_SECONDS``, the address is
answered 429 ``too_many_failed_keys`` with ``Retry-After`` for ``API_KEY_LOCKOUT_SECONDS``, on
the gateway and the Django API alike, and the lockout is logged once (``api_key.lockout``).

A key that exists but is revoked (or whose person left the team) is answered 401 and not
counted: it is no guess, and an agent left running with one behind a shared NAT would otherwise
keep every neighbour locked out. Telling the two apart costs one indexed query, on failures only.

While an address is locked out, a *valid* key from it is refused too: otherwise a guess that
hits would still answer 200, and the lockout would hide nothing from the guesser. The price is
that agents sharing that address (one NAT) wait out the lockout; keep it short.

Cost on the hot path: a valid key pays one membership test on an (almost always empty) dict.
Only a failed lookup counts, in Redis when ``REDIS_URL`` is set (one script call, shared by every
process) and in the process otherwise. A process learns of a lockout another process set at the
next failed lookup it sees from that address. If Redis cannot be reached, the process counts on
its own rather than fail the request.

The address is the ASGI client address: uvicorn runs with ``--proxy-headers`` and takes
``X-Forwarded-For`` only from the addresses in ``FORWARDED_ALLOW_IPS`` (127.0.0.1 by default),
so set that to your proxy's address and nothing wider, or clients can choose their own address.
IPv6 addresses count by their /64 network (one host usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from rest_framework import status

from common.errors import ApplicationError
from common.redis import async_redis, redis_configured, sync_redis

logger = logging.getLogger(__name__)

_KEY_PREFIX = "veto:api-key-failures:"
# Bounds the in-process counters (random source addresses must not grow memory without end).
_MAX_TRACKED_ADDRESSES = 10_000

# KEYS: the address's failure counter, its lockout flag. ARGV: limit, window ms, lockout ms.
# Returns {remaining lockout ms (0: not locked), 1 if this call started the lockout}.
_COUNT_FAILURE = """
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return {locked, 0} end
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if failures > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return {tonumber(ARGV[3]), 1}
end
return {0, 0}
"""


class TooManyFailedKeys(ApplicationError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "too_many_failed_keys"

    def __init__(self, retry_after_seconds: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after_seconds))
        super().__init__(
            f"Too many requests with unknown API keys from this address; "
            f"try again in {self.retry_after} s.",
            details={"retry_after_seconds": self.retry_after},
        )
        # Sent as response headers by the gateway and the Django API's exception handler.
        self.headers = {"Retry-After": str(self.retry_after)}


# address -> time.monotonic() when its lockout ends, as this process knows it. Empty nearly always:
# callers test it before anything else (``if throttle.lockouts: ...``), so valid keys pay one test.
lockouts: dict[str, float] = {}
# address -> (window start, failures in it): the counters when there is no Redis.
_failures: dict[str, tuple[float, int]] = {}
_lock = threading.Lock()  # the Django API counts from worker threads, the gateway from the loop


@lru_cache(maxsize=4096)
def _ipv6_network(address: str) -> str:
    try:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    except ValueError:
        return address


def address_key(address: str | None) -> str:
    """Where a client's failures are counted: its address, an IPv6 one by its /64."""
    if not address:
        return "unknown"
    return _ipv6_network(address) if ":" in address else address


def refuse_if_locked_out(address: str) -> None:
    """Raise ``TooManyFailedKeys`` while this process knows ``address`` to be locked out."""
    if address in lockouts:
        remaining = lockouts[address] - time.monotonic()
        if remaining > 0:
            raise TooManyFailedKeys(remaining)
        lockouts.pop(address, None)


def _lock_out_locally(address: str, seconds: float) -> TooManyFailedKeys:
    lockouts[address] = time.monotonic() + seconds
    if len(lockouts) > _MAX_TRACKED_ADDRESSES:
        now = time.monotonic()
        for stale in [a for a, until in lockouts.items() if until <= now]:
            lockouts.pop(stale, None)
    return TooManyFailedKeys(seconds)


def _log_lockout(address: str) -> None:
    logger.warning(
        "auth.lockout kind=api_key address=%s failures=%d window_s=%s lockout_s=%s",
        address,
        settings.API_KEY_FAILURES_PER_ADDRESS,
        settings.API_KEY_FAILURE_WINDOW_SECONDS,
        settings.API_KEY_LOCKOUT_SECONDS,
    )


def _count_in_process(address: str) -> float:
    """Count one failure here; the lockout's length in seconds if it is (now) locked, else 0."""
    now = time.monotonic()
    window = settings.API_KEY_FAILURE_WINDOW_SECONDS
    with _lock:
        until = lockouts.get(address, 0.0)
        if until > now:
            return until - now
        start, failures = _failures.get(address, (now, 0))
        if now - start >= window:
            start, failures = now, 0
        failures += 1
        if failures <= settings.API_KEY_FAILURES_PER_ADDRESS:
            _failures[address] = (start, failures)
            if len(_failures) > _MAX_TRACKED_ADDRESSES:
                for old in [a for a, (s, _) in _failures.items() if now - s >= window] or [
                    next(iter(_failures))
                ]:
                    _failures.pop(old, None)
            return 0.0
        _failures.pop(address, None)
    _log_lockout(address)
    return float(settings.API_KEY_LOCKOUT_SECONDS)


def _script_arguments(address: str) -> tuple[list[str], list[int]]:
    keys = [f"{_KEY_PREFIX}{address}:count", f"{_KEY_PREFIX}{address}:locked"]
    arguments = [
        settings.API_KEY_FAILURES_PER_ADDRESS,
        int(settings.API_KEY_FAILURE_WINDOW_SECONDS * 1000),
        int(settings.API_KEY_LOCKOUT_SECONDS * 1000),
    ]
    return keys, arguments


def _from_script(address: str, answer: Any) -> float:
    remaining_ms, started = int(answer[0]), int(answer[1])
    if started:
        _log_lockout(address)
    return remaining_ms / 1000.0


def _sync_redis() -> redis.Redis:
    # One client (a thread-safe pool) for the Django API's worker threads, bounded by
    # REDIS_TIMEOUT_SECONDS like the gateway's (common/redis.py).
    return sync_redis()


def failed_lookup(address: str) -> TooManyFailedKeys | None:
    """Count a failed key lookup from ``address`` (the Django API's path); the error to raise
    when the address is (now) locked out, else None (the caller answers 401)."""
    if redis_configured():
        keys, arguments = _script_arguments(address)
        try:
            answer = _sync_redis().eval(_COUNT_FAILURE, 2, *keys, *arguments)
            locked = _from_script(address, answer)
        except redis.RedisError as exc:
            logger.warning("api_key.failure_count_unavailable error=%r: counting in this process", exc)
            locked = _count_in_process(address)
    else:
        locked = _count_in_process(address)
    return _lock_out_locally(address, locked) if locked > 0 else None


async def failed_lookup_async(address: str) -> TooManyFailedKeys | None:
    """As ``failed_lookup``, for the gateway (Redis on the event loop)."""
    if redis_configured():
        keys, arguments = _script_arguments(address)
        try:
            answer = await async_redis().eval(_COUNT_FAILURE, 2, *keys, *arguments)
            locked = _from_script(address, answer)
        except (redis.RedisError, OSError) as exc:
            logger.warning("api_key.failure_count_unavailable error=%r: counting in this process", exc)
            locked = _count_in_process(address)
    else:
        locked = _count_in_process(address)
    return _lock_out_locally(address, locked) if locked > 0 else None


def forget_failed_lookups() -> None:
    """Clear every count and lockout (tests; an operator unlocking by hand: see README)."""
    with _lock:
        _failures.clear()
        lockouts.clear()
    if redis_configured():
        client = _sync_redis()
        for key in client.scan_iter(match=f"{_KEY_PREFIX}*", count=500):
            client.delete(key)
