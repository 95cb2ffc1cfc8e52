"""Long-polls on approvals: one channel-layer subscription per process, many waiters.

A thousand agents long-polling their approvals must not mean a thousand channel-layer
subscriptions. Each web process runs one listener on the approvals group (started by the
gateway) and wakes the local waiters of the approval that changed; they then re-read it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from common.events import APPROVALS_GROUP, subscribe

logger = logging.getLogger(__name__)

_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[uuid.UUID, set[asyncio.Event]]] = (
    weakref.WeakKeyDictionary()
)


def _registry() -> dict[uuid.UUID, set[asyncio.Event]]:
    loop = asyncio.get_running_loop()
    registry = _waiters.get(loop)
    if registry is None:
        registry = _waiters[loop] = {}
    return registry


@contextmanager
def approval_change_waiter(approval_id: uuid.UUID) -> Iterator[asyncio.Event]:
    """An event set when ``approval_id`` changes. Register before reading the approval, so a
    change between the read and the wait is not missed."""
    registry = _registry()
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


def notify_approval_changed(approval_id: uuid.UUID) -> None:
    for event in _registry().get(approval_id, ()):
        event.set()


async def listen_for_approval_changes() -> None:
    """Runs for the life of a web process (see veto_cloud/asgi.py)."""
    while True:
        try:
            async with subscribe(APPROVALS_GROUP) as events:
                while True:
                    event = await events.next(3600)
                    if event is None or not event.get("approval_id"):
                        continue
                    try:
                        notify_approval_changed(uuid.UUID(event["approval_id"]))
                    except ValueError:
                        continue
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the channel layer may be briefly away; keep listening
            logger.warning("approval_listener.failed; retrying in 5 s", exc_info=True)
            await asyncio.sleep(5)
