"""Server-Sent Events for API clients (``GET /v1/events/stream``, runtime/endpoints/events.py): one
hub per process on the event path (common.events), one bounded queue per open stream.

The hub subscribes to every event type, ``Reach.EVERY_PROCESS`` (``register``, from
RuntimeConfig.ready), so a stream on any process hears what any process committed: locally at
once, from other processes through common.events' Redis listener. Its handler runs wherever the
dispatch happens (a request's thread, the writer's loop or thread, the listener's loop), so it
only hands the event to the loops that hold streams (``call_soon_threadsafe``, or a plain call
on that very loop); each loop appends it to the queues of its streams of that team.

The event path notifies, the chains record (``audit.selectors.team_events_after``). Each stream
keeps a ``Cursor``: how far it is through its team's two gapless streams (``decisions``,
``events``). A live event is the next one (sent), one already sent (dropped), or further on (a
gap: what lies between is read from the database, in order, then the event is placed again).
The stream reads from the database too:

* when it starts from a ``Last-Event-ID`` (everything after it, then live);
* when its queue overflows (a client reading slower than events arrive): the queue is emptied
  and the stream resumes from the database, so a slow client costs rows read, not memory;
* when the listener may have missed messages (``on_missed``: Redis was away);
* when its cursor is still behind the team's chain heads of the previous look (each loop looks
  once per heartbeat interval, one query for all its streams): a lost last notice is not
  followed by a gap to reveal it (a publish skipped while Redis was paused, a Celery worker's
  expiry in embedded mode, where no notice crosses processes).

A cursor ``d<decisions>.e<events>`` (``d12.e3``) says: every event through decisions sequence 12
and events sequence 3 was sent. A decision that raised an approval is two events at one
sequence (``decision.created``, then ``approval.created``); between the two the cursor is
``d12p.e3`` ("p": that decision's approval.created is still to come), so a client that
stopped between them gets exactly the second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

from django.conf import settings

from common import events, metrics
from common.database import run_in_db_thread
from common.errors import ApplicationError, InvalidInput, ServiceUnavailable, is_database_unavailable
from common.events import Event, EventType
from common.request_id import without_request_id

logger = logging.getLogger(__name__)

DECISIONS = "decisions"
TRAIL = "events"
# Rows read from the database per stream and page when a stream catches up.
FILL_PAGE = 500
# How long a client waits before reconnecting (the ``retry:`` field), in milliseconds.
RETRY_MILLISECONDS = 2000


# --- the cursor -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a stream is through its team's two streams (see the module docstring)."""

    decisions: int
    events: int
    # decision.created at ``decisions`` was sent; its approval.created was not yet.
    approval_pending: bool = False

    def __str__(self) -> str:
        return f"d{self.decisions}{'p' if self.approval_pending else ''}.e{self.events}"

    def behind(self, heads: Cursor) -> bool:
        """Whether some event through ``heads`` is not yet past this cursor."""
        return (
            self.decisions < heads.decisions
            or (self.decisions == heads.decisions and self.approval_pending)
            or self.events < heads.events
        )


_CURSOR = re.compile(r"d(\d{1,18})(p?)\.e(\d{1,18})")
CURSOR_FORMAT = "d<decisions sequence>.e<events sequence>, as sent in the stream's id: lines (d12.e3)"


def parse_cursor(raw: str, *, source: str = "Last-Event-ID") -> Cursor:
    """The cursor in ``raw`` (an ``id:`` this stream sent); a 400 saying what and where otherwise."""
    found = _CURSOR.fullmatch(raw.strip())
    if found is None or (found[2] and int(found[1]) == 0):
        raise InvalidInput(
            f"{source}: {raw[:60]!r} is not a cursor of this stream; expected {CURSOR_FORMAT}",
            details={"field": source, "expected": CURSOR_FORMAT},
        )
    return Cursor(int(found[1]), int(found[3]), approval_pending=bool(found[2]))


class Place(Enum):
    NEXT = "next"  # the next event after the cursor: send it
    SEEN = "seen"  # at or before the cursor: already sent
    GAP = "gap"  # further on: something between was not heard


def place(cursor: Cursor, event: Event) -> Place:
    """Where ``event`` stands relative to ``cursor``."""
    if event.stream == TRAIL:
        if event.sequence <= cursor.events:
            return Place.SEEN
        return Place.NEXT if event.sequence == cursor.events + 1 else Place.GAP
    if event.stream != DECISIONS:
        return Place.SEEN  # a stream this endpoint does not serve (yet)
    if cursor.approval_pending:
        if event.sequence < cursor.decisions:
            return Place.SEEN
        if event.sequence == cursor.decisions:
            return Place.NEXT if event.type is EventType.APPROVAL_CREATED else Place.SEEN
        return Place.GAP  # the pending approval.created was not heard
    if event.sequence <= cursor.decisions:
        return Place.SEEN
    if event.sequence == cursor.decisions + 1 and event.type is EventType.DECISION_CREATED:
        return Place.NEXT
    return Place.GAP  # further on, or an approval.created whose decision.created was not heard


def advance(cursor: Cursor, event: Event) -> Cursor:
    """The cursor once ``event`` (placed NEXT, or read from the database) is past."""
    if event.stream == TRAIL:
        return replace(cursor, events=event.sequence)
    if event.stream != DECISIONS:
        return cursor
    if event.type is EventType.DECISION_CREATED:
        return replace(cursor, decisions=event.sequence, approval_pending=bool(event.data.get("approval_id")))
    return replace(cursor, decisions=event.sequence, approval_pending=False)


# --- reads ------------------------------------------------------------------------------------


def chain_heads(*, team_id: uuid.UUID) -> Cursor:
    """The team's chain heads as a cursor: where a stream without ``Last-Event-ID`` starts."""
    from audit.models import ChainHead

    heads = dict(ChainHead.objects.filter(team_id=team_id).values_list("stream", "sequence"))
    return Cursor(heads.get(DECISIONS, 0), heads.get(TRAIL, 0))


def chain_heads_of(*, team_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Cursor]:
    """``chain_heads`` for many teams in one query (a loop's look for lost last notices)."""
    from audit.models import ChainHead

    found: dict[uuid.UUID, dict[str, int]] = {}
    for team_id, stream, sequence in ChainHead.objects.filter(team_id__in=list(team_ids)).values_list(
        "team_id", "stream", "sequence"
    ):
        found.setdefault(team_id, {})[stream] = sequence
    return {team_id: Cursor(h.get(DECISIONS, 0), h.get(TRAIL, 0)) for team_id, h in found.items()}


_STREAMS = (DECISIONS, TRAIL)


def events_after(*, team_id: uuid.UUID, cursor: Cursor, limit: int = FILL_PAGE) -> tuple[list[Event], bool]:
    """The team's events after ``cursor`` from the chains, each stream in order, interleaved by
    time; and whether either stream had more than ``limit`` entries (read again from the
    cursor past these)."""
    from audit.selectors import team_events_after

    after_decisions = cursor.decisions - 1 if cursor.approval_pending else cursor.decisions
    decisions = team_events_after(
        team_id=team_id, stream=DECISIONS, after_sequence=after_decisions, limit=limit
    )
    if cursor.approval_pending:
        decisions = [e for e in decisions if place(cursor, e) is not Place.SEEN]
    trail = team_events_after(team_id=team_id, stream=TRAIL, after_sequence=cursor.events, limit=limit)
    more = len({e.sequence for e in decisions}) >= limit or len(trail) >= limit
    merged = sorted([*decisions, *trail], key=lambda e: (e.occurred_at, _STREAMS.index(e.stream), e.sequence))
    return merged, more


# --- the hub ----------------------------------------------------------------------------------


class StreamsFull(ServiceUnavailable):
    """503: this process holds as many streams as ``EVENT_STREAM_MAX_CONNECTIONS`` allows."""

    code = "too_many_streams"


@dataclass(eq=False)
class Subscriber:
    """One open stream's queue, on its loop: live events of its team, or "read the database"."""

    team_id: uuid.UUID
    loop: asyncio.AbstractEventLoop
    capacity: int
    # Where the stream is: what the loop's look at the chain heads compares.
    cursor: Cursor = field(default_factory=lambda: Cursor(0, 0))
    _queue: deque[Event] = field(default_factory=deque)
    _behind: bool = False
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        """On the loop: queue ``event``; past ``capacity``, drop the queue and read the database."""
        if self._behind:
            return  # the database read to come includes it (it was committed before it was sent)
        if len(self._queue) >= self.capacity:
            logger.info("event_stream.overflow team=%s queued=%d", self.team_id, len(self._queue))
            self.resync()
            return
        self._queue.append(event)
        self._wakeup.set()

    def resync(self) -> None:
        """On the loop: drop what is queued; the stream reads from its cursor in the database."""
        self._queue.clear()
        self._behind = True
        self._wakeup.set()

    async def take(self, timeout: float) -> tuple[list[Event], bool]:
        """What arrived (waiting up to ``timeout`` seconds for something): the queued events,
        and whether the stream must first read the database."""
        if not self._wakeup.is_set():
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return [], False
        self._wakeup.clear()
        taken, behind = list(self._queue), self._behind
        self._queue.clear()
        self._behind = False
        return taken, behind


@dataclass(eq=False)
class _LoopStreams:
    """One event loop's open streams, by team; touched on that loop only."""

    by_team: dict[uuid.UUID, set[Subscriber]] = field(default_factory=dict)
    recheck: asyncio.Task[None] | None = None

    def deliver(self, event: Event) -> None:
        for subscriber in self.by_team.get(event.team_id, ()):
            subscriber.offer(event)

    def resync_all(self) -> None:
        for subscribers in self.by_team.values():
            for subscriber in subscribers:
                subscriber.resync()


class EventHub:
    """The process's streams (see the module docstring). ``handle`` and ``missed`` run on any
    thread; ``open`` and ``close`` on the stream's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Replaced, never mutated: the handlers read it from any thread without the lock.
        self._loops: dict[asyncio.AbstractEventLoop, _LoopStreams] = {}
        self._open = 0

    @property
    def open_streams(self) -> int:
        return self._open

    def handle(self, event: Event) -> None:
        """The event-path handler: hand ``event`` to every loop holding streams. Never blocks."""
        loops = self._loops
        if not loops:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, streams in loops.items():
            if loop is running:
                streams.deliver(event)
            else:
                self._call_on(loop, streams.deliver, event)

    def missed(self) -> None:
        """The ``on_missed`` handler: every stream reads the database from its cursor."""
        for loop, streams in self._loops.items():
            self._call_on(loop, streams.resync_all)

    @staticmethod
    def _call_on(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object) -> None:
        if loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # closed meanwhile: its streams are gone

    def open(self, *, team_id: uuid.UUID) -> Subscriber:
        """A new stream of ``team_id``'s events on this loop; ``StreamsFull`` past the cap.
        Open it before reading where to start from, so nothing committed after that is missed."""
        loop = asyncio.get_running_loop()
        subscriber = Subscriber(team_id=team_id, loop=loop, capacity=settings.EVENT_STREAM_QUEUE_MAX)
        with self._lock:
            if self._open >= settings.EVENT_STREAM_MAX_CONNECTIONS:
                raise StreamsFull(
                    f"this server holds its maximum of {settings.EVENT_STREAM_MAX_CONNECTIONS} event "
                    "streams; retry shortly",
                    details={"max_streams": settings.EVENT_STREAM_MAX_CONNECTIONS},
                )
            self._open += 1
            metrics.EVENT_STREAM_CLIENTS["sse"].inc()
            streams = self._loops.get(loop)
            if streams is None:
                streams = _LoopStreams()
                self._loops = {**self._loops, loop: streams}
        streams.by_team.setdefault(team_id, set()).add(subscriber)
        # The other processes publish decisions to this one only while it asks (common.events).
        events.demand(lambda: self._open > 0)
        if streams.recheck is None or streams.recheck.done():
            # Lives as long as any stream, for every stream: no one request's id.
            streams.recheck = loop.create_task(self._recheck(loop, streams), context=without_request_id())
        return subscriber

    def close(self, subscriber: Subscriber) -> None:
        """Forget ``subscriber`` (once; again is harmless)."""
        streams = self._loops.get(subscriber.loop)
        if streams is None:
            return
        team = streams.by_team.get(subscriber.team_id)
        if team is None or subscriber not in team:
            return
        team.discard(subscriber)
        if not team:
            del streams.by_team[subscriber.team_id]
        with self._lock:
            self._open -= 1
            metrics.EVENT_STREAM_CLIENTS["sse"].dec()
            if not streams.by_team:
                # No stream left on this loop: the handlers stop waking it.
                self._loops = {k: v for k, v in self._loops.items() if k is not subscriber.loop}
                if streams.recheck is not None:
                    streams.recheck.cancel()

    async def _recheck(self, loop: asyncio.AbstractEventLoop, streams: _LoopStreams) -> None:
        """Every heartbeat interval, resync the streams still behind the heads of the previous
        look (in between, events in flight may be behind the heads by a moment)."""
        previous: dict[uuid.UUID, Cursor] = {}
        while streams.by_team:
            await asyncio.sleep(settings.EVENT_STREAM_HEARTBEAT_SECONDS)
            for team_id, subscribers in streams.by_team.items():
                heads = previous.get(team_id)
                if heads is not None:
                    for subscriber in subscribers:
                        if subscriber.cursor.behind(heads):
                            subscriber.resync()
            try:
                previous = await run_in_db_thread(chain_heads_of, team_ids=list(streams.by_team))
            except Exception:  # noqa: BLE001 - the database may be briefly away; look again next time
                logger.warning("event_stream.recheck_failed", exc_info=True)
                previous = {}


hub = EventHub()


def register() -> None:
    """Subscribe the hub to the event path (RuntimeConfig.ready, once per process)."""
    # Every type; decisions and the approvals they raise cross processes only while a stream is
    # open somewhere (they are most of the traffic, and most of the time nobody streams).
    on_demand = {EventType.DECISION_CREATED, EventType.APPROVAL_CREATED}
    events.subscribe(hub.handle, *on_demand, reach=events.Reach.EVERY_PROCESS_ON_DEMAND)
    events.subscribe(hub.handle, *(set(EventType) - on_demand), reach=events.Reach.EVERY_PROCESS)
    events.on_missed(hub.missed)


# --- one stream -------------------------------------------------------------------------------


def sse_event(event: Event, cursor: Cursor) -> bytes:
    """One event as the SDK's ``_parse_sse_line`` reads it: ``data: {"type", "data"}`` on one
    line, after its ``id:``."""
    data = {
        **event.data,
        "team_id": str(event.team_id),
        "stream": event.stream,
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
    }
    payload = json.dumps({"type": event.type.value, "data": data}, separators=(",", ":"), default=str)
    return f"id: {cursor}\ndata: {payload}\n\n".encode()


PING = b": ping\n\n"


class EventStream:
    """One open stream's body: catch up from the cursor, then live events as they come, with a
    heartbeat every ``heartbeat`` seconds. ``still_allowed`` runs at each heartbeat (the key may
    have been revoked since the stream opened); an ``ApplicationError`` from it ends the stream."""

    def __init__(
        self,
        *,
        hub: EventHub,
        subscriber: Subscriber,
        cursor: Cursor,
        types: frozenset[EventType],
        heartbeat: float,
        still_allowed: Callable[[], Awaitable[object]],
        catch_up: bool,
    ) -> None:
        self.hub = hub
        self.subscriber = subscriber
        self.cursor = cursor
        self.types = types
        self.heartbeat = heartbeat
        self.still_allowed = still_allowed
        self.catch_up = catch_up
        # The cursor the client last saw in an id: line (a filtered event moves it silently).
        self._announced = cursor
        subscriber.cursor = cursor

    def _move(self, event: Event) -> bytes:
        self.cursor = self.subscriber.cursor = advance(self.cursor, event)
        if event.type not in self.types:
            return b""
        self._announced = self.cursor
        return sse_event(event, self.cursor)

    async def _fill(self) -> AsyncGenerator[bytes, None]:
        """Everything after the cursor in the database, page by page."""
        while True:
            found, more = await run_in_db_thread(
                events_after, team_id=self.subscriber.team_id, cursor=self.cursor
            )
            yield b"".join(
                self._move(event) for event in found if place(self.cursor, event) is not Place.SEEN
            )
            if not more:
                return

    async def _live(self, taken: list[Event]) -> AsyncGenerator[bytes, None]:
        """The live events in ``taken`` not sent yet; a gap is filled from the database first."""
        chunks: list[bytes] = []
        for event in taken:
            found = place(self.cursor, event)
            if found is Place.GAP:
                yield b"".join(chunks)
                chunks = []
                async for page in self._fill():
                    yield page
                found = place(self.cursor, event)
                if found is Place.GAP:
                    # Heard but not in the database (archived out of it, say): the notice decides.
                    logger.warning(
                        "event_stream.gap_unfilled team=%s stream=%s sequence=%d cursor=%s",
                        event.team_id,
                        event.stream,
                        event.sequence,
                        self.cursor,
                    )
            if found is not Place.SEEN:
                chunks.append(self._move(event))
        yield b"".join(chunks)

    def _ping(self) -> bytes:
        if self._announced == self.cursor:
            return PING
        # An id: without data moves the client's Last-Event-ID past filtered-out events.
        self._announced = self.cursor
        return f"id: {self.cursor}\n".encode() + PING

    async def body(self) -> AsyncGenerator[bytes, None]:
        try:
            # First bytes at once, so proxies pass the headers on.
            yield f"retry: {RETRY_MILLISECONDS}\n".encode() + PING
            if self.catch_up:
                async for page in self._fill():
                    if page:
                        yield page
            next_ping = time.monotonic() + self.heartbeat
            while True:
                taken, behind = await self.subscriber.take(max(0.0, next_ping - time.monotonic()))
                if behind:
                    async for page in self._fill():
                        if page:
                            yield page
                async for chunk in self._live(taken):
                    if chunk:
                        yield chunk
                if time.monotonic() >= next_ping:
                    await self.still_allowed()
                    yield self._ping()
                    next_ping = time.monotonic() + self.heartbeat
        except ApplicationError as refusal:
            # The key revoked, the database away: the stream ends and the client reconnects.
            logger.info("event_stream.ended team=%s reason=%s", self.subscriber.team_id, refusal.code)
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            logger.warning("event_stream.ended team=%s reason=database_unavailable", self.subscriber.team_id)
        finally:
            self.hub.close(self.subscriber)
