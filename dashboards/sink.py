"""The browsers' sink on the one event path: committed events to the teams' channel-layer groups.

A ``Reach.ONE_PROCESS`` subscriber (common/events.py): it runs once, in the process that
committed the change, and the channel layer (channels-redis with REDIS_URL, so every web
process; in memory otherwise) carries each batch to every socket of the team.

Batched on purpose. Events wait up to ``VETO_LIVE_FLUSH_SECONDS`` (0.1 s) and leave as one
message per team, with each announced decision's row rendered once here rather than once per
socket: at 100 decisions/s and 200 open pages that is 10 group messages a second instead of
20,000 renders. Handlers must never block (they run on the decision writer's loop, a request's
thread after its commit, or a Celery task), so ``handle`` only queues; the flush runs on the
web server's event loop (``run``, started with the gateway: the in-memory layer only works on
the loop its consumers run on), or, in a process without one (a Celery worker), on a loop of
its own thread.

Lossy like the path under it, but not at the first hiccup: a team's batch that cannot be sent
(Redis slow or away) or whose rows cannot be read (the database) goes again, backing off, for up
to ``RETRY_SECONDS``, then is dropped and logged; sockets fill a gap from the database
by order number (dashboards/live.py), but only once a later number shows it, so losing a quiet
team's last batch would leave its pages short until its next event. A send that timed out may
still have been delivered: pages drop rows they already hold, so a second copy is harmless.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer  # type: ignore[import-untyped]
from django.conf import settings

from common.database import run_in_db_thread
from common.events import Event, EventType, Reach, encode_event, subscribe
from common.redis import redis_configured, redis_timeout
from dashboards import live, rendering, selectors

logger = logging.getLogger(__name__)

# How long a batch that could not be sent is tried again before it is dropped (the database
# fails fast for about a second when it stops answering: common.database), and the longest
# pause between two tries.
RETRY_SECONDS = 5.0
RETRY_PAUSE_MAX_SECONDS = 1.0
# How long a process's exit waits for the sink's own loop to send what is pending.
CLOSE_SECONDS = 2.0


class LiveSink:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Event] = []
        self._retry: list[tuple[Event, float]] = []  # (event, when it first failed), oldest first
        self._wake: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None  # the loop of its own, in a process without one
        self._closing = False

    # -- from any thread --

    def handle(self, event: Event) -> None:
        loop = self._loop or self._own_loop()
        if loop is None:
            return
        loop.call_soon_threadsafe(self._add, event)

    def _own_loop(self) -> asyncio.AbstractEventLoop | None:
        # A process without a web server (a Celery worker, a management command): its events
        # reach other processes' sockets only through Redis; in memory there is nobody to tell.
        if not redis_configured():
            return None
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._run_forever, args=(loop,), name="live-sink", daemon=True
                )
                self._thread.start()
                self._loop = loop
                atexit.register(self.close_own_loop)
        return self._loop

    def close_own_loop(self, timeout: float = CLOSE_SECONDS) -> None:
        """At the exit of a process that flushed on a loop of its own: send what is pending and
        end the thread, rather than leave it to be killed inside a database or Redis call at
        interpreter shutdown (that aborted a seed command once: "FATAL: exception not rethrown")."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(self._close)
        thread.join(timeout)

    def _close(self) -> None:
        self._closing = True
        if self._wake is not None:
            self._wake.set()

    def _run_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._flush_forever())

    # -- on the loop --

    async def run(self) -> None:
        """Flush on the running loop (the web server's; veto_cloud/asgi.py starts it), unless an
        event came first and the sink already flushes on a loop of its own (with Redis only)."""
        with self._lock:
            if self._loop is not None:
                return
            self._loop = asyncio.get_running_loop()
        await self._flush_forever()

    def _add(self, event: Event) -> None:
        self._pending.append(event)
        if self._wake is not None:
            self._wake.set()

    async def _flush_forever(self) -> None:
        self._wake = asyncio.Event()
        if self._pending or self._closing:
            self._wake.set()
        pause = settings.VETO_LIVE_FLUSH_SECONDS
        while True:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(pause)
            self._wake.clear()
            failed = await self.flush_once()
            if self._closing:
                return
            # After a failure the next try waits longer (new events wait with it), up to a second.
            pause = (
                min(max(pause, 0.05) * 2, RETRY_PAUSE_MAX_SECONDS)
                if failed
                else settings.VETO_LIVE_FLUSH_SECONDS
            )

    async def flush_once(self, *, now: float | None = None) -> bool:
        """Send what is pending, what failed before first; keep what fails to try again, for up
        to ``RETRY_SECONDS`` after it first failed. Whether anything failed."""
        now = time.monotonic() if now is None else now
        retry, self._retry = self._retry, []
        first_failed = {id(event): at for event, at in retry}
        events = [event for event, _ in retry] + self._pending
        self._pending = []
        if not events:
            return False
        try:
            failed = await self.flush(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the sink
            logger.warning("live_sink.flush_failed events=%d error=%r", len(events), exc, exc_info=not retry)
            failed = list(events)
        dropped = 0
        for event in failed:
            since = first_failed.get(id(event), now)
            if now - since < RETRY_SECONDS:
                self._retry.append((event, since))
            else:
                dropped += 1
        if dropped:
            logger.warning("live_sink.dropped events=%d after_seconds=%.0f", dropped, RETRY_SECONDS)
        if self._retry and self._wake is not None:
            self._wake.set()
        return bool(failed)

    async def flush(self, events: Sequence[Event]) -> list[Event]:
        """One message per team: its events in order and the rows of the decisions among them.
        Returns the events of the teams whose message could not be sent."""
        layer = get_channel_layer()
        if layer is None:
            return []
        by_team: dict[uuid.UUID, list[Event]] = defaultdict(list)
        for event in events:
            by_team[event.team_id].append(event)
        # Nobody listening to a team (no page open on any process): its rows are neither read nor
        # rendered, and nothing is sent. A page that opens after this check reads the chain heads
        # after it joined (consumers.connect), so the rows skipped here are behind its start.
        watched = await _teams_listened_to(layer, list(by_team))
        by_team = {team_id: team_events for team_id, team_events in by_team.items() if team_id in watched}
        decision_ids = [
            e.data["decision_id"]
            for team_events in by_team.values()
            for e in team_events
            if e.type is EventType.DECISION_CREATED and e.data.get("decision_id")
        ]
        rows = await run_in_db_thread(_rows_of, [str(i) for i in decision_ids]) if decision_ids else {}
        failed: list[Event] = []
        for team_id, team_events in by_team.items():
            team_rows = [
                rows[str(e.data["decision_id"])]
                for e in team_events
                if e.type is EventType.DECISION_CREATED and str(e.data.get("decision_id")) in rows
            ]
            message = live.batch_message(
                team_id=team_id, events=[encode_event(e) for e in team_events], rows=team_rows
            )
            try:
                async with asyncio.timeout(max(redis_timeout(), 1.0)):
                    await layer.group_send(live.team_group(team_id), message)
            except Exception:  # noqa: BLE001 - tried again with the next flush (flush_once)
                logger.warning(
                    "live_sink.send_failed team=%s events=%d", team_id, len(team_events), exc_info=True
                )
                failed.extend(team_events)
        return failed


async def _teams_listened_to(layer: object, team_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The teams whose group has a listener in some process: Redis's ``PUBSUB NUMSUB`` of the
    groups' channels (pub/sub layer), the groups' members (in-memory layer). Every team when the
    layer cannot say or Redis does not answer: then the batch is sent as before, and a send that
    fails goes again (``flush_once``)."""
    groups = {team_id: live.team_group(team_id) for team_id in team_ids}
    try:
        listeners = await _listeners(layer, list(groups.values()))
    except Exception as exc:  # noqa: BLE001 - asking is an optimisation; the send decides
        logger.debug("live_sink.listeners_unknown error=%r", exc)
        listeners = None
    if listeners is None:
        return set(team_ids)
    return {team_id for team_id, group in groups.items() if listeners.get(group, 1) > 0}


async def _listeners(layer: object, groups: list[str]) -> dict[str, int] | None:
    if isinstance(layer, InMemoryChannelLayer):
        return {group: len(layer.groups.get(group, ())) for group in groups}
    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    loop_layer = layer._get_layer()
    by_shard: dict[int, tuple[Any, dict[str, str]]] = {}
    for group in groups:
        channel = loop_layer._get_group_channel_name(group)
        shard = loop_layer._get_shard(channel)
        by_shard.setdefault(id(shard), (shard, {}))[1][channel] = group
    counts: dict[str, int] = {}
    async with asyncio.timeout(max(redis_timeout(), 1.0)):
        for shard, channels in by_shard.values():
            shard._ensure_redis()
            for channel, count in await shard._redis.pubsub_numsub(*channels):
                name = channel.decode() if isinstance(channel, bytes) else channel
                counts[channels[name]] = int(count)
    return counts


def _rows_of(decision_ids: list[str]) -> dict[str, live.LiveRow]:
    decisions = selectors.decisions_by_id(decision_ids=decision_ids)
    slugs = selectors.team_slugs_of(team_ids={d.team_id for d in decisions})
    return {row.id: row for row in rendering.live_rows(decisions, team_slugs=slugs)}


sink = LiveSink()


def register() -> None:
    """Subscribe the sink to every event (dashboards.apps.DashboardsConfig.ready)."""
    subscribe(sink.handle, *EventType, reach=Reach.ONE_PROCESS)


async def run() -> None:
    await sink.run()
