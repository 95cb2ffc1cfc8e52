"""Long-polls on approvals: one subscription per process, many waiters.

A thousand agents long-polling their approvals must not mean a thousand subscriptions. Each
web process keeps its waiters in memory (per event loop) and one listener wakes the waiters
of an approval that changed; they then re-read it.

The change notice goes over Redis pub/sub when REDIS_URL is set (every process hears every
change the moment it is published) and straight to this process's loops otherwise. It is not
the channel layer: under bursts of resolves, channel-layer delivery (a queue per process,
popped one message per round trip) fell seconds behind, while pub/sub fans out at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import redis
import redis.asyncio as redis_asyncio
from django.conf import settings
from django.db import transaction

from common.redis import redis_configured

logger = logging.getLogger(__name__)

CHANGES_CHANNEL = "veto:approvals:changed"

_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[uuid.UUID, set[asyncio.Event]]] = (
    weakref.WeakKeyDictionary()
)


def _registry(loop: asyncio.AbstractEventLoop) -> dict[uuid.UUID, set[asyncio.Event]]:
    registry = _waiters.get(loop)
    if registry is None:
        registry = _waiters[loop] = {}
    return registry


@contextmanager
def approval_change_waiter(approval_id: uuid.UUID) -> Iterator[asyncio.Event]:
    """An event set when ``approval_id`` changes. Register before reading the approval, so a
    change between the read and the wait is not missed."""
    registry = _registry(asyncio.get_running_loop())
    event = asyncio.Event()
    registry.setdefault(approval_id, set()).add(event)
    try:
        yield event
    finally:
        waiting = registry.get(approval_id)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del registry[approval_id]


def _wake(loop: asyncio.AbstractEventLoop, approval_id: uuid.UUID) -> None:
    for event in _registry(loop).get(approval_id, ()):
        event.set()


@lru_cache(maxsize=1)
def _sync_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _publish_change(approval_id: uuid.UUID) -> None:
    if redis_configured():
        try:
            _sync_redis().publish(CHANGES_CHANNEL, str(approval_id))
        except redis.RedisError:  # best effort: waiters also re-read on their own deadline
            logger.warning("approval_change.publish_failed id=%s", approval_id, exc_info=True)
        return
    # Embedded mode: the waiters are in this process, on loops other than this thread's.
    for loop in list(_waiters.keys()):
        if not loop.is_closed():
            loop.call_soon_threadsafe(_wake, loop, approval_id)


def approval_changed_on_commit(approval_id: uuid.UUID) -> None:
    """Wake the long-polls of ``approval_id`` once the current transaction commits."""
    transaction.on_commit(lambda: _publish_change(approval_id))


async def listen_for_approval_changes() -> None:
    """Runs for the life of a web process (see veto_cloud/asgi.py); with Redis only."""
    if not redis_configured():
        return
    loop = asyncio.get_running_loop()
    while True:
        try:
            # Its own connection, without a read timeout: a subscriber waits for as long as it takes.
            client = redis_asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(CHANGES_CHANNEL)
            try:
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    try:
                        _wake(loop, uuid.UUID(message["data"].decode()))
                    except (ValueError, AttributeError):
                        continue
            finally:
                await pubsub.aclose()
                await client.aclose()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - Redis may be briefly away; keep listening
            logger.warning("approval_listener.failed; retrying in 5 s", exc_info=True)
            await asyncio.sleep(5)
