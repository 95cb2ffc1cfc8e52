"""A per-process cache with a time-to-live, for reads on the hot path.

Each process keeps its own copy; writers clear the local copy at once and other
processes converge within the TTL.

The TTL is a hard bound: a value is never served once the TTL has passed since the
load that produced it *started* (so a value read just before a write commits is gone
within the TTL of that commit). Revocation of API keys is documented in those terms.

``get_or_load`` is the async read used by the runtime gateway. It is single-flight
(concurrent misses share one load) and refreshes ahead: once half the TTL has passed,
the next read starts one background load and keeps being served the current value,
which is still inside its TTL. Under steady traffic an entry is therefore replaced
before it expires and no request waits for the database when a TTL runs out (before,
every request in flight at expiry went to the database at once: a latency spike per
TTL, measured: see README). A refresh that answers None with ``cache_none=False`` (a key
revoked meanwhile) drops the entry instead of leaving the old value to be served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

logger = logging.getLogger(__name__)

# A background refresh starts once this fraction of the TTL has passed.
REFRESH_AHEAD_FRACTION = 0.5


class Missing:
    """The result of a cache miss (values themselves may be None)."""


MISSING = Missing()


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float | Callable[[], float]) -> None:
        self._ttl = ttl_seconds
        # key -> (when the load that produced the value started, value)
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._background: set[asyncio.Task[Any]] = set()  # keeps refresh tasks referenced

    def ttl(self) -> float:
        return self._ttl() if callable(self._ttl) else self._ttl

    def get(self, key: K) -> V | Missing:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= self.ttl():
            return MISSING
        return entry[1]

    def get_stale(self, key: K) -> V | Missing:
        """The last value stored, expired or not (to re-validate instead of rebuild)."""
        entry = self._entries.get(key)
        return MISSING if entry is None else entry[1]

    def put(self, key: K, value: V, *, loaded_at: float | None = None) -> None:
        """Store ``value``; ``loaded_at`` (``time.monotonic()`` when its read started) dates it,
        so that the TTL counts from the read, not from when the read happened to finish."""
        if self.ttl() > 0:
            self._entries[key] = (time.monotonic() if loaded_at is None else loaded_at, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]], *, cache_none: bool = True) -> V:
        """The cached value while inside its TTL (refreshed ahead in the background); otherwise
        one shared ``load()``."""
        entry = self._entries.get(key)
        if entry is not None:
            age = time.monotonic() - entry[0]
            ttl = self.ttl()
            if age < ttl:
                if age >= ttl * REFRESH_AHEAD_FRACTION and key not in self._loading:
                    self._start_load(key, load, cache_none)
                return entry[1]
        in_flight = self._loading.get(key) or self._start_load(key, load, cache_none)
        return await asyncio.shield(in_flight)

    def _start_load(self, key: K, load: Callable[[], Awaitable[V]], cache_none: bool) -> asyncio.Future[V]:
        # Registered before the task first runs, so every caller in this tick sees it in flight.
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        task = asyncio.ensure_future(self._load(key, load, cache_none, future))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return future

    async def _load(
        self, key: K, load: Callable[[], Awaitable[V]], cache_none: bool, future: asyncio.Future[V]
    ) -> None:
        started = time.monotonic()
        try:
            value = await load()
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits; logged if nobody does
            if not future.cancelled():
                future.set_exception(exc)
            future.add_done_callback(_log_unretrieved)
        else:
            if value is not None or cache_none:
                self.put(key, value, loaded_at=started)
            else:
                # The source says "no such value" now: the old one must not outlive this answer.
                self.forget(key)
            if not future.cancelled():
                future.set_result(value)
        finally:
            self._loading.pop(key, None)


def _log_unretrieved(future: asyncio.Future[Any]) -> None:
    # A background refresh may have no waiter: the current value is served until its TTL runs
    # out, and the next read then loads (and retries). Retrieving the exception silences asyncio.
    exc = future.exception()
    if exc is not None:
        logger.warning("cache.load_failed error=%r", exc)
