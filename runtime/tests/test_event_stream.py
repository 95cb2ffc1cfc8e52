"""The event stream's parts without a server: the cursor (format, parsing, where an event stands),
the hub (hand-over from other threads, team isolation, overflow, the cap) and one stream's body
reading what it did not hear from the chains."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.test import override_settings

from common.errors import InvalidInput
from common.events import Event, EventType
from runtime.event_stream import (
    Cursor,
    EventHub,
    EventStream,
    Place,
    StreamsFull,
    advance,
    parse_cursor,
    place,
)
from tests.factories import TeamFactory, record_decision

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TEAM = uuid.uuid4()


def decision(sequence: int, *, approval: bool = False, team: uuid.UUID = TEAM) -> list[Event]:
    approval_id = str(uuid.uuid4()) if approval else None
    created = Event(
        EventType.DECISION_CREATED,
        team,
        "decisions",
        sequence,
        NOW,
        {"decision_id": str(uuid.uuid4()), "decision": "allow", "approval_id": approval_id},
    )
    if not approval:
        return [created]
    return [
        created,
        Event(EventType.APPROVAL_CREATED, team, "decisions", sequence, NOW, {"approval_id": approval_id}),
    ]


def trail(sequence: int, event_type: EventType = EventType.POLICY_PUBLISHED, team: uuid.UUID = TEAM) -> Event:
    return Event(event_type, team, "events", sequence, NOW, {"version": sequence})


# --- the cursor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cursor"),
    [
        ("d0.e0", Cursor(0, 0)),
        ("d12.e3", Cursor(12, 3)),
        ("d12p.e3", Cursor(12, 3, approval_pending=True)),
        (" d7.e9 ", Cursor(7, 9)),
    ],
)
def test_cursor__formatted_then_parsed__the_same_cursor(text, cursor):
    # When a cursor is parsed, and formatted again
    parsed = parse_cursor(text)
    # Then it is the cursor, and reads as it was sent
    assert parsed == cursor
    assert str(parsed) == text.strip()


@pytest.mark.parametrize(
    "text",
    ["", "12", "d12", "d12.e", "e3.d12", "d-1.e0", "d0p.e0", "d1.e2.x", "d1x.e2", "d" + "9" * 19 + ".e0"],
)
def test_cursor__not_one_this_stream_sent__400_naming_the_header_and_the_format(text):
    # When a Last-Event-ID that is no cursor is parsed
    with pytest.raises(InvalidInput) as refused:
        parse_cursor(text)
    # Then the refusal says where and what was expected
    assert refused.value.message.startswith("Last-Event-ID: ")
    assert "d<decisions sequence>.e<events sequence>" in refused.value.message
    assert refused.value.details["field"] == "Last-Event-ID"


def test_place__each_stream_in_order__next_seen_and_gap():
    # Given a stream through decisions 4 and events 2
    cursor = Cursor(4, 2)
    # Then each event stands where its stream's sequence puts it
    assert place(cursor, decision(5)[0]) is Place.NEXT
    assert place(cursor, decision(4)[0]) is Place.SEEN
    assert place(cursor, decision(6)[0]) is Place.GAP
    assert place(cursor, trail(3)) is Place.NEXT
    assert place(cursor, trail(2)) is Place.SEEN
    assert place(cursor, trail(5)) is Place.GAP
    # An approval.created whose decision.created was not heard is a gap, not the next event
    assert place(cursor, decision(5, approval=True)[1]) is Place.GAP


def test_advance__decision_that_raised_an_approval__pending_until_its_approval_created():
    # Given the two events of a decision that raised an approval
    created, approval_created = decision(5, approval=True)
    cursor = Cursor(4, 2)
    # When the first is past
    cursor = advance(cursor, created)
    # Then the cursor waits for the second, and nothing else of that sequence
    assert str(cursor) == "d5p.e2"
    assert place(cursor, created) is Place.SEEN
    assert place(cursor, approval_created) is Place.NEXT
    assert place(cursor, decision(6)[0]) is Place.GAP
    # And once the second is past, the decision is complete
    cursor = advance(cursor, approval_created)
    assert str(cursor) == "d5.e2"
    assert place(cursor, approval_created) is Place.SEEN
    assert place(cursor, decision(6)[0]) is Place.NEXT


def test_behind__heads_past_the_cursor__behind():
    heads = Cursor(5, 3)
    assert Cursor(4, 3).behind(heads)
    assert Cursor(5, 2).behind(heads)
    assert Cursor(5, 3, approval_pending=True).behind(heads)
    assert not Cursor(5, 3).behind(heads)


# --- the hub ----------------------------------------------------------------------------------


def test_hub__event_dispatched_on_another_thread__reaches_only_its_teams_streams():
    # Given two streams of one team and one of another team, on one loop
    hub = EventHub()
    other_team = uuid.uuid4()

    async def scenario() -> tuple[list[Event], list[Event], list[Event]]:
        first, second = hub.open(team_id=TEAM), hub.open(team_id=TEAM)
        other = hub.open(team_id=other_team)
        # When events of the first team are dispatched on another thread (as a request's commit is)
        thread = threading.Thread(target=lambda: [hub.handle(e) for e in decision(1, approval=True)])
        thread.start()
        thread.join()
        heard = [await s.take(1.0) for s in (first, second)]
        nothing = await other.take(0.2)
        for s in (first, second, other):
            hub.close(s)
        return heard[0][0], heard[1][0], nothing[0]

    first, second, other = asyncio.run(scenario())
    # Then both of its streams have both events, in order, and the other team's has none
    assert [e.type for e in first] == [EventType.DECISION_CREATED, EventType.APPROVAL_CREATED]
    assert first == second
    assert other == []
    assert hub.open_streams == 0


@override_settings(EVENT_STREAM_QUEUE_MAX=3)
def test_hub__stream_falls_behind_its_queue__queue_dropped_and_told_to_read_the_database():
    # Given a stream whose queue holds 3 events
    hub = EventHub()

    async def scenario() -> tuple[list[Event], bool, list[Event], bool]:
        subscriber = hub.open(team_id=TEAM)
        # When 5 arrive before it reads any
        for sequence in range(1, 6):
            hub.handle(decision(sequence)[0])
        dropped, behind = await subscriber.take(1.0)
        # Then it holds none of them (memory stays bounded) and reads the database instead;
        # and what arrives after that is queued again
        hub.handle(decision(6)[0])
        after, still_behind = await subscriber.take(1.0)
        hub.close(subscriber)
        return dropped, behind, after, still_behind

    dropped, behind, after, still_behind = asyncio.run(scenario())
    assert (dropped, behind) == ([], True)
    assert [e.sequence for e in after] == [6]
    assert still_behind is False


def test_hub__listener_may_have_missed_events__every_stream_reads_the_database():
    hub = EventHub()

    async def scenario() -> list[bool]:
        subscribers = [hub.open(team_id=TEAM), hub.open(team_id=uuid.uuid4())]
        # When the listener resubscribed after Redis was away (called from its loop or any thread)
        await asyncio.to_thread(hub.missed)
        told = [(await s.take(1.0))[1] for s in subscribers]
        for s in subscribers:
            hub.close(s)
        return told

    assert asyncio.run(scenario()) == [True, True]


@override_settings(EVENT_STREAM_MAX_CONNECTIONS=2)
def test_hub__at_its_cap__the_next_stream_refused_503_until_one_closes():
    hub = EventHub()

    async def scenario() -> None:
        first, _second = hub.open(team_id=TEAM), hub.open(team_id=TEAM)
        # When a third is opened, then one closes and a third is opened again
        with pytest.raises(StreamsFull) as refused:
            hub.open(team_id=uuid.uuid4())
        assert refused.value.status_code == 503
        assert "maximum of 2 event streams" in refused.value.message
        hub.close(first)
        hub.close(first)  # closing twice counts once
        hub.open(team_id=uuid.uuid4())
        assert hub.open_streams == 2

    asyncio.run(scenario())


# --- one stream -------------------------------------------------------------------------------


async def _read(body, count: int, timeout: float = 5.0) -> list[bytes]:
    chunks = []
    async with asyncio.timeout(timeout):
        while len(chunks) < count:
            chunks.append(await anext(body))
    return chunks


def _ids(chunks: list[bytes]) -> list[str]:
    return [line[4:] for chunk in chunks for line in chunk.decode().splitlines() if line.startswith("id: ")]


@pytest.mark.django_db(transaction=True)
def test_stream__live_event_after_unheard_ones__those_read_from_the_chain_first_in_order():
    # Given a team with three decisions nobody was told of, and a stream that started before them
    team = TeamFactory()
    rows = [record_decision(team) for _ in range(3)]
    hub = EventHub()

    async def scenario() -> list[bytes]:
        subscriber = hub.open(team_id=team.id)

        async def allowed() -> None:
            return None

        stream = EventStream(
            hub=hub,
            subscriber=subscriber,
            cursor=Cursor(0, 0),
            types=frozenset(EventType),
            heartbeat=60,
            still_allowed=allowed,
            catch_up=False,
        )
        body = stream.body()
        first = await anext(body)  # retry: and the first ping
        # When only the third decision's notice arrives
        hub.handle(
            Event(
                EventType.DECISION_CREATED,
                team.id,
                "decisions",
                3,
                rows[2].created_at,
                {"decision_id": str(rows[2].id), "decision": "allow", "approval_id": None},
            )
        )
        # And then the first one's, late (a duplicate by now)
        hub.handle(decision(1, team=team.id)[0])
        rest = await _read(body, 1)
        assert await asyncio.wait_for(subscriber.take(0.3), 1) == ([], False)  # nothing else came
        await body.aclose()
        assert hub.open_streams == 0
        return [first, *rest]

    chunks = asyncio.run(scenario())
    # Then the stream opened with retry: and a ping, then sent decisions 1, 2, 3, once each, in order
    assert chunks[0] == b"retry: 2000\n: ping\n\n"
    assert _ids(chunks) == ["d1.e0", "d2.e0", "d3.e0"]
    assert [str(r.id) in chunks[1].decode() for r in rows] == [True, True, True]


@pytest.mark.django_db(transaction=True)
def test_stream__filtered_types__cursor_still_moves_and_the_next_ping_carries_it():
    # Given a stream of policy.published only, resuming from before two decisions
    team = TeamFactory()
    record_decision(team)
    record_decision(team)
    hub = EventHub()

    async def scenario() -> list[bytes]:
        subscriber = hub.open(team_id=team.id)

        async def allowed() -> None:
            return None

        stream = EventStream(
            hub=hub,
            subscriber=subscriber,
            cursor=Cursor(0, 0),
            types=frozenset({EventType.POLICY_PUBLISHED}),
            heartbeat=0.2,
            still_allowed=allowed,
            catch_up=True,
        )
        body = stream.body()
        try:
            return await _read(body, 3)
        finally:
            await body.aclose()

    chunks = asyncio.run(scenario())
    # Then no decision was sent, and the ping after them moved the client's Last-Event-ID past them
    assert b"data:" not in b"".join(chunks)
    assert _ids(chunks) == ["d2.e0"]
    assert chunks[-1] == b": ping\n\n"


def test_hub__a_stream_opens__the_process_asks_for_decisions_while_streams_are_open(monkeypatch):
    # Decisions reach this process from the others only while it asks (common.events.demand).
    from common import events as common_events
    from runtime import event_stream

    asked: list = []
    monkeypatch.setattr(common_events, "demand", lambda while_: asked.append(while_))
    hub = event_stream.EventHub()

    async def scenario() -> tuple[bool, bool]:
        subscriber = hub.open(team_id=uuid.uuid4())
        while_open = asked[-1]()
        hub.close(subscriber)
        return while_open, asked[-1]()

    assert asyncio.run(scenario()) == (True, False)


def test_register__decisions_on_demand_everything_else_always():
    from common import events as common_events
    from common.events import EventType, Reach

    reaches = {
        event_type: {
            reach for handler, reach in common_events._handlers.get(event_type, ()) if handler == hub_handle()
        }
        for event_type in EventType
    }
    assert reaches[EventType.DECISION_CREATED] == {Reach.EVERY_PROCESS_ON_DEMAND}
    assert reaches[EventType.APPROVAL_CREATED] == {Reach.EVERY_PROCESS_ON_DEMAND}
    assert reaches[EventType.APPROVAL_RESOLVED] == {Reach.EVERY_PROCESS}
    assert reaches[EventType.POLICY_PUBLISHED] == {Reach.EVERY_PROCESS}


def hub_handle():
    from runtime import event_stream

    return event_stream.hub.handle
