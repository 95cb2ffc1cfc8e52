"""The sweep expires a batch set-based: many due at once (several batches, two teams, some
escalating) read exactly as one by one would, and an approval a person resolved between the
batch's read and its UPDATE stays as they decided it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services
from approvals.models import Approval, ApprovalEvent
from approvals.services import SWEEP_BATCH, approvals_expire_due
from audit.models import AuditEvent, ChainStream
from audit.services import chain_verify
from common.events import EventType
from tests.event_recording import recording
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _due(team, count: int, *, start, **fields) -> list[Approval]:
    rows = [
        Approval(
            team=team,
            tool_name="run_data_export",
            rule_id="block_pii_exports",
            approver_groups=["compliance"],
            expires_at=start + timedelta(milliseconds=i),
            **fields,
        )
        for i in range(count)
    ]
    return Approval.objects.bulk_create(rows)


def test_sweep__many_due_in_two_teams__each_expired_once_with_its_trail_chain_and_event():
    # Given more due than three batches hold, in two teams; some escalate (one hour, still
    # pending after), some escalate with a deadline that has passed too (escalated, then expired)
    now = timezone.now()
    first, second = TeamFactory(), TeamFactory()
    start = now - timedelta(minutes=10)
    plain = _due(first, 2 * SWEEP_BATCH, start=start) + _due(second, 150, start=start)
    escalating = _due(second, 40, start=start, escalate_to=["security"], timeout_seconds=3600)
    escalated_and_past = _due(first, 30, start=start, escalate_to=["security"], timeout_seconds=60)
    not_due = _due(first, 5, start=now + timedelta(minutes=5))

    # When the sweep runs
    with recording(EventType.APPROVAL_EXPIRED, EventType.APPROVAL_ESCALATED) as heard:
        changed = approvals_expire_due(now=now)

    # Then every due approval changed once, as one by one: expired at its deadline by the system
    assert changed == len(plain) + len(escalating) + len(escalated_and_past)
    assert approvals_expire_due(now=now) == 0  # idempotent
    statuses = dict(Approval.objects.values_list("id", "status"))
    assert {statuses[a.id] for a in plain + escalated_and_past} == {Approval.Status.EXPIRED}
    assert {statuses[a.id] for a in escalating + not_due} == {Approval.Status.PENDING}
    for a in plain[:3]:
        a.refresh_from_db()
        assert (a.resolved_by, a.resolved_at) == ("system:timeout", a.expires_at)
    late = escalated_and_past[0]
    deadline = late.expires_at
    late.refresh_from_db()
    assert late.approver_groups == ["security"]
    assert late.escalated_at == deadline
    assert late.resolved_at == late.expires_at == deadline + timedelta(seconds=60)
    still = escalating[0]
    still.refresh_from_db()
    assert (still.approver_groups, still.expires_at) == (
        ["security"],
        still.escalated_at + timedelta(hours=1),
    )

    # Each has its trail lines (escalated before expired), its chain entries and its events
    trail = Counter(ApprovalEvent.objects.values_list("action", flat=True))
    expired_count = len(plain) + len(escalated_and_past)
    escalated_count = len(escalating) + len(escalated_and_past)
    assert trail == {
        ApprovalEvent.Action.EXPIRED: expired_count,
        ApprovalEvent.Action.ESCALATED: escalated_count,
    }
    assert list(
        ApprovalEvent.objects.filter(approval=late)
        .order_by("id")
        .values_list("action", "actor_name", "channel")
    ) == [("escalated", "system:timeout", "system"), ("expired", "system:timeout", "system")]
    assert AuditEvent.objects.count() == expired_count + escalated_count
    for team in (first, second):
        result = chain_verify(team_id=team.id, stream=ChainStream.EVENTS)
        assert result.ok, result.problem
        assert result.count == AuditEvent.objects.filter(team_id=team.id).count()
    assert Counter(e.type for e in heard) == {
        EventType.APPROVAL_EXPIRED: expired_count,
        EventType.APPROVAL_ESCALATED: escalated_count,
    }
    # Announced in each team's chain order, one event per entry
    for team in (first, second):
        sequences = [e.sequence for e in heard if e.team_id == team.id]
        assert sequences == sorted(sequences) == list(range(1, len(sequences) + 1))
    assert [e.data["action"] for e in heard if e.data["approval_id"] == str(late.id)] == [
        "escalated",
        "expired",
    ]


def test_sweep__resolved_between_the_batch_read_and_its_update__left_as_decided(monkeypatch):
    # Given three approvals due, one of which a person denies after the sweep read its batch
    # (a database without row locks; on PostgreSQL the lock keeps the two apart)
    now = timezone.now()
    team = TeamFactory()
    first, decided, third = _due(team, 3, start=now - timedelta(minutes=1))
    apply = services._apply_deadlines

    def resolve_first(batch, at):
        Approval.objects.filter(pk=decided.pk).update(
            status=Approval.Status.DENIED, resolved_by="alice", resolved_at=at
        )
        return apply(batch, at)

    monkeypatch.setattr(services, "_apply_deadlines", resolve_first)

    # When the sweep applies the batch
    with recording(EventType.APPROVAL_EXPIRED) as heard:
        changed = approvals_expire_due(now=now)

    # Then the denied one stays denied by alice, with no expiry line, entry or event
    assert changed == 2
    decided.refresh_from_db()
    assert (decided.status, decided.resolved_by) == (Approval.Status.DENIED, "alice")
    assert not ApprovalEvent.objects.filter(approval=decided).exists()
    assert {a.status for a in Approval.objects.filter(pk__in=[first.pk, third.pk])} == {
        Approval.Status.EXPIRED
    }
    assert sorted(e.data["approval_id"] for e in heard) == sorted([str(first.id), str(third.id)])
    # And the chain holds the two expiries, gapless
    result = chain_verify(team_id=team.id, stream=ChainStream.EVENTS)
    assert (result.ok, result.count) == (True, 2)
