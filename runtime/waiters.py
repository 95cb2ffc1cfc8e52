"""Long-polls on approvals and on the active rule set: one subscription per process, many waiters.

A thousand agents long-polling their approvals must not mean a thousand subscriptions. Each
web process keeps its waiters in memory (per event loop), and the event path (common.events)
wakes the waiters of an approval that changed (``approval.resolved``, ``.expired``,
``.escalated``) or of a team whose rule set was published (``policy.published``); they then
re-read. The events reach every process over Redis pub/sub when REDIS_URL is set (one listener
per process, ``common.events.listen``; why pub/sub and not the channel layer is said there),
and this process's loops at once otherwise. ``register`` (from RuntimeConfig.ready) subscribes.

The event only notifies; it is not what a waiter depends on. A notice is lost when Redis is
down at resolve time (or while the listener reconnects), so each loop also looks in the
database every ``APPROVAL_WAIT_RECHECK_SECONDS`` (one query for all of its waiters' approvals,
while it has any) and wakes those no longer pending; and when the listener (re)subscribes,
every waiter is woken (``on_missed``), since it may have missed notices meanwhile. A rule-set
poll missing its notice answers at the end of its wait (at most a minute), as it always did.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings

from common import events, metrics
from common.events import Event, EventType
from common.request_id import without_request_id

logger = logging.getLogger(__name__)

RECHECK_CHUNK = 1000


@dataclass
class _LoopWaiters:
    """One event loop's waiters, by approval (with the task that rechecks them in the database)
    and by team for the rule set."""

    events: dict[uuid.UUID, set[asyncio.Event]] = field(default_factory=dict)
    recheck: asyncio.Task[None] | None = None
    rule_sets: dict[uuid.UUID, set[asyncio.Event]] = field(default_factory=dict)


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
def _registered(
    registry: dict[uuid.UUID, set[asyncio.Event]], key: uuid.UUID, *, kind: str
) -> Iterator[asyncio.Event]:
    """A new event in ``registry`` under ``key`` for as long as the block runs (a long-poll of
    ``kind`` held, for /metrics)."""
    event = asyncio.Event()
    registry.setdefault(key, set()).add(event)
    held = metrics.LONG_POLLS[kind]
    held.inc()
    try:
        yield event
    finally:
        held.dec()
        waiting = registry.get(key)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del registry[key]


@contextmanager
def approval_change_waiter(approval_id: uuid.UUID) -> Iterator[asyncio.Event]:
    """An event set when ``approval_id`` changes (or may have: a waiter re-reads to find out).
    Register before reading the approval, so a change between the read and the wait is not missed."""
    loop = asyncio.get_running_loop()
    state = _state(loop)
    with _registered(state.events, approval_id, kind="approval") as event:
        if state.recheck is None or state.recheck.done():
            # Lives as long as anyone waits, for every waiter: no one request's id.
            state.recheck = loop.create_task(_recheck_while_waited_on(loop), context=without_request_id())
        yield event


def _wake(loop: asyncio.AbstractEventLoop, approval_id: uuid.UUID) -> None:
    for event in _registry(loop).get(approval_id, ()):
        event.set()


def _wake_all(loop: asyncio.AbstractEventLoop) -> None:
    state = _state(loop)
    for waiting in [*state.events.values(), *state.rule_sets.values()]:
        for event in waiting:
            event.set()


@contextmanager
def rule_set_change_waiter(team_id: uuid.UUID) -> Iterator[asyncio.Event]:
    """An event set when ``team_id`` publishes a rule-set version (or may have). Register before
    reading the active version, so a publish between the read and the wait is not missed."""
    with _registered(_state(asyncio.get_running_loop()).rule_sets, team_id, kind="rule_set") as event:
        yield event


async def woken_within(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` was set within ``timeout`` seconds (it is cleared for the next wait)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    event.clear()
    return True


def _wake_rule_set(loop: asyncio.AbstractEventLoop, team_id: uuid.UUID) -> None:
    for event in _state(loop).rule_sets.get(team_id, ()):
        event.set()


def _on_every_loop(callback: Callable[..., None], *args: object) -> None:
    # Called from whichever thread dispatched the event; each loop wakes its own waiters.
    for loop in list(_waiters.keys()):
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback, loop, *args)
            except RuntimeError:
                pass  # closed meanwhile: nobody waits there any more


def _approval_changed(event: Event) -> None:
    _on_every_loop(_wake, uuid.UUID(str(event.data["approval_id"])))


def _rule_set_published(event: Event) -> None:
    _on_every_loop(_wake_rule_set, event.team_id)


def _maybe_missed() -> None:
    _on_every_loop(_wake_all)


def register() -> None:
    """Subscribe the waiters to the event path (RuntimeConfig.ready, once per process)."""
    events.subscribe(
        _approval_changed,
        EventType.APPROVAL_RESOLVED,
        EventType.APPROVAL_EXPIRED,
        # A new deadline: the waiter re-reads it and sleeps until then.
        EventType.APPROVAL_ESCALATED,
    )
    events.subscribe(_rule_set_published, EventType.POLICY_PUBLISHED)
    events.on_missed(_maybe_missed)
