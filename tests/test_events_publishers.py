"""The publishers of the event path: an approval's trail entries announce it after commit (a
resolve, an expiry), at the entry's sequence, and a failing handler never fails the write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import Approval
from approvals.services import approval_resolve, approvals_expire_due
from audit.models import AuditEvent
from common import events
from common.events import Event, EventType
from tenancy.actor import Actor
from tests.event_recording import recording
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def approval_and_approver():
    team = TeamFactory()
    group = ApproverGroupFactory(team=team, slug="compliance")
    alice = UserFactory(username="alice")
    group.members.add(alice)
    return ApprovalFactory(team=team, approver_groups=["compliance"]), alice


def test_resolve__a_handler_raises__the_resolve_commits_and_the_other_handlers_hear_it(approval_and_approver):
    # Given a handler that fails on every event, and another one
    approval, alice = approval_and_approver

    def broken(event: Event) -> None:
        raise RuntimeError("a broken sink")

    unsubscribe = events.subscribe(broken, EventType.APPROVAL_RESOLVED)
    try:
        with recording(EventType.APPROVAL_RESOLVED) as heard:
            # When the approval is resolved
            outcome = approval_resolve(
                approval=approval, actor=Actor.person(alice), action="deny", comment="no"
            )
    finally:
        unsubscribe()

    # Then the resolve succeeded and is stored, and the working handler heard it with its status
    assert outcome.resolved
    assert Approval.objects.get(pk=approval.pk).status == Approval.Status.DENIED
    assert [(e.type, e.data["approval_id"], e.data["status"]) for e in heard] == [
        (EventType.APPROVAL_RESOLVED, str(approval.id), "denied")
    ]


def test_expiry__announced_as_approval_expired_with_its_trail_sequence(approval_and_approver):
    approval, _ = approval_and_approver
    Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with recording(EventType.APPROVAL_EXPIRED) as heard:
        assert approvals_expire_due() == 1
    entry = AuditEvent.objects.get(team_id=approval.team_id)
    assert [(e.type, e.stream, e.sequence, e.data["approval_id"]) for e in heard] == [
        (EventType.APPROVAL_EXPIRED, "events", entry.sequence, str(approval.id))
    ]
