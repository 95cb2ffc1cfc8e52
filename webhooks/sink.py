"""The webhooks' sink on the one event path: a committed event says "look now" to its team.

A ``Reach.ONE_PROCESS`` subscriber (common/events.py): it runs once, in the process that
committed, on whatever thread or loop committed (the decision writer's loop, a request's
thread, a Celery task). It must never block, so ``handle`` does no I/O at all: it drops events
that cannot become a delivery (an allow decision, a vote) and teams known to have no enabled
endpoint, and puts the team in a set. One daemon thread per process (``_Sender``) takes the
set, and per team adds a short-lived flag to the cache (``cache.add``: at most one pending
dispatch per team across processes, cleared by the task when it starts) and sends one
``webhooks.tasks.dispatch_team`` task. A burst of a thousand denials is one task. A steady
stream is one task per team every ``DISPATCH_INTERVAL_SECONDS`` at most: the first event after
a quiet spell goes at once, and what follows it within the interval waits for the interval's
end and goes in the same dispatch. Without that, 50 denials a second were 50 dispatches and 50
one-delivery tasks a second, and most of two workers' CPU (see README "Webhooks").

Which teams have enabled endpoints is a snapshot the sender thread reads from the database
(one query, at most every ``SNAPSHOT_SECONDS``, and again soon after a ``team.changed`` entry
whose change is one of the webhook settings', announced to every process); the decision's
path never queries for it.

Lossy on purpose, like the path under it: a notice lost (a process that dies, a broker that is
away, a snapshot a few seconds old that misses a new endpoint) only delays, since the beat sweep
(webhooks.tasks.sweep) dispatches every team with enabled endpoints every few seconds, and the
cursors make every dispatch read from where the last one stopped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import close_old_connections

from common.events import Event, EventType, Reach, subscribe
from webhooks import dispatch
from webhooks.delivery import broker_producer

logger = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 5.0
# A pending dispatch's flag outlives a task that was lost by this long (then the next event
# sends another; the sweep meanwhile).
PENDING_FLAG_SECONDS = 30.0
_FLAG = "webhooks:dispatch-pending:{}"
# A team's dispatches from one process are at least this far apart (see the module).
DISPATCH_INTERVAL_SECONDS = 0.1
LAST_SENT_MAX = 10_000
_DECISION_OUTCOMES = frozenset({"deny", "require_approval"})


def _flag(team_id: uuid.UUID | str) -> str:
    return _FLAG.format(team_id)


class _Sender:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: set[uuid.UUID] = set()
        # When this process last sent each team's dispatch (monotonic), for the interval.
        self._last_sent: dict[uuid.UUID, float] = {}
        # How long until a team held back by the interval is due (None: nothing held).
        self.hold_seconds: float | None = None
        self._pid = 0
        self._thread: threading.Thread | None = None
        # Team ids with an enabled endpoint, and when they were read (0: never, or stale).
        self.teams: frozenset[uuid.UUID] = frozenset()
        self.loaded_at = 0.0
        self.enabled = True

    def add(self, team_id: uuid.UUID) -> None:
        with self._lock:
            self._pending.add(team_id)
            if self._thread is None or self._pid != os.getpid():
                # Lazily, and again in a forked child (a thread does not survive the fork).
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-sink", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.hold_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep the thread; the sweep covers what this missed
                logger.exception("webhook.sink_failed")
            finally:
                close_old_connections()

    def flush(self, *, now: float | None = None) -> int:
        """Send a dispatch task for each pending team that has enabled endpoints, none pending
        already and none sent by this process within the interval (those stay pending, and
        ``hold_seconds`` says when the first is due); returns how many were sent."""
        now = time.monotonic() if now is None else now
        with self._lock:
            teams, self._pending = self._pending, set()
        held = {
            team_id
            for team_id in teams
            if now < self._last_sent.get(team_id, -1e9) + DISPATCH_INTERVAL_SECONDS
        }
        if held:
            with self._lock:
                self._pending |= held
            teams -= held
        self.hold_seconds = (
            max(0.0, min(self._last_sent[team_id] for team_id in held) + DISPATCH_INTERVAL_SECONDS - now)
            if held
            else None
        )
        if not teams:
            return 0
        if time.monotonic() - self.loaded_at > SNAPSHOT_SECONDS:
            self.teams = frozenset(dispatch.teams_with_enabled_endpoints())
            self.loaded_at = time.monotonic()
        from webhooks.tasks import dispatch_team

        sent = 0
        for team_id in teams & self.teams:
            try:
                if not cache.add(_flag(team_id), 1, timeout=PENDING_FLAG_SECONDS):
                    continue  # a dispatch of this team is pending: it will read this event too
            except Exception:  # noqa: BLE001 - the cache away: send anyway (a dispatch is idempotent)
                logger.warning("webhook.sink_flag_failed team=%s", team_id, exc_info=True)
            try:
                with broker_producer() as producer:
                    dispatch_team.apply_async((str(team_id),), retry=False, producer=producer)
                sent += 1
                self._last_sent[team_id] = now
            except Exception:  # noqa: BLE001 - the broker away: the sweep dispatches the team
                logger.warning("webhook.sink_enqueue_failed team=%s", team_id, exc_info=True)
                _forget_flag(team_id)
        if len(self._last_sent) > LAST_SENT_MAX:
            # Forget teams whose interval is long over (an unbounded dict in a long-lived process).
            self._last_sent = {
                team_id: at for team_id, at in self._last_sent.items() if now - at < DISPATCH_INTERVAL_SECONDS
            }
        return sent


def _forget_flag(team_id: uuid.UUID | str) -> None:
    try:
        cache.delete(_flag(team_id))
    except Exception:  # noqa: BLE001 - it expires on its own
        logger.warning("webhook.sink_flag_clear_failed team=%s", team_id, exc_info=True)


_sender = _Sender()


def handle(event: Event) -> None:
    """The subscriber: no I/O here (see the module)."""
    if not _sender.enabled:
        return
    if event.type is EventType.DECISION_CREATED and event.data.get("decision") not in _DECISION_OUTCOMES:
        return
    if (
        _sender.loaded_at
        and event.team_id not in _sender.teams
        and time.monotonic() - _sender.loaded_at <= SNAPSHOT_SECONDS
    ):
        return
    _sender.add(event.team_id)


def handle_team_changed(event: Event) -> None:
    """A webhook setting of some team changed (an endpoint created, enabled, deleted): read the
    snapshot again at the next flush."""
    if str(event.data.get("change") or "").startswith("webhook."):
        _sender.loaded_at = 0.0


def clear_pending(team_id: uuid.UUID | str) -> None:
    """The dispatch task started: an event committed from now on sends another."""
    _forget_flag(team_id)


def register() -> Callable[[], None]:
    """Subscribe (from WebhooksConfig.ready); returns what unsubscribes both handlers."""
    off = subscribe(handle, *dispatch.SOURCE_EVENT_TYPES, reach=Reach.ONE_PROCESS)
    off_changes = subscribe(handle_team_changed, EventType.TEAM_CHANGED, reach=Reach.EVERY_PROCESS)

    def unsubscribe() -> None:
        off()
        off_changes()

    return unsubscribe


def sender() -> _Sender:
    """This process's sender (tests flush it, pause it, or read its snapshot)."""
    return _sender
