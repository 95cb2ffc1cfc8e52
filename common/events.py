"""Events after commit, over the channel layer: one way out of a service, one way to wait.

A service calls ``publish_on_commit(group, event)`` inside its transaction; the event
is sent only once the transaction has committed, so nobody hears of state that was
rolled back. Waiters (long-polls, cache invalidation) use ``subscribe(group)``.
With REDIS_URL the channel layer spans every process; the embedded in-memory layer
spans the one web process it is made for.

Delivery is best effort: a lost event only delays what the pollers' and caches' own
time limits bound anyway, and a broken channel layer must not fail the write that
already committed, nor hold its answer: the sends of one commit share one deadline of
``REDIS_TIMEOUT_SECONDS`` (channels-redis's connections keep a long read timeout for its
blocking receive, so the bound is ours), and while a Redis call timed out moments ago
they are skipped (common/redis.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.redis import redis_paused, redis_timed_out, redis_timeout

logger = logging.getLogger(__name__)

# Channel-layer group names: ASCII letters, digits, hyphens, underscores and periods.
RULE_SETS_GROUP = "rule-sets"


def rule_set_group(team_id: object) -> str:
    return f"rule-sets.{team_id}"


def approval_team_group(team_id: object) -> str:
    """A team's approval changes, for its live queue."""
    return f"approvals.{team_id}"


async def _send_within_deadline(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    async with asyncio.timeout(redis_timeout()):
        for group in groups:
            await layer.group_send(group, message)


def _send(groups: list[str], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if redis_paused():
        logger.warning(
            "event.send_skipped groups=%s type=%s: Redis timed out moments ago", groups, event.get("event")
        )
        return
    try:
        async_to_sync(_send_within_deadline)(layer, groups, {"type": "veto.event", **event})
    except (TimeoutError, RedisTimeoutError):
        redis_timed_out()
        logger.warning("event.send_timed_out groups=%s type=%s", groups, event.get("event"))
    except Exception:  # noqa: BLE001 - see module docstring: best effort after commit
        logger.warning("event.send_failed groups=%s type=%s", groups, event.get("event"), exc_info=True)


def publish_on_commit(groups: list[str], event: dict[str, Any]) -> None:
    """Send ``event`` to ``groups`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _send(groups, event))


class Subscription:
    def __init__(self, layer: Any, channel: str | None) -> None:
        self._layer = layer
        self._channel = channel

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event within ``timeout`` seconds, or None."""
        if self._channel is None:
            await asyncio.sleep(timeout)
            return None
        try:
            message: dict[str, Any] = await asyncio.wait_for(self._layer.receive(self._channel), timeout)
            return message
        except TimeoutError:
            return None


@asynccontextmanager
async def subscribe(group: str) -> AsyncIterator[Subscription]:
    """Listen to ``group``. Subscribe first, then check current state, then wait: an event sent
    between the check and the wait is then not missed."""
    layer = get_channel_layer()
    if layer is None:
        yield Subscription(None, None)
        return
    channel = await layer.new_channel("wait.")
    async with asyncio.timeout(redis_timeout()):
        await layer.group_add(group, channel)
    try:
        yield Subscription(layer, channel)
    finally:
        try:
            async with asyncio.timeout(redis_timeout()):
                await layer.group_discard(group, channel)
        except Exception:  # noqa: BLE001 - the membership expires with the layer's group_expiry
            logger.warning("event.group_discard_failed group=%s", group, exc_info=True)
