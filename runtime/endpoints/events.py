"""``GET /v1/events/stream``: the key's team's events as Server-Sent Events, as the SDK's
``VetoAdmin.subscribe_events`` reads them (runtime/event_stream.py does the streaming)."""

from __future__ import annotations

from django.conf import settings

from common.database import run_in_db_thread
from common.errors import InvalidInput
from common.events import EventType
from runtime.authentication import authenticate_gateway_request
from runtime.event_stream import Cursor, EventStream, chain_heads, hub, parse_cursor
from runtime.gateway import GatewayRequest, StreamingResponse
from tenancy.models import ApiKey

# What the stream shows is what the decision and approval lists show (GET /v1/decisions,
# /v1/approvals, /v1/audit/...): a read of the team's governance, never a change to it. So
# ``decisions:read``, as those lists require; a runtime key (an agent's) reads no stream.
STREAM_SCOPE = ApiKey.Scope.DECISIONS_READ
KNOWN_TYPES = tuple(t.value for t in EventType)

_HEADERS = [
    (b"cache-control", b"no-cache"),
    # nginx and the like would otherwise buffer the body, holding events back.
    (b"x-accel-buffering", b"no"),
]


def parse_types(raw: str | None) -> frozenset[EventType]:
    """The ``?types=`` filter (comma-separated event types; absent or empty: all of them); a 400
    naming the unknown ones otherwise."""
    names = [name.strip() for name in (raw or "").split(",") if name.strip()]
    if not names:
        return frozenset(EventType)
    unknown = [name for name in names if name not in KNOWN_TYPES]
    if unknown:
        raise InvalidInput(
            f"types: unknown event type(s) {', '.join(repr(n[:60]) for n in unknown[:5])}; "
            f"known: {', '.join(KNOWN_TYPES)}",
            details={"field": "types", "unknown": [n[:60] for n in unknown[:20]], "known": list(KNOWN_TYPES)},
        )
    return frozenset(EventType(name) for name in names)


async def event_stream(request: GatewayRequest) -> StreamingResponse:
    """The key's team's events as Server-Sent Events, resumable with Last-Event-ID.

    ``id: <cursor>`` and ``data: {"type", "data"}`` per event, ``?types=`` to filter.

    Without ``Last-Event-ID`` the stream starts now (the team's chain heads); with it, everything
    after that cursor comes first, from the database, then live events, with nothing twice and
    nothing left out. A ``: ping`` comment every ``VETO_EVENT_STREAM_HEARTBEAT_SECONDS``."""
    principal = await authenticate_gateway_request(request, scope=STREAM_SCOPE)
    types = parse_types(request.query("types"))
    raw_cursor = (request.header("last-event-id") or "").strip()
    resume_from = parse_cursor(raw_cursor) if raw_cursor else None
    # Open before reading the heads: an event committed after the read is heard live.
    subscriber = hub.open(team_id=principal.team_id)
    try:
        heads = await run_in_db_thread(chain_heads, team_id=principal.team_id)
        if resume_from is not None and _ahead(resume_from, heads):
            raise InvalidInput(
                f"Last-Event-ID: {raw_cursor!r} is ahead of this team's events (they are at {heads}); "
                "it is not a cursor this team's stream sent",
                details={"field": "Last-Event-ID", "heads": str(heads)},
            )
    except BaseException:
        hub.close(subscriber)
        raise
    stream = EventStream(
        hub=hub,
        subscriber=subscriber,
        cursor=resume_from or heads,
        types=types,
        heartbeat=settings.EVENT_STREAM_HEARTBEAT_SECONDS,
        still_allowed=lambda: authenticate_gateway_request(request, scope=STREAM_SCOPE),
        catch_up=resume_from is not None,
    )
    return StreamingResponse(
        stream.body(),
        headers=list(_HEADERS),
        content_type=b"text/event-stream",
        on_close=lambda: hub.close(subscriber),
    )


def _ahead(cursor: Cursor, heads: Cursor) -> bool:
    return cursor.decisions > heads.decisions or cursor.events > heads.events
