"""The live path's protocol and each socket's bookkeeping, without the network.

Events reach browsers this way (the one event path, common/events.py):

    common.events  --ONE_PROCESS-->  dashboards.sink  --group_send-->  live.team.<team>  --> LiveConsumer
                                     (batches, loads and renders         (channel layer)     (forwards what
                                      each decision row once)                                 LiveView renders)

A batch (``LiveBatch``) is one team's events of one flush, in order, with the rendered row and
the filter fields of each decision it announces. A socket (``Subscription``) says what its page
wants: which kinds of change (``Kind``), the explorer's filters when it shows rows, and the last
order numbers the page holds. ``LiveView`` turns batches into what that page swaps in (htmx's
websocket extension applies each message's out-of-band elements):

* ``<tbody hx-swap-oob="afterbegin:#decision-rows">``: new matching rows, newest first;
* ``<div id="live-cursor" ...>``: the order numbers the page now holds and the kinds that
  changed; static/js/live.js refreshes every element that declares ``data-live-refresh`` for
  one of them (the element's own hx-get, through the ordinary views and their permission
  checks), and reconnects with the cursor so the server fills what the page missed.

No missed rows: the channel layer may drop messages (Redis pub/sub, by design), and with several
web processes each sends the decisions it committed, so one team's order numbers arrive
interleaved ([101, 103] from one process, [102] a moment later from another). A socket keeps a
watermark (every row up to it is on the page) and the numbers it holds above it; a hole that
stays open for ``HOLE_GRACE_SECONDS`` is lost, not late, and is filled from the database
(``LiveView.hole_due``, ``filled``), as is everything after the page's cursor when a socket
(re)connects.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlencode

from audit.models import ChainStream
from common.events import EventType, decode_event
from dashboards.filters import ExplorerFilters

MESSAGE_TYPE = "live.batch"  # LiveConsumer.live_batch receives it
# A socket re-reads which teams its person may see at most this often (and at once when a
# batch says a team's members changed): removing someone from a team stops their live view.
MEMBERSHIP_RECHECK_SECONDS = 5.0
# At most this many missed rows are filled in one go; past it the page is told to reload its list.
GAP_FILL_LIMIT = 500
# Each web process's sink sends its own decisions, so the team's order numbers arrive interleaved
# from several processes: a hole below a number already seen is another process's batch still in
# flight. Only a hole older than this is filled from the database.
HOLE_GRACE_SECONDS = 1.0
# Batches decoded once per process, not once per socket (the sink names each batch).
_DECODED: dict[str, LiveBatch] = {}
_DECODED_KEEP = 64
# A finished gap fill serves the process's other sockets with the same gap this long (SharedReads).
FILL_KEEP_SECONDS = 5.0


class Kind(StrEnum):
    """What changed, as pages subscribe to it (``data-live-refresh`` names these)."""

    DECISIONS = "decisions"
    APPROVALS = "approvals"
    POLICIES = "policies"
    TEAM = "team"


KIND_OF: dict[EventType, Kind] = {
    EventType.DECISION_CREATED: Kind.DECISIONS,
    EventType.APPROVAL_CREATED: Kind.APPROVALS,
    EventType.APPROVAL_VOTED: Kind.APPROVALS,
    EventType.APPROVAL_ESCALATED: Kind.APPROVALS,
    EventType.APPROVAL_REFUSED: Kind.APPROVALS,
    EventType.APPROVAL_RESOLVED: Kind.APPROVALS,
    EventType.APPROVAL_EXPIRED: Kind.APPROVALS,
    EventType.POLICY_PUBLISHED: Kind.POLICIES,
    EventType.TOOL_POLICY_CHANGED: Kind.POLICIES,
    EventType.TEAM_CHANGED: Kind.TEAM,
}
# What changed in the governance trail (``events`` stream) when a page cannot tell which entries it missed.
EVENTS_STREAM_KINDS = frozenset({Kind.APPROVALS, Kind.POLICIES, Kind.TEAM})


def team_group(team_id: uuid.UUID) -> str:
    """The channel-layer group of one team's live events."""
    return f"live.team.{team_id.hex}"


# --- reads shared by a process's sockets ----------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    """One read per key at a time in this process, shared by every socket that needs it.

    200 pages of one person on one team ask the same questions at the same moment: who may see
    which team (every ``MEMBERSHIP_RECHECK_SECONDS``, and at once on a team change), and which
    rows a hole lost. ``get`` answers from a read that started at or after ``not_before``, in
    flight or finished within ``keep_seconds``, or starts one. So a socket is never answered from
    older data than it asked for, and the process makes one query where it made one per socket.
    A waiter that goes away (its socket closed) does not cancel the read for the others; a read
    that fails fails its waiters and is not reused."""

    def __init__(
        self, *, keep_seconds: float, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.keep_seconds = keep_seconds
        self.max_entries = max_entries
        self.clock = clock
        self.reads = 0  # reads started: for tests and the benchmark's notes
        self._entries: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def get(self, key: K, *, not_before: float, read: Callable[[], Awaitable[V]]) -> tuple[float, V]:
        """(when the read started, its value)."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None or entry[0] < not_before or _failed(entry[1]):
            self._expire(now)
            entry = (now, asyncio.ensure_future(read()))
            entry[1].add_done_callback(_retrieve)
            self._entries[key] = entry
            self.reads += 1
        started, future = entry
        return started, await asyncio.shield(future)

    def _expire(self, now: float) -> None:
        for key, (started, future) in list(self._entries.items()):
            if future.done() and (now - started > self.keep_seconds or _failed(future)):
                del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # every waiter may have gone: no "exception was never retrieved"


# --- a batch, as the sink sends it ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveRow:
    """One decision, rendered once for every page that shows it."""

    id: str
    sequence: int
    fields: Mapping[str, Any]  # dashboards.filters.row_fields
    html: str

    def encode(self) -> dict[str, Any]:
        return {"id": self.id, "sequence": self.sequence, "fields": dict(self.fields), "html": self.html}

    @classmethod
    def decode(cls, raw: Mapping[str, Any]) -> LiveRow:
        return cls(str(raw["id"]), int(raw["sequence"]), raw["fields"], str(raw["html"]))


@dataclass(frozen=True, slots=True)
class LiveBatch:
    team_id: uuid.UUID
    # (type, stream, sequence, data) of each event, in order.
    events: tuple[tuple[EventType, str, int, Mapping[str, Any]], ...]
    rows: tuple[LiveRow, ...]
    # When this process first decoded it (monotonic): the same moment for every socket of the
    # process, so their holes come due together and share one fill (``Gap.not_before``), and a
    # membership read started after it sees the change the batch announces.
    received: float = field(default=0.0, compare=False)

    @classmethod
    def decode(cls, message: Mapping[str, Any]) -> LiveBatch:
        if "payload" in message:  # one JSON blob, decoded once per process for all its sockets
            key = str(message["id"])
            batch = _DECODED.get(key)
            if batch is None:
                batch = cls.decode(json.loads(message["payload"]))
                if len(_DECODED) >= _DECODED_KEEP:
                    _DECODED.pop(next(iter(_DECODED)))
                _DECODED[key] = batch
            return batch
        events = tuple(decode_event(raw) for raw in message["events"])
        return cls(
            uuid.UUID(message["team"]),
            tuple((e.type, e.stream, e.sequence, e.data) for e in events),
            tuple(LiveRow.decode(raw) for raw in message["rows"]),
            time.monotonic(),
        )

    def kinds(self) -> set[Kind]:
        return {KIND_OF[event_type] for event_type, *_ in self.events if event_type in KIND_OF}

    def last_sequence(self, stream: str) -> int | None:
        sequences = [sequence for _, s, sequence, _ in self.events if s == stream]
        return max(sequences) if sequences else None

    def first_sequence(self, stream: str) -> int | None:
        sequences = [sequence for _, s, sequence, _ in self.events if s == stream]
        return min(sequences) if sequences else None

    def names_member(self, user_id: int) -> bool:
        """Does the batch change this person's membership (or anyone's: ``user_id`` None)?"""
        return any(
            event_type is EventType.TEAM_CHANGED and data.get("user_id") in (None, str(user_id))
            for event_type, _, _, data in self.events
        )


def batch_message(
    *, team_id: uuid.UUID, events: Sequence[list[Any]], rows: Iterable[LiveRow]
) -> dict[str, Any]:
    """The channel-layer message of one team's batch (``events``: common.events.encode_event)."""
    body = {"team": str(team_id), "events": list(events), "rows": [r.encode() for r in rows]}
    return {"type": MESSAGE_TYPE, "id": uuid.uuid4().hex, "payload": json.dumps(body).encode()}


# --- what a socket asked for ---------------------------------------------------------------------


class BadSubscription(ValueError):
    """The socket's query string does not say something this server understands."""


@dataclass(frozen=True, slots=True)
class Subscription:
    user_id: int
    team_ids: frozenset[uuid.UUID]  # the teams the person may see: the groups joined
    kinds: frozenset[Kind]
    page_team_id: uuid.UUID | None = None
    # Rows are pushed only to a page that shows the newest rows of one team (the explorer's first page).
    rows: bool = False
    filters: ExplorerFilters = ExplorerFilters()
    after_decisions: int | None = None
    after_events: int | None = None
    resumed: bool = False

    def groups(self) -> list[str]:
        return [team_group(team_id) for team_id in sorted(self.team_ids)]


def parse_query(query_string: bytes | str) -> dict[str, str]:
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return {key: values[-1] for key, values in parse_qs(text).items()}


def _cursor(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise BadSubscription(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise BadSubscription(f"{name} must not be negative")
    return value


def subscription_from(
    *, user_id: int, visible_teams: Mapping[str, uuid.UUID], params: Mapping[str, str]
) -> Subscription:
    """What a socket's query string asks for, given the teams its person may see (slug -> id).

    ``kinds`` (comma separated, default ``approvals``), ``team`` (a slug the person may see),
    ``rows=1`` with the explorer's filters, ``after`` / ``events_after`` (the page team's
    order numbers) and ``resumed=1`` (a reconnect: whatever changed meanwhile is refreshed)."""
    try:
        kinds = frozenset(Kind(k) for k in (params.get("kinds") or Kind.APPROVALS.value).split(",") if k)
    except ValueError as exc:
        raise BadSubscription(f"kinds: {exc}") from None
    slug = params.get("team")
    page_team_id = None
    if slug:
        if slug not in visible_teams:
            raise BadSubscription(f"team {slug!r} is not one of yours")
        page_team_id = visible_teams[slug]
    rows = params.get("rows") == "1"
    if rows and page_team_id is None:
        raise BadSubscription("rows=1 needs team")
    try:
        filters = ExplorerFilters.from_params(params) if rows else ExplorerFilters()
    except ValueError as exc:  # dashboards.filters.FilterError: a value the explorer cannot use
        raise BadSubscription(f"filters: {exc}") from None
    return Subscription(
        user_id=user_id,
        team_ids=frozenset(visible_teams.values()),
        kinds=kinds | ({Kind.DECISIONS} if rows else set()),
        page_team_id=page_team_id,
        rows=rows,
        filters=filters,
        after_decisions=_cursor(params, "after"),
        after_events=_cursor(params, "events_after"),
        resumed=params.get("resumed") == "1",
    )


def socket_query(
    *,
    kinds: Iterable[Kind | str],
    team_slug: str | None = None,
    rows: bool = False,
    filters: ExplorerFilters | None = None,
    after_decisions: int | None = None,
    after_events: int | None = None,
) -> str:
    """The query string a page puts on its socket (templates/dashboards/_live_socket.html)."""
    params: dict[str, str] = {"kinds": ",".join(sorted(str(k) for k in kinds))}
    if team_slug:
        params["team"] = team_slug
    if rows:
        params["rows"] = "1"
        params.update((filters or ExplorerFilters()).query_params())
    if after_decisions is not None:
        params["after"] = str(after_decisions)
    if after_events is not None:
        params["events_after"] = str(after_events)
    return urlencode(params)


# --- one socket's state --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gap:
    """Rows of the page team's decisions the socket has not seen: after ``after``, up to ``upto``
    (None: everything there is)."""

    team_id: uuid.UUID
    after: int
    upto: int | None
    # A read of the database that started at or after this moment (monotonic) will do: a hole's
    # grace period ended then, or the socket asked then. Not part of what the gap is.
    not_before: float = field(default=0.0, compare=False)

    def key(self) -> tuple[uuid.UUID, int, int | None]:
        """What the fill reads: sockets of one process with the same key share one read."""
        return (self.team_id, self.after, self.upto)


@dataclass(slots=True)
class Update:
    """What one batch (or a fill) means for one page."""

    rows: list[LiveRow] = field(default_factory=list)
    changed: set[Kind] = field(default_factory=set)
    gap: Gap | None = None
    recheck_membership: bool = False
    # With recheck_membership: a read of the person's teams that started at or after this moment
    # (monotonic) will do. The batch's arrival when it changes their membership, else the start
    # of the recheck interval: one read serves every socket of theirs in the process.
    membership_not_before: float = 0.0
    reload_rows: bool = False


class LiveView:
    """One socket's page: what it holds and what it wants. Pure: the consumer does the I/O."""

    def __init__(self, subscription: Subscription, *, now: float | None = None) -> None:
        self.subscription = subscription
        # Every decision up to last_decisions is on the page (or was filled); ``ahead`` holds
        # those received above it, while a lower one is still on its way.
        self.last_decisions = subscription.after_decisions
        self.ahead: set[int] = set()
        self.hole_since: float | None = None
        self.last_events = subscription.after_events
        self.checked_at = time.monotonic() if now is None else now

    # -- batches --

    def on_batch(self, batch: LiveBatch, *, now: float) -> Update:
        sub = self.subscription
        update = Update()
        if batch.names_member(sub.user_id):
            update.recheck_membership = True
            update.membership_not_before = batch.received or now
        elif now - self.checked_at >= MEMBERSHIP_RECHECK_SECONDS:
            update.recheck_membership = True
            update.membership_not_before = now - MEMBERSHIP_RECHECK_SECONDS
        update.changed = batch.kinds() & sub.kinds
        if batch.team_id != sub.page_team_id:
            return update
        decisions = ChainStream.DECISIONS.value
        sequences = {sequence for _, s, sequence, _ in batch.events if s == decisions}
        if sequences and not sub.rows:
            # A page without rows only refreshes on "decisions changed": nothing to fill.
            self.last_decisions = max(self.last_decisions or 0, max(sequences))
        elif sequences:
            if self.last_decisions is None:
                self.last_decisions = min(sequences) - 1
            new = {s for s in sequences if s > self.last_decisions and s not in self.ahead}
            update.rows = [r for r in batch.rows if r.sequence in new and sub.filters.matches(r.fields)]
            self.ahead |= new
            self._advance(now)
        update.gap = self.hole_due(now=now)
        events_last = batch.last_sequence(ChainStream.EVENTS.value)
        if events_last is not None:
            events_first = batch.first_sequence(ChainStream.EVENTS.value)
            if (
                self.last_events is not None
                and events_first is not None
                and events_first > self.last_events + 1
            ):
                update.changed |= EVENTS_STREAM_KINDS & sub.kinds  # missed entries: refresh them all
            self.last_events = max(self.last_events or 0, events_last)
        return update

    def on_connect(
        self, *, decisions_head: int | None, events_head: int | None, now: float | None = None
    ) -> Update:
        """What the page missed between being drawn (or its last message) and this socket."""
        sub = self.subscription
        update = Update()
        if sub.resumed or (sub.after_decisions is None and sub.after_events is None):
            update.changed = set(sub.kinds)
        if sub.page_team_id is not None:
            if (
                decisions_head is not None
                and self.last_decisions is not None
                and decisions_head > self.last_decisions
            ):
                update.changed.add(Kind.DECISIONS)
                if sub.rows:
                    update.gap = Gap(
                        sub.page_team_id,
                        self.last_decisions,
                        None,
                        time.monotonic() if now is None else now,
                    )
            if events_head is not None and self.last_events is not None and events_head > self.last_events:
                update.changed |= EVENTS_STREAM_KINDS
            if self.last_decisions is None:
                self.last_decisions = decisions_head
            if self.last_events is None:
                self.last_events = events_head
        update.changed &= sub.kinds
        return update

    def filled(
        self, rows: Sequence[LiveRow], *, gap: Gap, complete: bool, now: float | None = None
    ) -> Update:
        """A gap's rows from the database (``complete``: all of them; else the newest only)."""
        update = Update(changed={Kind.DECISIONS} & self.subscription.kinds)
        floor = self.last_decisions or 0
        update.rows = [
            r
            for r in rows
            if r.sequence > floor
            and r.sequence not in self.ahead
            and self.subscription.filters.matches(r.fields)
        ]
        if rows:
            self.last_decisions = max(floor, max(r.sequence for r in rows))
        if gap.upto is not None:
            self.last_decisions = max(self.last_decisions or 0, gap.upto)
        self.ahead = {s for s in self.ahead if s > (self.last_decisions or 0)}
        self.hole_since = None  # a hole left above the fill is a new one: its own grace period
        self._advance(time.monotonic() if now is None else now)
        update.reload_rows = not complete
        return update

    def hole_due(self, *, now: float) -> Gap | None:
        """The rows below ones already received that have not come for ``HOLE_GRACE_SECONDS``:
        then they are not in flight from another process but lost, and are read from the database."""
        sub = self.subscription
        if (
            not sub.rows
            or self.hole_since is None
            or sub.page_team_id is None
            or now - self.hole_since < HOLE_GRACE_SECONDS
        ):
            return None
        return Gap(
            sub.page_team_id,
            self.last_decisions or 0,
            max(self.ahead),
            self.hole_since + HOLE_GRACE_SECONDS,
        )

    def _advance(self, now: float) -> None:
        assert self.last_decisions is not None
        while self.last_decisions + 1 in self.ahead:
            self.last_decisions += 1
            self.ahead.discard(self.last_decisions)
        if not self.ahead:
            self.hole_since = None
        elif self.hole_since is None:
            self.hole_since = now

    def membership_checked(
        self, visible_team_ids: frozenset[uuid.UUID], *, now: float
    ) -> frozenset[uuid.UUID]:
        """The teams this socket must leave; the page's own among them ends the socket."""
        self.checked_at = now
        lost = self.subscription.team_ids - visible_team_ids
        if lost:
            sub = self.subscription
            self.subscription = Subscription(
                user_id=sub.user_id,
                team_ids=sub.team_ids & visible_team_ids,
                kinds=sub.kinds,
                page_team_id=sub.page_team_id,
                rows=sub.rows,
                filters=sub.filters,
                after_decisions=sub.after_decisions,
                after_events=sub.after_events,
                resumed=sub.resumed,
            )
        return lost

    # -- what the page receives --

    def render(self, update: Update) -> str | None:
        """The websocket message for ``update``, or None when there is nothing to say."""
        if not update.rows and not update.changed and not update.reload_rows:
            return None
        parts = []
        if update.rows:
            newest_first = sorted(update.rows, key=lambda r: r.sequence, reverse=True)
            parts.append(
                '<tbody hx-swap-oob="afterbegin:#decision-rows">'
                + "".join(r.html for r in newest_first)
                + "</tbody>"
            )
        changed = set(update.changed)
        if update.reload_rows:
            changed.add(Kind.DECISIONS)
        attributes = {
            "id": "live-cursor",
            "hx-swap-oob": "true",
            "data-changed": " ".join(sorted(changed)),
            "data-decisions": "" if self.last_decisions is None else str(self.last_decisions),
            "data-events": "" if self.last_events is None else str(self.last_events),
            "data-reload-rows": "1" if update.reload_rows else "",
            "hidden": "",
        }
        parts.append("<div " + " ".join(f'{k}="{html.escape(v)}"' for k, v in attributes.items()) + "></div>")
        return "".join(parts)
