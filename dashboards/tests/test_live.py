"""LiveView without the network: what a page receives for a batch, when it must fill a gap, and
when it must re-check who may see what."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer
from django.test import override_settings

from common.events import Event, EventType, encode_event
from dashboards import consumers, live
from dashboards.filters import ExplorerFilters

TEAM = uuid.uuid4()
OTHER = uuid.uuid4()
NOW = 1000.0


def decision(
    sequence: int, *, tool: str = "export", team: uuid.UUID = TEAM, outcome: str = "allow"
) -> tuple[Event, live.LiveRow]:
    decision_id = str(uuid.uuid4())
    event = Event(
        EventType.DECISION_CREATED,
        team,
        "decisions",
        sequence,
        datetime.now(UTC),
        {"decision_id": decision_id, "decision": outcome, "approval_id": None},
    )
    row = live.LiveRow(
        decision_id,
        sequence,
        {"tool": tool, "decision": outcome},
        f'<tr id="decision-{decision_id}"><td>{tool}</td></tr>',
    )
    return event, row


def trail(sequence: int, event_type: EventType, *, team: uuid.UUID = TEAM, **data: object) -> Event:
    return Event(event_type, team, "events", sequence, datetime.now(UTC), data)


def batch(*items: Event | tuple[Event, live.LiveRow], team: uuid.UUID = TEAM) -> live.LiveBatch:
    events = [i[0] if isinstance(i, tuple) else i for i in items]
    rows = [i[1] for i in items if isinstance(i, tuple)]
    return live.LiveBatch.decode(
        live.batch_message(team_id=team, events=[encode_event(e) for e in events], rows=rows)
    )


def explorer(
    *, after: int | None = 0, filters: ExplorerFilters | None = None, events_after: int | None = None
) -> live.LiveView:
    return live.LiveView(
        live.Subscription(
            user_id=7,
            team_ids=frozenset({TEAM, OTHER}),
            kinds=frozenset({live.Kind.DECISIONS}),
            page_team_id=TEAM,
            rows=True,
            filters=filters or ExplorerFilters(),
            after_decisions=after,
            after_events=events_after,
        ),
        now=NOW,
    )


def test_batch__matching_rows__newest_first_with_the_cursor():
    view = explorer(filters=ExplorerFilters(tool="export"))
    first, second, other = decision(1), decision(2), decision(3, tool="send_sms")

    update = view.on_batch(batch(first, second, other), now=NOW)
    message = view.render(update)

    assert [r.sequence for r in update.rows] == [1, 2]
    assert message is not None
    assert message.index(second[1].id) < message.index(first[1].id)  # newest first
    assert "send_sms" not in message
    assert 'data-decisions="3"' in message  # the cursor passed the unmatched row too
    assert 'hx-swap-oob="afterbegin:#decision-rows"' in message


def test_batch__sequence_jumps__waits_then_asks_for_the_gap():
    view = explorer(after=4)

    # A jump may be another web process's batch still on its way: first it is waited for
    early = view.on_batch(batch(decision(8), decision(9)), now=NOW)
    late = view.on_batch(batch(decision(10)), now=NOW + live.HOLE_GRACE_SECONDS)

    assert early.gap is None
    assert late.gap == live.Gap(TEAM, 4, 10)
    assert view.last_decisions == 4  # the watermark: every row up to it is on the page


def test_batch__interleaved_from_two_processes__every_row_once_no_gap():
    view = explorer(after=0)
    one, two, three, four, five = (decision(n) for n in range(1, 6))

    first = view.on_batch(batch(one, three, five), now=NOW)
    second = view.on_batch(batch(two, four), now=NOW + 0.01)
    again = view.on_batch(batch(three), now=NOW + 0.02)

    assert [r.sequence for r in first.rows] == [1, 3, 5]
    assert [r.sequence for r in second.rows] == [2, 4]
    assert again.rows == []
    assert (first.gap, second.gap, view.hole_due(now=NOW + 5)) == (None, None, None)
    assert view.last_decisions == 5 and view.ahead == set()


def test_hole_due__lost_row__filled_without_rows_already_shown():
    view = explorer(after=0)
    view.on_batch(batch(decision(1), decision(3)), now=NOW)
    gap = view.hole_due(now=NOW + live.HOLE_GRACE_SECONDS)
    assert gap == live.Gap(TEAM, 1, 3)

    update = view.filled([decision(2)[1], decision(3)[1]], gap=gap, complete=True, now=NOW + 2)

    assert [r.sequence for r in update.rows] == [2]  # 3 is on the page already
    assert view.last_decisions == 3 and view.hole_due(now=NOW + 10) is None


def test_batch__page_without_rows__never_fills():
    view = live.LiveView(
        live.Subscription(
            user_id=7, team_ids=frozenset({TEAM}), kinds=frozenset({live.Kind.DECISIONS}), page_team_id=TEAM
        ),
        now=NOW,
    )

    update = view.on_batch(batch(decision(5)), now=NOW)
    later = view.on_batch(batch(decision(9)), now=NOW + 10)

    assert update.changed == {live.Kind.DECISIONS} and update.rows == []
    assert later.gap is None and view.last_decisions == 9


def test_decode__the_same_message__decoded_once_for_every_socket():
    message = live.batch_message(team_id=TEAM, events=[encode_event(decision(1)[0])], rows=[decision(1)[1]])

    assert live.LiveBatch.decode(message) is live.LiveBatch.decode(message)


def test_batch__already_seen_rows__not_sent_twice():
    view = explorer(after=5)

    update = view.on_batch(batch(decision(4), decision(5), decision(6)), now=NOW)

    assert [r.sequence for r in update.rows] == [6]
    assert update.gap is None


def test_batch__another_team__only_its_kinds_never_its_rows():
    view = explorer()
    update = view.on_batch(batch(decision(1, team=OTHER), team=OTHER), now=NOW)

    assert update.rows == [] and update.gap is None
    assert update.changed == {live.Kind.DECISIONS}
    assert view.last_decisions == 0


def test_batch__kinds_the_page_does_not_want__say_nothing():
    view = explorer()

    update = view.on_batch(batch(trail(1, EventType.POLICY_PUBLISHED)), now=NOW)

    assert view.render(update) is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"change": "member_removed", "user_id": "7"}, True),
        ({"change": "member_removed", "user_id": "8"}, False),
        ({"change": "options"}, True),
    ],
)
def test_batch__team_change__rechecks_membership_at_once_when_it_may_concern_the_person(data, expected):
    view = explorer()

    update = view.on_batch(batch(trail(1, EventType.TEAM_CHANGED, **data)), now=NOW + 1)

    assert update.recheck_membership is expected


def test_batch__after_the_interval__rechecks_membership():
    view = explorer()

    assert view.on_batch(batch(decision(1)), now=NOW + 1).recheck_membership is False
    assert (
        view.on_batch(batch(decision(2)), now=NOW + live.MEMBERSHIP_RECHECK_SECONDS).recheck_membership
        is True
    )


def test_membership_checked__lost_teams__leaves_them():
    view = explorer()

    lost = view.membership_checked(frozenset({TEAM}), now=NOW)

    assert lost == {OTHER}
    assert view.subscription.team_ids == {TEAM}


def test_events_stream_gap__refreshes_every_trail_kind():
    view = live.LiveView(
        live.Subscription(
            user_id=7,
            team_ids=frozenset({TEAM}),
            kinds=frozenset(live.Kind),
            page_team_id=TEAM,
            after_events=2,
        ),
        now=NOW,
    )

    update = view.on_batch(batch(trail(5, EventType.APPROVAL_RESOLVED, approval_id="a")), now=NOW)

    assert update.changed == {live.Kind.APPROVALS, live.Kind.POLICIES, live.Kind.TEAM}


def test_on_connect__heads_past_the_cursor__fill_rows_and_refresh():
    view = explorer(after=3, events_after=None)

    update = view.on_connect(decisions_head=6, events_head=2)

    assert update.gap == live.Gap(TEAM, 3, None)
    assert update.changed == {live.Kind.DECISIONS}


def test_on_connect__nothing_new__says_nothing():
    view = explorer(after=6, events_after=2)

    update = view.on_connect(decisions_head=6, events_head=2)

    assert view.render(update) is None


def test_filled__more_than_the_limit__tells_the_page_to_reload_its_rows():
    view = explorer(after=0)
    rows = [decision(n)[1] for n in range(1, 4)]

    update = view.filled(rows, gap=live.Gap(TEAM, 0, None), complete=False)
    message = view.render(update)

    assert message is not None and 'data-reload-rows="1"' in message
    assert view.last_decisions == 3


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("kinds=bogus", "kinds"),
        ("kinds=decisions&team=not-mine", "not one of yours"),
        ("kinds=decisions&rows=1", "needs team"),
        ("kinds=decisions&team=mine&after=x", "whole number"),
        ("kinds=decisions&team=mine&after=-1", "negative"),
        ("kinds=decisions&team=mine&rows=1&decision=maybe", "filters: decision"),
        ("kinds=decisions&team=mine&rows=1&from=yesterday", "filters: from"),
    ],
)
def test_subscription_from__bad_query__refused_saying_what(query, problem):
    with pytest.raises(live.BadSubscription, match=problem):
        live.subscription_from(user_id=1, visible_teams={"mine": TEAM}, params=live.parse_query(query))


def test_socket_query__round_trips_through_subscription_from():
    query = live.socket_query(
        kinds=["decisions"],
        team_slug="mine",
        rows=True,
        filters=ExplorerFilters(tool="export"),
        after_decisions=12,
        after_events=3,
    )

    sub = live.subscription_from(user_id=1, visible_teams={"mine": TEAM}, params=live.parse_query(query))

    assert (sub.page_team_id, sub.rows, sub.filters.tool, sub.after_decisions, sub.after_events) == (
        TEAM,
        True,
        "export",
        12,
        3,
    )


# --- what a process's sockets share ---------------------------------------------------------------


def test_team_change_batch__membership_read_must_start_after_the_batch_came():
    view, other_tab = explorer(), explorer()
    change = batch(trail(1, EventType.TEAM_CHANGED, change="member_removed", user_id="7"))

    updates = [v.on_batch(change, now=change.received + 0.2) for v in (view, other_tab)]

    # Both tabs may use one read, but only one that started after the process had the batch
    assert [(u.recheck_membership, u.membership_not_before) for u in updates] == [
        (True, change.received),
        (True, change.received),
    ]


def test_periodic_recheck__a_read_within_the_interval_will_do():
    view = explorer()

    update = view.on_batch(batch(decision(1)), now=NOW + live.MEMBERSHIP_RECHECK_SECONDS + 2)

    assert update.recheck_membership is True
    assert update.membership_not_before == NOW + 2


def test_hole__the_same_gap_due_at_the_same_moment_for_every_socket_of_the_process():
    views = [explorer(), explorer()]
    late = batch(decision(3))

    for view in views:
        view.on_batch(late, now=late.received)
    gaps = [view.hole_due(now=late.received + live.HOLE_GRACE_SECONDS) for view in views]

    assert gaps[0] is not None and gaps[1] is not None
    assert gaps[0].key() == gaps[1].key() == (TEAM, 0, 3)
    assert gaps[0].not_before == gaps[1].not_before == late.received + live.HOLE_GRACE_SECONDS


def test_shared_reads__waiters_at_once__one_read():
    async def scenario() -> tuple[list[tuple[float, str]], int]:
        shared: live.SharedReads[str, str] = live.SharedReads(keep_seconds=5, clock=lambda: 10.0)
        calls = []

        async def read() -> str:
            calls.append(1)
            await asyncio.sleep(0.01)
            return "teams"

        answers = await asyncio.gather(*(shared.get("alice", not_before=10.0, read=read) for _ in range(3)))
        return list(answers), len(calls)

    answers, reads = asyncio.run(scenario())

    assert answers == [(10.0, "teams")] * 3
    assert reads == 1


def test_shared_reads__older_than_asked_or_failed__read_again():
    async def scenario() -> list[str]:
        clock = [10.0]
        shared: live.SharedReads[str, str] = live.SharedReads(keep_seconds=5, clock=lambda: clock[0])
        values = iter(["first", "second", "third"])

        async def read() -> str:
            value = next(values)
            if value == "second":
                raise RuntimeError("database away")
            return value

        got = [(await shared.get("k", not_before=0.0, read=read))[1]]
        clock[0] = 11.0
        got.append((await shared.get("k", not_before=10.0, read=read))[1])  # 10.0 will do
        with pytest.raises(RuntimeError):
            await shared.get("k", not_before=10.5, read=read)  # started before 10.5: a new read
        got.append((await shared.get("k", not_before=10.5, read=read))[1])  # a failure is not kept
        return got

    assert asyncio.run(scenario()) == ["first", "first", "third"]


def test_shared_reads__a_waiter_that_goes_away__does_not_cancel_the_others():
    async def scenario() -> str:
        shared: live.SharedReads[str, str] = live.SharedReads(keep_seconds=5)
        release = asyncio.Event()

        async def read() -> str:
            await release.wait()
            return "rows"

        gone = asyncio.ensure_future(shared.get("k", not_before=0.0, read=read))
        staying = asyncio.ensure_future(shared.get("k", not_before=0.0, read=read))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        return (await staying)[1]

    assert asyncio.run(scenario()) == "rows"


# --- LiveConsumer's sockets of one process (in-memory layer, the reads counted) --------------------


@pytest.fixture
def process(settings, monkeypatch):
    """One process's live path: its own shared reads, and the person's teams as the test says."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(
        consumers, "MEMBERSHIP", live.SharedReads(keep_seconds=live.MEMBERSHIP_RECHECK_SECONDS)
    )
    monkeypatch.setattr(consumers, "FILLS", live.SharedReads(keep_seconds=live.FILL_KEEP_SECONDS))
    state = SimpleNamespace(visible={"mine": TEAM, "other": OTHER}, membership_reads=0, fills=0, rows=[])

    def visible_teams_of(*, user_id: int, session_key: str | None = None) -> dict[str, uuid.UUID]:
        state.membership_reads += 1
        return dict(state.visible)

    def decisions_after(*, team_id, after, upto, limit):
        state.fills += 1
        return [r for r in state.rows if after < r.sequence <= (upto or 10**9)], True

    monkeypatch.setattr(consumers.selectors, "visible_teams_of", visible_teams_of)
    monkeypatch.setattr(consumers.selectors, "chain_heads_of", lambda *, team_id: (None, None))
    monkeypatch.setattr(consumers.selectors, "decisions_after", decisions_after)
    monkeypatch.setattr(consumers.selectors, "team_slugs_of", lambda *, team_ids: {})
    monkeypatch.setattr(consumers.rendering, "live_rows", lambda decisions, *, team_slugs: list(decisions))
    return state


def tab(query: str) -> ApplicationCommunicator:
    """A socket of alice's one browser session (channels.testing needs daphne: asgiref's own)."""
    scope = {
        "type": "websocket",
        "path": "/ws/live/",
        "query_string": query.encode(),
        "headers": [],
        "subprotocols": [],
        "user": SimpleNamespace(pk=7, is_authenticated=True),
        "session": SimpleNamespace(session_key="alice-session"),
    }
    return ApplicationCommunicator(consumers.LiveConsumer.as_asgi(), scope)


async def open_tabs(count: int, query: str = "kinds=decisions&team=mine&rows=1&after=0"):
    """``count`` explorer sockets, connected."""
    tabs = []
    for _ in range(count):
        socket = tab(query)
        await socket.send_input({"type": "websocket.connect"})
        assert (await socket.receive_output(timeout=1.0))["type"] == "websocket.accept"
        tabs.append(socket)
    return tabs


async def text_of(socket: ApplicationCommunicator) -> str:
    output = await socket.receive_output(timeout=1.0)
    assert output["type"] == "websocket.send", output
    return str(output["text"])


async def send_batch(*items: Event | tuple[Event, live.LiveRow]) -> None:
    events = [i[0] if isinstance(i, tuple) else i for i in items]
    rows = [i[1] for i in items if isinstance(i, tuple)]
    message = live.batch_message(team_id=TEAM, events=[encode_event(e) for e in events], rows=rows)
    await get_channel_layer().group_send(live.team_group(TEAM), message)


async def closes(socket: ApplicationCommunicator) -> int | None:
    """The close code the socket ends with (messages before it skipped), None if it stays open."""
    try:
        while True:
            output = await socket.receive_output(timeout=1.0)
            if output["type"] == "websocket.close":
                return output.get("code")
    except TimeoutError:
        return None


def test_consumer__member_removed__one_shared_read_closes_every_tab(process, monkeypatch):
    monkeypatch.setattr(live, "MEMBERSHIP_RECHECK_SECONDS", 0.2)

    async def scenario() -> list[int | None]:
        tabs = await open_tabs(3)
        process.membership_reads = 0
        # When alice loses the team, and the next batch comes after the recheck interval
        process.visible = {"other": OTHER}
        await asyncio.sleep(0.3)
        await send_batch(decision(1))
        return await asyncio.gather(*(closes(tab) for tab in tabs))

    # Then each tab is closed as forbidden, after one read of her teams for the three
    assert asyncio.run(scenario()) == [4403, 4403, 4403]
    assert process.membership_reads == 1


def test_consumer__team_change_naming_her__every_tab_closes_at_once_after_one_read(process):
    async def scenario() -> list[int | None]:
        tabs = await open_tabs(2)
        process.membership_reads = 0
        process.visible = {}  # signed out / in no team: unauthenticated
        await send_batch(trail(1, EventType.TEAM_CHANGED, change="member_removed", user_id="7"))
        return await asyncio.gather(*(closes(tab) for tab in tabs))

    assert asyncio.run(scenario()) == [4401, 4401]
    assert process.membership_reads == 1


def test_consumer__lost_row__one_fill_serves_every_tab(process, monkeypatch):
    monkeypatch.setattr(live, "HOLE_GRACE_SECONDS", 0.1)
    lost, later = decision(1), decision(2)
    process.rows = [lost[1]]

    async def scenario() -> list[str]:
        tabs = await open_tabs(2)
        await send_batch(later)  # row 1's batch never comes
        messages = []
        for socket in tabs:
            messages.append(await text_of(socket))  # row 2
            messages.append(await text_of(socket))  # row 1, filled after the grace
        for socket in tabs:
            await socket.send_input({"type": "websocket.disconnect", "code": 1000})
            await socket.wait(timeout=1.0)
        return messages

    messages = asyncio.run(scenario())

    assert [lost[1].id in m for m in messages] == [False, True, False, True]
    assert process.fills == 1


def test_consumer__batches__no_thread_hop_per_socket_and_message(process, monkeypatch):
    import channels.consumer

    hops = []

    async def close_old_connections() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", close_old_connections)

    async def scenario() -> list[str]:
        tabs = await open_tabs(3)
        await send_batch(decision(1))
        return [await text_of(socket) for socket in tabs]

    messages = asyncio.run(scenario())

    assert len(messages) == 3
    assert hops == []


def test_consumer__filters_the_explorer_cannot_use__closed_as_a_bad_request(process):
    async def scenario() -> int | None:
        socket = tab("kinds=decisions&team=mine&rows=1&decision=maybe")
        await socket.send_input({"type": "websocket.connect"})
        return await closes(socket)

    assert asyncio.run(scenario()) == 4400


# --- the sink: a batch that cannot be sent goes again ---------------------------------------------


def test_sink__send_fails__the_batch_goes_again_with_the_next_flush(monkeypatch):
    from dashboards import sink as sink_module

    sent: list[dict] = []
    failures = [RuntimeError("redis timeout")]

    class Layer:
        async def group_send(self, group: str, message: dict) -> None:
            if failures:
                raise failures.pop()
            sent.append(message)

    event, row = decision(5)  # its data names the row's decision
    monkeypatch.setattr(sink_module, "get_channel_layer", lambda: Layer())
    monkeypatch.setattr(sink_module, "_rows_of", lambda ids: {row.id: row})

    async def direct(function, *args):
        return function(*args)

    monkeypatch.setattr(sink_module, "run_in_db_thread", direct)
    live_sink = sink_module.LiveSink()

    async def scenario() -> None:
        live_sink._add(event)
        await live_sink.flush_once()  # Redis times out
        assert sent == []
        await live_sink.flush_once()  # the next flush sends it

    asyncio.run(scenario())

    assert [live.LiveBatch.decode(m).rows for m in sent] == [(row,)]


def test_sink__send_keeps_failing__dropped_after_the_retry_window(monkeypatch):
    from dashboards import sink as sink_module

    attempts = []

    class Layer:
        async def group_send(self, group: str, message: dict) -> None:
            attempts.append(group)
            raise RuntimeError("redis away")

    monkeypatch.setattr(sink_module, "get_channel_layer", lambda: Layer())
    live_sink = sink_module.LiveSink()

    async def scenario() -> list[bool]:
        live_sink._add(trail(1, EventType.TEAM_CHANGED, change="options"))
        # tried at 0 s, 1 s, ... while the window lasts, then dropped
        moments = [float(t) for t in range(int(sink_module.RETRY_SECONDS) + 3)]
        return [await live_sink.flush_once(now=NOW + t) for t in moments]

    outcomes = asyncio.run(scenario())

    assert len(attempts) == int(sink_module.RETRY_SECONDS) + 1
    assert outcomes[-1] is False  # nothing left to send


def test_sink__own_loop_at_process_exit__sends_what_is_pending_and_its_thread_ends(monkeypatch):
    # Given a process without a web server (a management command) whose sink runs on its own
    # thread's loop, with an event just handled and its flush interval not yet over
    from dashboards import sink as sink_module

    sent: list[dict] = []

    class Layer:
        async def group_send(self, group: str, message: dict) -> None:
            sent.append(message)

    event, row = decision(7)
    monkeypatch.setattr(sink_module, "get_channel_layer", lambda: Layer())
    monkeypatch.setattr(sink_module, "_rows_of", lambda ids: {row.id: row})
    monkeypatch.setattr(sink_module, "redis_configured", lambda: True)
    monkeypatch.setattr(sink_module.atexit, "register", lambda function: None)

    async def direct(function, *args):
        return function(*args)

    monkeypatch.setattr(sink_module, "run_in_db_thread", direct)
    live_sink = sink_module.LiveSink()
    with override_settings(VETO_LIVE_FLUSH_SECONDS=30.0):
        live_sink.handle(event)
        thread = live_sink._thread
        assert thread is not None and thread.is_alive()

        # When the process exits (what atexit calls)
        live_sink.close_own_loop(timeout=5.0)

    # Then the pending batch went out at once and the thread is over (nothing left to kill)
    assert not thread.is_alive()
    assert [live.LiveBatch.decode(m).rows for m in sent] == [(row,)]


# --- the sink: teams nobody listens to cost nothing -------------------------------------------------


def _sink_reading_rows(monkeypatch, rows: dict[str, live.LiveRow]) -> list[list[str]]:
    """Point the sink's row reads at ``rows``; returns the ids of every read, as they happen."""
    from dashboards import sink as sink_module

    reads: list[list[str]] = []

    def rows_of(ids: list[str]) -> dict[str, live.LiveRow]:
        reads.append(sorted(ids))
        return {i: rows[i] for i in ids}

    async def direct(function, *args):
        return function(*args)

    monkeypatch.setattr(sink_module, "_rows_of", rows_of)
    monkeypatch.setattr(sink_module, "run_in_db_thread", direct)
    return reads


def test_sink__in_memory__only_teams_with_a_listener_read_render_and_send(settings, monkeypatch):
    # Given two teams' decisions, and a socket listening to one team's group only
    from dashboards import sink as sink_module

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    watched_event, watched_row = decision(1, team=TEAM)
    quiet_event, quiet_row = decision(1, team=OTHER)
    reads = _sink_reading_rows(monkeypatch, {watched_row.id: watched_row, quiet_row.id: quiet_row})

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(live.team_group(TEAM), channel)
        live_sink = sink_module.LiveSink()
        live_sink._add(watched_event)
        live_sink._add(quiet_event)
        assert await live_sink.flush_once() is False
        received = [await layer.receive(channel)]
        assert layer.groups.get(live.team_group(OTHER)) is None
        return received

    received = asyncio.run(scenario())

    # Then only the listened-to team's row was read and sent; the other's was never read
    assert reads == [[watched_row.id]]
    assert [live.LiveBatch.decode(m).rows for m in received] == [(watched_row,)]


def test_sink__in_memory__nobody_listening__no_read_at_all(settings, monkeypatch):
    from dashboards import sink as sink_module

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    event, row = decision(3)
    reads = _sink_reading_rows(monkeypatch, {row.id: row})

    async def scenario() -> bool:
        live_sink = sink_module.LiveSink()
        live_sink._add(event)
        return await live_sink.flush_once()

    assert asyncio.run(scenario()) is False  # nothing failed, nothing to try again
    assert reads == []


def test_sink__layer_cannot_say__every_team_sent_as_before(monkeypatch):
    # A layer the sink cannot ask (neither in-memory nor Redis pub/sub): nothing is skipped.
    from dashboards import sink as sink_module

    sent: list[str] = []

    class Layer:
        async def group_send(self, group: str, message: dict) -> None:
            sent.append(group)

    event, row = decision(4, team=OTHER)
    reads = _sink_reading_rows(monkeypatch, {row.id: row})
    monkeypatch.setattr(sink_module, "get_channel_layer", lambda: Layer())

    async def scenario() -> None:
        live_sink = sink_module.LiveSink()
        live_sink._add(event)
        await live_sink.flush_once()

    asyncio.run(scenario())

    assert reads == [[row.id]]
    assert sent == [live.team_group(OTHER)]


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the pub/sub layer needs REDIS_URL")
def test_sink__redis_pubsub__listeners_counted_across_processes_by_numsub(settings, monkeypatch):
    # Given the production layer (Redis pub/sub) and a listener to one team's group, subscribed
    # through its own layer instance, as another web process would be
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from dashboards import sink as sink_module

    config = settings.CHANNEL_LAYERS["default"]
    assert config["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    prefix = f"{config['CONFIG'].get('prefix', 'asgi')}-sink-test-{uuid.uuid4().hex[:8]}"
    sink_layer = RedisPubSubChannelLayer(**{**config["CONFIG"], "prefix": prefix})
    other_process = RedisPubSubChannelLayer(**{**config["CONFIG"], "prefix": prefix})
    watched_event, watched_row = decision(1, team=TEAM)
    quiet_event, quiet_row = decision(1, team=OTHER)
    reads = _sink_reading_rows(monkeypatch, {watched_row.id: watched_row, quiet_row.id: quiet_row})
    monkeypatch.setattr(sink_module, "get_channel_layer", lambda: sink_layer)

    async def scenario() -> dict:
        channel = await other_process.new_channel()
        await other_process.group_add(live.team_group(TEAM), channel)
        try:
            live_sink = sink_module.LiveSink()
            live_sink._add(watched_event)
            live_sink._add(quiet_event)
            assert await live_sink.flush_once() is False
            async with asyncio.timeout(5):
                return await other_process.receive(channel)
        finally:
            await other_process.group_discard(live.team_group(TEAM), channel)
            await other_process.flush()
            await sink_layer.flush()

    received = asyncio.run(scenario())

    assert reads == [[watched_row.id]]
    assert live.LiveBatch.decode(received).rows == (watched_row,)
