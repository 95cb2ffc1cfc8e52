"""LiveView without the network: what a page receives for a batch, when it must fill a gap, and
when it must re-check who may see what."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from common.events import Event, EventType, encode_event
from dashboards import live
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
