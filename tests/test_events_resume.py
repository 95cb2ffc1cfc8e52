"""A consumer of the event path resumes from the chain: every change of a team's governance and
every decision is announced at a gapless place in its team's order, and a consumer that missed
notifications gets exactly those events back from ``audit.selectors.team_events_after``."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import Approval
from approvals.services import NotAnApprover, approval_resolve, approvals_expire_due
from audit.models import AuditEvent, DecisionRecord
from audit.selectors import team_events_after
from common import events
from common.events import Event, EventType
from policies.services import tool_policy_create, tool_policy_update
from runtime.writer import decision_writer
from tenancy.actor import Actor
from tests.factories import (
    BY_TESTS,
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    decision_row,
    publish_rules,
)

pytestmark = pytest.mark.django_db(transaction=True)

RULES = """\
rules:
  - name: pii_export_review
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
    approvers: [compliance]
"""
TIGHTER = RULES.replace("pii_export_review", "pii_export_check")


class Consumer:
    """Hears every event; ``away`` drops what arrives (a lost notification), and ``resume`` reads
    what it missed from the chain, from the last sequence it saw."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.away = False
        self.unsubscribe = events.subscribe(self.hear, *EventType)

    def hear(self, event: Event) -> None:
        if not self.away:
            self.seen.append(event)

    def last_sequence(self, team_id: uuid.UUID, stream: str) -> int:
        return max((e.sequence for e in self.seen if (e.team_id, e.stream) == (team_id, stream)), default=0)

    def resume(self, team_id: uuid.UUID, stream: str) -> list[Event]:
        missed = team_events_after(
            team_id=team_id, stream=stream, after_sequence=self.last_sequence(team_id, stream), limit=1000
        )
        self.seen += missed
        return missed


@pytest.fixture
def consumer():
    consumer = Consumer()
    yield consumer
    consumer.unsubscribe()


@pytest.fixture
def team_and_approvers():
    team = TeamFactory()
    group = ApproverGroupFactory(team=team, slug="compliance")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    group.members.add(alice, bob)
    return team, alice, bob


def _write_decisions(rows: list[dict[str, object]], approvals: dict[int, Approval] | None = None) -> None:
    async def write() -> None:
        writer = decision_writer()
        await asyncio.gather(*(writer.write(r, (approvals or {}).get(i)) for i, r in enumerate(rows)))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # the thread writer announces on the loop, after the answers

    asyncio.run(write())


def test_resume__consumer_missed_notifications__gets_exactly_the_missed_events_from_the_chain(
    consumer, team_and_approvers
):
    team, alice, bob = team_and_approvers
    always = Consumer()  # what a consumer that missed nothing heard
    try:
        # Given a consumer that heard the first publish and the first decisions
        publish_rules(team, RULES)
        _write_decisions([decision_row(team.id), decision_row(team.id)])
        # When it misses everything for a while: a vote and a quorum, a deny, an expiry, a
        # refusal, a publish, tool-policy changes, and decisions, one of which raised an approval
        consumer.away = True
        voted = ApprovalFactory(team=team, approver_groups=["compliance"], min_approvals=2)
        approval_resolve(approval=voted, actor=Actor.person(alice), action="approve")
        approval_resolve(approval=voted, actor=Actor.person(bob), action="approve")
        denied = ApprovalFactory(team=team, approver_groups=["compliance"])
        with pytest.raises(NotAnApprover):
            approval_resolve(
                approval=denied, actor=Actor.person(UserFactory(username="mallory")), action="approve"
            )
        approval_resolve(approval=denied, actor=Actor.person(alice), action="deny", comment="no")
        ApprovalFactory(
            team=team, approver_groups=["compliance"], expires_at=timezone.now() - timedelta(seconds=1)
        )
        approvals_expire_due()
        publish_rules(team, TIGHTER)
        policy = tool_policy_create(
            team_id=team.id, data={"toolName": "transfer", "mode": "deterministic"}, actor=BY_TESTS
        )
        tool_policy_update(policy=policy, data={"mode": "deterministic", "constraints": []}, actor=BY_TESTS)
        raised = ApprovalFactory.build(team=team, id=uuid.uuid4())
        _write_decisions(
            [
                decision_row(team.id),
                decision_row(team.id, decision="require_approval", approval_id=raised.id),
            ],
            {1: raised},
        )
        consumer.away = False

        # Then resuming from the last sequences it saw gives it exactly what it missed, in order
        missed_trail = consumer.resume(team.id, "events")
        missed_decisions = consumer.resume(team.id, "decisions")
        assert missed_trail == [e for e in always.seen if e.stream == "events" and e.sequence > 1]
        assert [e.type for e in missed_trail] == [
            EventType.APPROVAL_VOTED,
            EventType.APPROVAL_VOTED,  # the second vote, then the quorum it completes
            EventType.APPROVAL_RESOLVED,
            EventType.APPROVAL_REFUSED,
            EventType.APPROVAL_RESOLVED,
            EventType.APPROVAL_EXPIRED,
            EventType.POLICY_PUBLISHED,
            EventType.TOOL_POLICY_CHANGED,
            EventType.TOOL_POLICY_CHANGED,
        ]
        assert missed_decisions == [e for e in always.seen if e.stream == "decisions" and e.sequence > 2]
        assert [(e.type, e.sequence) for e in missed_decisions] == [
            (EventType.DECISION_CREATED, 3),
            (EventType.DECISION_CREATED, 4),
            (EventType.APPROVAL_CREATED, 4),
        ]
        # And it now holds what the consumer that missed nothing holds
        assert sorted(consumer.seen, key=_order) == sorted(always.seen, key=_order)
    finally:
        always.unsubscribe()


def _order(event: Event) -> tuple[str, str, int, str]:
    return (str(event.team_id), event.stream, event.sequence, event.type)


def test_order__two_teams__each_stream_numbered_gaplessly_as_announced(consumer, team_and_approvers):
    # Given two teams whose governance and decisions change, interleaved
    team, alice, _ = team_and_approvers
    other = TeamFactory()
    ApproverGroupFactory(team=other, slug="compliance").members.add(alice)
    for round_ in range(3):
        for t in (team, other):
            approval = ApprovalFactory(team=t, approver_groups=["compliance"])
            approval_resolve(
                approval=approval, actor=Actor.person(alice), action="deny" if round_ % 2 else "approve"
            )
            tool_policy_create(
                team_id=t.id, data={"toolName": f"tool_{round_}", "mode": "deterministic"}, actor=BY_TESTS
            )
        _write_decisions([decision_row(t.id) for t in (team, other, team)])

    # Then, per team and stream, the announced sequences are 1..n without a gap, one per entry
    by_place: dict[tuple[uuid.UUID, str], list[int]] = defaultdict(list)
    for event in consumer.seen:
        if event.type != EventType.APPROVAL_CREATED:  # shares its decision's place
            by_place[(event.team_id, event.stream)].append(event.sequence)
    for t in (team, other):
        trail = sorted(by_place[(t.id, "events")])
        assert trail == list(range(1, AuditEvent.objects.filter(team=t).count() + 1))
        decisions = sorted(by_place[(t.id, "decisions")])
        assert decisions == list(range(1, DecisionRecord.objects.filter(team=t).count() + 1))
    assert len(by_place[(team.id, "decisions")]) == 6 and len(by_place[(other.id, "decisions")]) == 3


def test_resume__limit__pages_through_without_loss_or_repeat(team_and_approvers):
    team, alice, _ = team_and_approvers
    for _ in range(5):
        approval_resolve(
            approval=ApprovalFactory(team=team, approver_groups=["compliance"]),
            actor=Actor.person(alice),
            action="deny",
        )
    pages, after = [], 0
    while page := team_events_after(team_id=team.id, stream="events", after_sequence=after, limit=2):
        pages.append([e.sequence for e in page])
        after = page[-1].sequence
    assert pages == [[1, 2], [3, 4], [5]]
