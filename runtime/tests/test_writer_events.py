"""The decision writer announces what it committed (decision.created, approval.created) at each
row's place in its team's chain, once per batch, and only when somebody listens."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from audit.models import DecisionRecord
from common import events
from common.events import Event, EventType
from runtime import writer as writer_module
from runtime.writer import decision_writer, insert_decisions
from tests.event_recording import recording
from tests.factories import ApprovalFactory, TeamFactory, decision_row

pytestmark = pytest.mark.django_db(transaction=True)


async def _write(rows: list[dict[str, object]], approvals: dict[int, object]) -> None:
    writer = decision_writer()
    await asyncio.gather(*(writer.write(r, approvals.get(i)) for i, r in enumerate(rows)))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the thread writer announces on the loop, after the answers


def test_writer__decision_raising_an_approval__announces_both_at_the_decisions_sequence():
    # Given someone listening for what the writer commits, and a team with two decisions already
    team, other = TeamFactory(), TeamFactory()
    approval = ApprovalFactory.build(team=team, id=uuid.uuid4())
    with recording(EventType.DECISION_CREATED, EventType.APPROVAL_CREATED) as heard:
        asyncio.run(_write([decision_row(team.id), decision_row(team.id)], {}))
        # When a batch holds an allow, a require_approval with its approval, and another team's row
        rows = [
            decision_row(team.id),
            decision_row(team.id, decision="require_approval", approval_id=approval.id),
            decision_row(other.id),
        ]
        asyncio.run(_write(rows, {1: approval}))

    # Then every row is announced once at its stored sequence, the approval at its decision's
    stored = dict(DecisionRecord.objects.values_list("id", "sequence"))
    decisions = [e for e in heard if e.type == EventType.DECISION_CREATED]
    assert sorted(e.data["decision_id"] for e in decisions) == sorted(str(i) for i in stored)
    assert all(e.sequence == stored[uuid.UUID(str(e.data["decision_id"]))] for e in decisions)
    assert all(e.stream == "decisions" for e in heard)
    # Gapless per team: 1..4 for the team, 1 for the other
    assert sorted(e.sequence for e in decisions if e.team_id == team.id) == [1, 2, 3, 4]
    assert [e.sequence for e in decisions if e.team_id == other.id] == [1]
    [created] = [e for e in heard if e.type == EventType.APPROVAL_CREATED]
    assert (created.team_id, created.sequence, created.data) == (
        team.id,
        stored[rows[1]["id"]],  # type: ignore[index]
        {"approval_id": str(approval.id), "decision_id": str(rows[1]["id"])},
    )
    # And no call's arguments or context travel with them
    assert all(set(e.data) <= {"decision_id", "decision", "approval_id"} for e in decisions)


def test_writer__nobody_listens__builds_no_events(monkeypatch, no_event_subscribers):
    # Given nobody subscribed to what the writer announces
    assert not events.wanted() & {EventType.DECISION_CREATED, EventType.APPROVAL_CREATED}
    built: list[object] = []
    monkeypatch.setattr(writer_module, "decision_events", lambda row: built.append(row) or [])
    team = TeamFactory()
    # When decisions are written
    asyncio.run(_write([decision_row(team.id) for _ in range(5)], {}))
    # Then they are stored and no event was built for them
    assert DecisionRecord.objects.filter(team=team).count() == 5
    assert built == []


def test_writer__a_handler_raises__the_decisions_are_still_recorded_and_answered():
    def broken(event: Event) -> None:
        raise RuntimeError("a broken sink")

    unsubscribe = events.subscribe(broken, EventType.DECISION_CREATED)
    try:
        team = TeamFactory()
        # When the writer commits while a handler fails
        asyncio.run(_write([decision_row(team.id) for _ in range(3)], {}))
        asyncio.run(_write([decision_row(team.id)], {}))
    finally:
        unsubscribe()
    # Then every waiter heard back (no exception above) and every row is stored
    assert DecisionRecord.objects.filter(team=team).count() == 4


def test_insert_decisions__numbered__each_row_holds_its_stored_sequence():
    # Given a team with a decision already (the thread writer's path, on either database)
    team = TeamFactory()
    insert_decisions([decision_row(team.id)], [])
    rows = [decision_row(team.id) for _ in range(3)]
    # When a batch is inserted numbered (as when somebody listens)
    insert_decisions(rows, [], numbered=True)
    # Then every row carries the sequence it was stored at
    stored = dict(DecisionRecord.objects.values_list("id", "sequence"))
    assert [r["sequence"] for r in rows] == [stored[r["id"]] for r in rows] == [2, 3, 4]  # type: ignore[index]
