"""The one event path: typed events, announced once, after commit, each in its team's order.

Every state change a consumer may care about is an ``Event``: its ``type``, its team, its place
in the team's order (``stream`` + ``sequence``) and a few ids (``data``; never tool arguments or
secrets). The order is the audit chains' (audit.models.ChainStream): a team's decisions are
numbered gaplessly in the ``decisions`` stream, its approval actions and policy changes in the
``events`` stream. One chain entry is one event (an entry whose decision raised an approval is
two: ``decision.created`` and ``approval.created``, one sequence), so the chains are the durable
record a consumer resumes from (``audit.selectors.team_events_after``) and this path only
notifies.

Publishing. ``publish(event)`` inside a transaction announces it once that transaction commits,
never when it rolls back (``transaction.on_commit``); the decision writer, which commits on its
own connection, calls ``dispatch``/``dispatch_on_loop`` itself right after its commit, once per
batch. The publishers are the two chain appenders: ``audit.trail.audit_event_append`` (every
``events`` entry) and ``runtime.writer`` (every decision row), so nothing can change a team's
governance without being announced.

Subscribing. ``subscribe(handler, *types)`` registers a handler, from ``AppConfig.ready()`` so
that every process holds the same ones:

* ``Reach.EVERY_PROCESS`` (the default): state each process keeps for itself, such as caches
  and long-poll waiters. The handler runs in the publishing process at once, and in every other
  process through one Redis pub/sub channel (``channel()``) and that process's one listener
  (``listen``, started with the gateway in veto_cloud/asgi.py). Without REDIS_URL (embedded
  mode) there is one process, and local dispatch is all there is.
* ``Reach.EVERY_PROCESS_ON_DEMAND``: as ``EVERY_PROCESS``, but the events cross to other
  processes only while some process asks for them (``demand``), because most of the time nobody
  anywhere does: the API's event streams (runtime/event_stream.py) hear every decision, yet
  without an open stream, publishing and decoding each decision in every process was ~90 us of
  a web worker's CPU per validated call (benchmarks/profile_validate.py). A process holding
  streams says so on the channel at once and every ``DEMAND_SECONDS``; the others publish those
  types until ``DEMAND_LAPSES_SECONDS`` after the last notice. A notice that comes late loses
  what was committed meanwhile, as a lost publish would: the handler must catch up from the
  database (the streams do: a gap, or their periodic look at the chain heads).
* ``Reach.ONE_PROCESS``: a sink that is itself shared, such as channel-layer groups for browsers
  or a webhook outbox: it runs once, in the publishing process, after commit.

A type nobody subscribes to costs nothing: it is not built by the writer and not sent to Redis
(the handlers being the same in every process, no other process wants it either). Adding a
sink is one ``subscribe`` call.

Handlers run where the dispatch happens: a request's thread after its commit, the writer's
event loop or thread, or the listener's event loop. They must be quick and never block (hand
slow work to a task or a loop); one that raises is logged and the others still run. Nothing
here fails the write that already committed.

Lossy by design. Pub/sub is not the channel layer on purpose: under bursts, channel-layer
delivery (a queue per process, one message per round trip) fell seconds behind, while pub/sub
fans out at once. A notice is lost when Redis is away at publish time, while the pause after a
Redis timeout holds (common/redis.py: every call here is bounded by REDIS_TIMEOUT_SECONDS), or
while a listener reconnects; so a listener that (re)subscribes calls the ``on_missed`` handlers
(waiters then look again), caches keep their periodic re-check, and anything that must see
every event resumes from the last sequence it saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

import redis
import redis.asyncio as redis_asyncio
from django.conf import settings
from django.db import transaction

from common.redis import (
    async_redis,
    redis_configured,
    redis_paused,
    redis_timed_out,
    redis_timeout,
    sync_redis,
)
from common.request_id import without_request_id

logger = logging.getLogger(__name__)


def channel() -> str:
    """The one pub/sub channel of the event path: ``<REDIS_PUBSUB_PREFIX>:events`` (pub/sub
    ignores database numbers, so the prefix keeps installations on one Redis server apart)."""
    return f"{settings.REDIS_PUBSUB_PREFIX}:events"


LISTEN_RETRY_MAX_SECONDS = 2.0


class EventType(StrEnum):
    # The decisions stream: one per decision row; with approval.created at the same sequence
    # when the decision raised an approval.
    DECISION_CREATED = "decision.created"
    APPROVAL_CREATED = "approval.created"
    # The events stream: one per entry of the governance trail.
    APPROVAL_VOTED = "approval.voted"  # one approval towards a quorum not yet reached
    APPROVAL_ESCALATED = "approval.escalated"
    APPROVAL_REFUSED = "approval.refused"  # someone not allowed to decide tried to
    APPROVAL_RESOLVED = "approval.resolved"  # approved (quorum reached) or denied
    APPROVAL_EXPIRED = "approval.expired"
    POLICY_PUBLISHED = "policy.published"  # a rule-set version published or rolled back to
    TOOL_POLICY_CHANGED = "tool_policy.changed"  # in effect at once, so a publish too
    # A team's members, roles, approver groups or options changed (team_settings); ``data``
    # names the change and, for one person's membership, their ``user_id``.
    TEAM_CHANGED = "team.changed"
    # A webhook endpoint disabled after failing (410 Gone, or every attempt for 5 days): an
    # entry of the governance trail, so the team's other endpoints and its admins hear of it.
    WEBHOOK_FAILED = "webhook.failed"


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change, at ``sequence`` in the team's ``stream`` (audit.models.ChainStream)."""

    type: EventType
    team_id: uuid.UUID
    stream: str
    sequence: int
    occurred_at: datetime
    # Ids and small enum-like values only (JSON-ready: strings, numbers, None).
    data: Mapping[str, str | int | bool | None]


class Reach(Enum):
    EVERY_PROCESS = "every_process"
    EVERY_PROCESS_ON_DEMAND = "every_process_on_demand"
    ONE_PROCESS = "one_process"


_ACROSS = (Reach.EVERY_PROCESS, Reach.EVERY_PROCESS_ON_DEMAND)
# How often a process holding on-demand handlers' clients says so, and how long after its last
# notice the others keep publishing to it (three notices lost in a row).
DEMAND_SECONDS = 1.0
DEMAND_LAPSES_SECONDS = 3.5


Handler = Callable[[Event], None]

# Replaced, never mutated: dispatch reads them without a lock from any thread.
_handlers: dict[EventType, tuple[tuple[Handler, Reach], ...]] = {}
_everywhere: frozenset[EventType] = frozenset()
# Of those, the types with an EVERY_PROCESS handler: they always cross.
_always_across: frozenset[EventType] = frozenset()
# Until when (time.monotonic) another process asked for the on-demand types.
_demanded_until = 0.0
_wanted: frozenset[EventType] = frozenset()
_missed_handlers: tuple[Callable[[], None], ...] = ()


def _reindex() -> None:
    global _everywhere, _always_across, _wanted
    _wanted = frozenset(t for t, hs in _handlers.items() if hs)
    _everywhere = frozenset(t for t, hs in _handlers.items() if any(r in _ACROSS for _, r in hs))
    _always_across = frozenset(
        t for t, hs in _handlers.items() if any(r is Reach.EVERY_PROCESS for _, r in hs)
    )


def _crossing_types() -> frozenset[EventType]:
    """The types other processes' handlers want now."""
    return _everywhere if time.monotonic() < _demanded_until else _always_across


def _crossing(events: Iterable[Event]) -> list[Event]:
    types = _crossing_types()
    return [e for e in events if e.type in types]


def subscribe(handler: Handler, *types: EventType, reach: Reach = Reach.EVERY_PROCESS) -> Callable[[], None]:
    """Call ``handler`` with every committed event of ``types``; returns what unsubscribes it
    (for tests: processes subscribe once, from ``AppConfig.ready()``)."""
    for event_type in types:
        _handlers[event_type] = (*_handlers.get(event_type, ()), (handler, reach))
    _reindex()

    def unsubscribe() -> None:
        for event_type in types:
            _handlers[event_type] = tuple(h for h in _handlers.get(event_type, ()) if h != (handler, reach))
        _reindex()

    return unsubscribe


def on_missed(handler: Callable[[], None]) -> Callable[[], None]:
    """Call ``handler`` when this process may have missed other processes' events (its listener
    (re)subscribed after Redis was away); returns what unregisters it."""
    global _missed_handlers
    _missed_handlers = (*_missed_handlers, handler)

    def unregister() -> None:
        global _missed_handlers
        _missed_handlers = tuple(h for h in _missed_handlers if h is not handler)

    return unregister


def wanted() -> frozenset[EventType]:
    """The types somebody subscribes to: a publisher need not build the others."""
    return _wanted


# --- publishing ---------------------------------------------------------------------------------


def publish(event: Event) -> None:
    """Announce ``event`` once the current transaction commits (at once outside one); dropped
    with the transaction if it rolls back."""
    if event.type in _wanted:
        transaction.on_commit(lambda: dispatch((event,)))


def publish_many(events: Sequence[Event]) -> None:
    """``publish`` for several events, in their order: one commit hook and one PUBLISH for them
    all (a sweep that expires a thousand approvals sends one message, not a thousand)."""
    wanted_events = tuple(e for e in events if e.type in _wanted)
    if wanted_events:
        transaction.on_commit(lambda: dispatch(wanted_events))


def dispatch(events: Sequence[Event]) -> None:
    """After a commit, from a synchronous caller: this process's handlers, then one PUBLISH for
    the other processes (bounded by REDIS_TIMEOUT_SECONDS). Never raises."""
    _run_handlers(events, local=True)
    payload = _payload(events)
    if payload is not None:
        _publish_sync(payload, len(events))


def dispatch_on_loop(events: Sequence[Event]) -> None:
    """``dispatch`` for a caller on an event loop (the async decision writer): the handlers at
    once, the PUBLISH in the background, so the loop never waits on Redis (batches that commit
    while one is being sent go out together in the next)."""
    _run_handlers(events, local=True)
    if redis_configured():
        types = _crossing_types()  # a look, not a copy: the sender builds the payload once
        if any(e.type in types for e in events):
            _sender(asyncio.get_running_loop()).add(events)


def _run_handlers(events: Iterable[Event], *, local: bool) -> None:
    for event in events:
        for handler, reach in _handlers.get(event.type, ()):
            if not local and reach not in _ACROSS:
                continue
            try:
                handler(event)
            except Exception:  # noqa: BLE001 - a handler must not fail the commit, nor the others
                logger.exception("event.handler_failed type=%s handler=%r", event.type, handler)


# --- across processes ---------------------------------------------------------------------------


def _origin() -> str:
    # Per process, also after a fork (a worker forked from a parent that imported this module).
    pid = os.getpid()
    if _origin_of[0] != pid:
        _origin_of[:] = [pid, f"{uuid.uuid4().hex}:{pid}"]
    return str(_origin_of[1])


_origin_of: list[Any] = [None, ""]


def encode_event(event: Event) -> list[Any]:
    return [
        event.type.value,
        str(event.team_id),
        event.stream,
        event.sequence,
        event.occurred_at.isoformat(),
        dict(event.data),
    ]


def decode_event(raw: list[Any]) -> Event:
    event_type, team_id, stream, sequence, occurred_at, data = raw
    return Event(
        EventType(event_type),
        uuid.UUID(team_id),
        stream,
        int(sequence),
        datetime.fromisoformat(occurred_at),
        data,
    )


def _payload(events: Sequence[Event]) -> bytes | None:
    """The one message for the other processes: the events their handlers want, or None."""
    if not redis_configured():
        return None
    sent = [encode_event(e) for e in _crossing(events)]
    if not sent:
        return None
    return json.dumps({"origin": _origin(), "events": sent}, separators=(",", ":")).encode()


def _publish_sync(payload: bytes, count: int) -> None:
    # After a commit: a Redis that is down or frozen must not hold the committed write's answer.
    if redis_paused():
        logger.warning("event.publish_skipped count=%d: Redis timed out moments ago", count)
        return
    try:
        sync_redis().publish(channel(), payload)
    except redis.TimeoutError:
        redis_timed_out()
        logger.warning("event.publish_timed_out count=%d", count)
    except redis.RedisError:
        logger.warning("event.publish_failed count=%d", count, exc_info=True)


class _LoopSender:
    """One loop's background PUBLISH: whatever accumulated while the previous one was sent goes
    out as one message."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, events: Sequence[Event]) -> None:
        self._pending.extend(events)
        if self._task is None:
            # Publishes many requests' events: no one request's id on its log lines.
            self._task = self._loop.create_task(self._drain(), context=without_request_id())

    async def _drain(self) -> None:
        try:
            while self._pending:
                events, self._pending = self._pending, []
                payload = _payload(events)
                if payload is not None:
                    await _publish_async(payload, len(events))
        finally:
            self._task = None


async def _publish_async(payload: bytes, count: int) -> None:
    if redis_paused():
        logger.warning("event.publish_skipped count=%d: Redis timed out moments ago", count)
        return
    try:
        async with asyncio.timeout(redis_timeout()):
            await async_redis().publish(channel(), payload)
    except (TimeoutError, redis.TimeoutError):
        redis_timed_out()
        logger.warning("event.publish_timed_out count=%d", count)
    except redis.RedisError:
        logger.warning("event.publish_failed count=%d", count, exc_info=True)


_senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSender] = weakref.WeakKeyDictionary()


def _sender(loop: asyncio.AbstractEventLoop) -> _LoopSender:
    sender = _senders.get(loop)
    if sender is None:
        sender = _senders[loop] = _LoopSender(loop)
    return sender


def _receive(message: bytes) -> None:
    global _demanded_until
    try:
        decoded = json.loads(message)
        if decoded.get("origin") == _origin():
            return  # published here: its handlers ran at the commit
        if decoded.get("demand"):
            _demanded_until = time.monotonic() + DEMAND_LAPSES_SECONDS
            return
        events = [decode_event(raw) for raw in decoded["events"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        logger.warning("event.message_unreadable", exc_info=True)
        return
    _run_handlers(events, local=False)


# --- asking for the on-demand types -------------------------------------------------------------

_demanding: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def demand(while_: Callable[[], bool]) -> None:
    """From a loop whose process holds clients of an on-demand handler (with Redis only): tell the
    other processes now, and every ``DEMAND_SECONDS`` for as long as ``while_()`` holds."""
    if not redis_configured():
        return
    loop = asyncio.get_running_loop()
    task = _demanding.get(loop)
    if task is not None and not task.done():
        return
    _demanding[loop] = loop.create_task(_demand(while_), context=without_request_id())


async def _demand(while_: Callable[[], bool]) -> None:
    payload = json.dumps({"origin": _origin(), "demand": True}, separators=(",", ":")).encode()
    while while_():
        await _publish_async(payload, 0)
        await asyncio.sleep(DEMAND_SECONDS)


def _missed() -> None:
    for handler in _missed_handlers:
        try:
            handler()
        except Exception:  # noqa: BLE001 - as for event handlers
            logger.exception("event.missed_handler_failed handler=%r", handler)


async def listen() -> None:
    """This process's one listener (veto_cloud/asgi.py starts it with the gateway); with Redis
    only. Runs the ``EVERY_PROCESS`` handlers for other processes' events on this loop.
    Reconnects while Redis is away (at most ``LISTEN_RETRY_MAX_SECONDS`` apart) and, once
    subscribed again, calls the ``on_missed`` handlers: events published meanwhile were lost."""
    if not redis_configured():
        return
    failures = 0
    while True:
        try:
            # Its own connection, without a read timeout: a subscriber waits for as long as it takes.
            client = redis_asyncio.Redis.from_url(
                settings.REDIS_URL, socket_timeout=None, socket_connect_timeout=2.0
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel())
                if failures:
                    logger.info("event_listener.resubscribed after=%d failures", failures)
                failures = 0
                _missed()
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        _receive(message["data"])
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
                "event_listener.failed; retrying in %.1f s",
                delay,
                exc_info=failures == 1,
            )
            await asyncio.sleep(delay)
