"""Redis clients for the request path, all bounded by ``settings.REDIS_TIMEOUT_SECONDS``.

A Redis that is frozen (its connections open, nothing answering, as in a network partition)
must cost a request no more than that bound: connecting and every answer time out after it, and
a timed-out command is not tried again (only a dropped connection is reconnected once, as after a
Redis restart). The caller then takes its "Redis unreachable" path: rate limits and session
history per the rule set's ``fail_mode``, the key-failure counter in the process.

After a call timed out, this process does not ask Redis again for ``PAUSE_SECONDS``: calls made
through ``guarded()`` fail at once with ``RedisPaused`` (a ``ConnectionError``, so callers' usual
"unreachable" path applies), and best-effort notifications after a commit (the event path's
PUBLISH, common/events.py) are skipped. So a request pays the bound at most once, not once per
Redis call, and only the first calls after the pause probe Redis again: recovery needs nobody.

The channel layer's blocking receive keeps its own longer read timeout (settings
``CHANNEL_LAYERS``); nothing sends to it yet (the live dashboards will, as an event-path sink
bounded like the PUBLISH).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as redis_asyncio
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

# After a Redis call timed out, this process does not ask Redis again for this many seconds.
PAUSE_SECONDS = 1.0
# Connections of one event loop's client (a web process's requests share it); more calls in
# flight wait for one. Opening a connection costs redis-py 2-3 ms of this process's CPU, so a
# burst opening hundreds at once ran past the connect timeout by itself; one single-threaded
# Redis answers a loop's calls as fast over fifty.
ASYNC_POOL_SIZE = 50

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)
_paused_until = 0.0


class RedisPaused(RedisConnectionError):
    """Not asked: a Redis call timed out less than ``PAUSE_SECONDS`` ago."""


def redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def redis_timeout() -> float:
    return float(settings.REDIS_TIMEOUT_SECONDS)


def _bounded_options() -> dict[str, Any]:
    return {"socket_timeout": redis_timeout(), "socket_connect_timeout": redis_timeout()}


def async_redis() -> redis_asyncio.Redis:
    """The running loop's client for ``settings.REDIS_URL`` (a client's connections belong to the
    loop that made them)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # A blocking pool: past its size, a call waits (within the bound) for a connection to be
        # free. The default pool refuses it at once (MaxConnectionsError, 100 in flight), which
        # denied calls as "state store unreachable" under load.
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=ASYNC_POOL_SIZE,
            timeout=redis_timeout(),
            health_check_interval=30,
            retry=AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **_bounded_options(),
        )
        client = redis_asyncio.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


@lru_cache(maxsize=1)
def sync_redis() -> redis.Redis:
    """One thread-safe client (a pool) for worker threads, bounded like ``async_redis``."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        **_bounded_options(),
    )


def reset_clients() -> None:
    """Forget the clients (tests that point REDIS_URL or the timeout elsewhere)."""
    global _paused_until
    _clients.clear()
    sync_redis.cache_clear()
    _paused_until = 0.0


def redis_paused() -> bool:
    """Whether a Redis call timed out less than ``PAUSE_SECONDS`` ago (Redis is not asked now)."""
    return time.monotonic() < _paused_until


def redis_timed_out() -> None:
    """A Redis call timed out: do not ask Redis again for ``PAUSE_SECONDS``."""
    global _paused_until
    _paused_until = time.monotonic() + PAUSE_SECONDS


@contextmanager
def guarded() -> Iterator[None]:
    """Around a request path's Redis call: raises ``RedisPaused`` at once while paused, and pauses
    when the call times out (its error is raised on)."""
    if redis_paused():
        raise RedisPaused("Redis timed out moments ago; not asked again yet")
    try:
        yield
    except RedisTimeoutError:
        redis_timed_out()
        raise
