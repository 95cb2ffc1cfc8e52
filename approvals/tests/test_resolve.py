"""Resolving approvals: who may, quorum, exactly once, self-approval, escalation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import Approval, ApprovalEvent
from approvals.selectors import approval_may_decide, approvals_queue_for
from approvals.services import AlreadyResolved, NotAnApprover, approval_resolve, approvals_expire_due
from tenancy.actor import Actor
from tenancy.models import Membership
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def compliance(team):
    group = ApproverGroupFactory(team=team, slug="compliance")
    group.members.add(UserFactory(username="alice"), UserFactory(username="bob"))
    return group


def user(name):
    return UserFactory(username=name)


def trail(approval):
    return list(approval.events.values_list("action", "actor_name"))


def test_resolve__deny_by_a_group_member__denied_at_once_with_comment(team, compliance):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], min_approvals=2)

    outcome = approval_resolve(
        approval=approval, actor=Actor.person(user("alice")), action="deny", comment="no PII leaves"
    )

    approval.refresh_from_db()
    assert outcome.resolved
    assert (approval.status, approval.resolved_by, approval.resolution_comment) == (
        "denied",
        "alice",
        "no PII leaves",
    )
    assert trail(approval) == [("deny", "alice")]


def test_resolve__quorum_of_two__second_distinct_approver_approves(team, compliance):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], min_approvals=2)

    first = approval_resolve(approval=approval, actor=Actor.person(user("alice")), action="approve")
    with pytest.raises(AlreadyResolved, match="already approved"):
        approval_resolve(approval=approval, actor=Actor.person(user("alice")), action="approve")
    approval.refresh_from_db()
    assert (first.resolved, approval.status) == (False, "pending")

    second = approval_resolve(approval=approval, actor=Actor.person(user("bob")), action="approve")

    approval.refresh_from_db()
    assert second.resolved
    assert (approval.status, approval.resolved_by) == ("approved", "alice, bob")
    assert trail(approval) == [("approve", "alice"), ("approve", "bob"), ("approved", "bob")]


def test_resolve__second_resolve__409_and_nothing_changes(team, compliance):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    approval_resolve(approval=approval, actor=Actor.person(user("alice")), action="approve")

    with pytest.raises(AlreadyResolved, match="already approved by alice"):
        approval_resolve(approval=approval, actor=Actor.person(user("bob")), action="deny")

    approval.refresh_from_db()
    assert (approval.status, approval.resolved_by) == ("approved", "alice")


def test_resolve__outsider__refused_and_the_refusal_is_in_the_trail(team, compliance):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    mallory = user("mallory")
    Membership.objects.create(user=mallory, team=team, role=Membership.Role.MEMBER)

    with pytest.raises(NotAnApprover):
        approval_resolve(approval=approval, actor=Actor.person(mallory), action="approve")

    approval.refresh_from_db()
    assert approval.status == "pending"
    assert trail(approval) == [("refused", "mallory")]


def test_resolve__own_request__cannot_approve_but_may_deny(team, compliance):
    alice = user("alice")
    alice.email = "alice@corp.example"
    alice.save()
    approval = ApprovalFactory(
        team=team, approver_groups=["compliance"], context={"user_id": "Alice@Corp.Example"}
    )

    with pytest.raises(NotAnApprover, match="own request"):
        approval_resolve(approval=approval, actor=Actor.person(alice), action="approve")
    approval_resolve(approval=approval, actor=Actor.person(alice), action="deny", comment="withdrawn")

    approval.refresh_from_db()
    assert approval.status == "denied"


def test_resolve__past_deadline_before_the_sweep__refused_as_too_late_and_expired_once(team, compliance):
    # Given an approval whose deadline passed, with no sweep since
    approval = ApprovalFactory(
        team=team, approver_groups=["compliance"], expires_at=timezone.now() - timedelta(seconds=1)
    )

    # When an approver tries to approve it
    with pytest.raises(AlreadyResolved, match="already expired"):
        approval_resolve(approval=approval, actor=Actor.person(user("alice")), action="approve")

    # Then it is expired (at its deadline), once; a later sweep finds nothing to do
    assert approvals_expire_due() == 0
    approval.refresh_from_db()
    assert (approval.status, approval.resolved_at) == ("expired", approval.expires_at)
    assert [a for a, _ in trail(approval)] == [ApprovalEvent.Action.EXPIRED]


@pytest.mark.parametrize(
    ("groups", "admins_may_approve", "admin_may_decide"),
    [(["compliance"], False, False), (["compliance"], True, True), ([], False, True)],
    ids=["groups only", "team lets admins decide", "no group: admins decide"],
)
def test_may_decide__team_admin__only_when_the_team_allows_or_no_group_is_named(
    team, compliance, groups, admins_may_approve, admin_may_decide
):
    team.admins_may_approve = admins_may_approve
    team.save()
    admin = user("root-admin")
    Membership.objects.create(user=admin, team=team, role=Membership.Role.ADMIN)
    approval = ApprovalFactory(team=team, approver_groups=groups)

    assert approval_may_decide(approval=approval, user=admin) is admin_may_decide
    assert (approval in approvals_queue_for(user=admin)) is admin_may_decide


def test_queue__oldest_first_only_what_the_user_may_decide(team, compliance):
    now = timezone.now()
    newer = ApprovalFactory(team=team, approver_groups=["compliance"], created_at=now)
    older = ApprovalFactory(team=team, approver_groups=["compliance"], created_at=now - timedelta(minutes=5))
    ApprovalFactory(team=team, approver_groups=["security"])  # another group's
    ApprovalFactory(approver_groups=["compliance"])  # another team's group of the same name

    assert approvals_queue_for(user=user("alice")) == [older, newer]


def test_sweep__escalate_to__hands_over_once_then_expires(team, compliance):
    security = ApproverGroupFactory(team=team, slug="security")
    carol = user("carol")
    security.members.add(carol)
    now = timezone.now()
    approval = ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        escalate_to=["security"],
        timeout_seconds=120,
        expires_at=now - timedelta(seconds=1),
    )

    # When the deadline passes: escalated to security, with a fresh deadline counted from the first
    assert approvals_expire_due(now=now) == 1
    approval.refresh_from_db()
    assert (approval.status, approval.approver_groups) == ("pending", ["security"])
    assert approval.expires_at == now + timedelta(seconds=119)
    assert approval_may_decide(approval=approval, user=carol)
    assert not approval_may_decide(approval=approval, user=user("alice"))

    # And when the new deadline passes too: expired, no second escalation
    assert approvals_expire_due(now=now + timedelta(seconds=121)) == 1
    approval.refresh_from_db()
    assert approval.status == Approval.Status.EXPIRED
    assert [a for a, _ in trail(approval)] == [ApprovalEvent.Action.ESCALATED, ApprovalEvent.Action.EXPIRED]
