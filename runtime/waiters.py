"""Long-polls on approvals: one subscription per process, many waiters.

A thousand agents long-polling their approvals must not mean a thousand subscriptions. Each
web process keeps its waiters in memory (per event loop) and one listener wakes the waiters
of an approval that changed; they then re-read it.

The change notice goes over Redis pub/sub when REDIS_URL is set (every process hears every
change the moment it is published) and straight to this process's loops otherwise. It is not
the channel layer: under bursts of resolves, channel-layer delivery (a queue per process,
popped one message per round trip) fell seconds behind, while pub/sub fans out at once.

Pub/sub only notifies; it is not what a waiter depends on. A notice is lost when Redis is down
at resolve time (or while the listener reconnects), so each loop also looks in the database
every ``APPROVAL_WAIT_RECHECK_SECONDS`` (one query for all of its waiters' approvals, while it
has any) and wakes those no longer pending; and the listener wakes every waiter when it
(re)subscribes, since it may have missed notices meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis
import redis.asyncio as redis_asyncio
from django.conf import settings
from django.db import transaction

from common.redis import redis_configured, redis_paused, redis_timed_out, sync_redis

logger = logging.getLogger(__name__)

CHANGES_CHANNEL = "veto:approvals:changed"
LISTEN_RETRY_MAX_SECONDS = 2.0

RECHECK_CHUNK = 1000


@dataclass
class _LoopWaiters:
    """One event loop's waiters, by approval, and the task that rechecks them in the database."""

    events: dict[uuid.UUID, set[asyncio.Event]] = field(default_factory=dict)
    recheck: asyncio.Task[None] | None = None


_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaiters] = weakref.WeakKeyDictionary()


def _state(loop: asyncio.AbstractEventLoop) -> _LoopWaiters:
    state = _waiters.get(loop)
    if state is None:
        state = _waiters[loop] = _LoopWaiters()
    return state


def _registry(loop: asyncio.AbstractEventLoop) -> dict[uuid.UUID, set[asyncio.Event]]:
    return _state(loop).events


def _no_longer_pending(approval_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    from approvals.models import Approval

    found: list[uuid.UUID] = []
    for start in range(0, len(approval_ids), RECHECK_CHUNK):
        chunk = approval_ids[start : start + RECHECK_CHUNK]
        found += (
            Approval.objects.filter(pk__in=chunk)
            .exclude(status=Approval.Status.PENDING)
            .values_list("pk", flat=True)
        )
    return found


async def _recheck_while_waited_on(loop: asyncio.AbstractEventLoop) -> None:
    """Every recheck interval, wake the waiters whose approval is no longer pending; ends when the
    loop has no waiters left (the next waiter starts it again)."""
    from common.database import run_in_db_thread

    registry = _registry(loop)
    failures = 0
    while registry:
        await asyncio.sleep(settings.APPROVAL_WAIT_RECHECK_SECONDS)
        if not registry:
            break
        try:
            settled = await run_in_db_thread(_no_longer_pending, list(registry))
        except Exception:  # noqa: BLE001 - the database may be briefly away; look again next time
            failures += 1
            # One warning per outage (the polls themselves answer 503 meanwhile); then quiet.
            logger.log(
                logging.WARNING if failures == 1 else logging.DEBUG,
                "approval_waiters.recheck_failed waiting=%d",
                len(registry),
                exc_info=failures == 1,
            )
            continue
        failures = 0
        for approval_id in settled:
            _wake(loop, approval_id)


@contextmanager
def approval_change_waiter(approval_id: uuid.UUID) -> Iterator[asyncio.Event]:
    """An event set when ``approval_id`` changes (or may have: a waiter re-reads to find out).
    Register before reading the approval, so a change between the read and the wait is not missed."""
    loop = asyncio.get_running_loop()
    state = _state(loop)
    registry = state.events
    event = asyncio.Event()
    registry.setdefault(approval_id, set()).add(event)
    if state.recheck is None or state.recheck.done():
        state.recheck = loop.create_task(_recheck_while_waited_on(loop))
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


def _wake_all(loop: asyncio.AbstractEventLoop) -> None:
    for approval_id in list(_registry(loop)):
        _wake(loop, approval_id)


def _publish_change(approval_id: uuid.UUID) -> None:
    if redis_configured():
        # The publish runs after a resolve's commit: a Redis that is down or frozen must not hold
        # the resolve's answer (bounded by REDIS_TIMEOUT_SECONDS, skipped while a Redis call timed
        # out moments ago; the waiters' recheck covers the lost notice).
        if redis_paused():
            logger.warning("approval_change.publish_skipped id=%s: Redis timed out moments ago", approval_id)
            return
        try:
            sync_redis().publish(CHANGES_CHANNEL, str(approval_id))
        except redis.TimeoutError:
            redis_timed_out()
            logger.warning("approval_change.publish_timed_out id=%s", approval_id)
        except redis.RedisError:  # best effort: waiters also recheck the database
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
    """Runs for the life of a web process (see veto_cloud/asgi.py); with Redis only. Reconnects
    while Redis is away (at most ``LISTEN_RETRY_MAX_SECONDS`` apart) and, once subscribed again,
    wakes every waiter: notices published meanwhile were lost."""
    if not redis_configured():
        return
    loop = asyncio.get_running_loop()
    failures = 0
    while True:
        try:
            # Its own connection, without a read timeout: a subscriber waits for as long as it takes.
            client = redis_asyncio.Redis.from_url(
                settings.REDIS_URL, socket_timeout=None, socket_connect_timeout=2.0
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANGES_CHANNEL)
                if failures:
                    logger.info("approval_listener.resubscribed after=%d failures", failures)
                failures = 0
                _wake_all(loop)
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
            failures += 1
            delay = min(LISTEN_RETRY_MAX_SECONDS, 0.25 * 2**failures)
            # One warning per outage, with the cause; the retries after it are quiet.
            logger.log(
                logging.WARNING if failures == 1 else logging.DEBUG,
                "approval_listener.failed; retrying in %.1f s",
                delay,
                exc_info=failures == 1,
            )
            await asyncio.sleep(delay)
