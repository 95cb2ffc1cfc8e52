"""Past the deadline, every read says so at once: expired (or escalated, where the rule says
``escalate_to``), whether or not the sweep has run; the sweep still records it, once.

The SDK's poll (the gateway, live) is in test_poll_live.py; here the service, the admin API
(VetoAdmin's lists) and the pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.models import Approval, ApprovalEvent
from approvals.services import approval_resolve, approval_settle_due, approvals_expire_due
from tenancy.actor import Actor
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory, api_key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def alice(team):
    user = UserFactory(username="alice")
    ApproverGroupFactory(team=team, slug="compliance").members.add(user)
    return user


@pytest.fixture
def carol(team):
    user = UserFactory(username="carol")
    ApproverGroupFactory(team=team, slug="security").members.add(user)
    return user


def overdue(team, **fields) -> Approval:
    return ApprovalFactory(
        team=team, approver_groups=["compliance"], expires_at=timezone.now() - timedelta(seconds=2), **fields
    )


def actions(approval: Approval) -> list[str]:
    return list(approval.events.order_by("created_at", "id").values_list("action", flat=True))


def test_settle_due__past_deadline_no_sweep__expired_at_the_deadline_and_the_sweep_adds_nothing(team):
    # Given an approval two seconds past its deadline, and no sweep since
    approval = overdue(team)

    # When it is read (twice), and the sweep runs afterwards
    first = approval_settle_due(approval=approval)
    second = approval_settle_due(approval=Approval.objects.get(pk=approval.pk))
    swept = approvals_expire_due()

    # Then it reads expired, timed at its deadline, and the expiry is recorded exactly once
    assert (first.status, second.status, swept) == ("expired", "expired", 0)
    assert (first.resolved_by, first.resolved_at) == ("system:timeout", approval.expires_at)
    assert actions(approval) == [ApprovalEvent.Action.EXPIRED]


def test_settle_due__before_the_deadline__unchanged_without_a_query(team, django_assert_num_queries):
    approval = ApprovalFactory(team=team)

    with django_assert_num_queries(0):
        assert approval_settle_due(approval=approval).status == Approval.Status.PENDING


def test_resolve__escalating_approval_just_past_its_deadline__the_escalation_group_decides_at_once(
    team, alice, carol
):
    # Given an approval with escalate_to=security, past its deadline, and no sweep since
    approval = overdue(team, escalate_to=["security"], timeout_seconds=600)
    deadline = approval.expires_at

    # When carol (security) approves it right away
    outcome = approval_resolve(approval=approval, actor=Actor.person(carol), action="approve")

    # Then it was escalated at the deadline (once) and her approval decides it
    approval.refresh_from_db()
    assert (outcome.resolved, approval.status, approval.resolved_by) == (True, "approved", "carol")
    assert approval.escalated_at == deadline
    assert actions(approval) == [
        ApprovalEvent.Action.ESCALATED,
        ApprovalEvent.Action.APPROVE,
        ApprovalEvent.Action.APPROVED,
    ]
    assert approvals_expire_due() == 0


def test_settle_due__escalated_long_ago_and_its_second_deadline_passed_too__expired_once(team, carol):
    # Given an escalating approval whose deadline and the escalation's (deadline + 60 s) both passed
    approval = ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        escalate_to=["security"],
        timeout_seconds=60,
        expires_at=timezone.now() - timedelta(seconds=90),
    )

    # When it is read
    settled = approval_settle_due(approval=approval)

    # Then it reads as if swept on time: escalated, then expired at the second deadline
    assert settled.status == Approval.Status.EXPIRED
    assert settled.resolved_at == approval.expires_at + timedelta(seconds=60)
    assert actions(approval) == [ApprovalEvent.Action.ESCALATED, ApprovalEvent.Action.EXPIRED]
    assert approvals_expire_due() == 0


# The admin API, as VetoAdmin reads it


def test_admin_lists__past_deadline_no_sweep__not_pending_but_expired(team):
    # Given one approval past its deadline and one still open, and no sweep
    late, still_open = overdue(team), ApprovalFactory(team=team)
    client = APIClient()
    client.credentials(HTTP_X_VETO_API_KEY=api_key_for(team))

    # When VetoAdmin lists pending approvals, and approvals by status
    pending = client.get("/v1/approvals/pending").json()["data"]
    expired = client.get("/v1/approvals", {"status": "expired"}).json()["data"]
    everything = {a["id"]: a["status"] for a in client.get("/v1/approvals").json()["data"]}

    # Then the late one reads expired everywhere, and its expiry is recorded once
    assert [a["id"] for a in pending] == [str(still_open.id)]
    assert [a["id"] for a in expired] == [str(late.id)]
    assert everything == {str(late.id): "expired", str(still_open.id): "pending"}
    assert approvals_expire_due() == 0
    assert actions(late) == [ApprovalEvent.Action.EXPIRED]


# The pages


def test_queue_page__past_deadline_no_sweep__expired_gone_escalated_in_the_new_groups_queue(
    team, alice, carol
):
    # Given, past their deadlines with no sweep: one that expires and one that escalates to security
    expiring = overdue(team, tool_name="expiring_tool")
    escalating = overdue(team, tool_name="escalating_tool", escalate_to=["security"])
    alices, carols = Client(), Client()
    alices.force_login(alice)
    carols.force_login(carol)

    # When alice (compliance) and carol (security) open their queues
    alice_sees = alices.get(reverse("approvals:queue")).content.decode()
    carol_sees = carols.get(reverse("approvals:queue")).content.decode()

    # Then neither is alice's any more, and the escalated one is carol's now
    assert "expiring_tool" not in alice_sees and "escalating_tool" not in alice_sees
    assert f"approval-{escalating.id}" in carol_sees and "expiring_tool" not in carol_sees
    expiring.refresh_from_db()
    assert expiring.status == Approval.Status.EXPIRED
    assert approvals_expire_due() == 0


def test_detail_page__past_deadline_no_sweep__reads_expired(team, alice):
    approval = overdue(team)
    client = Client()
    client.force_login(alice)

    html = client.get(reverse("approvals:detail", args=[approval.id])).content.decode()

    approval.refresh_from_db()
    assert approval.status == Approval.Status.EXPIRED
    assert "Expired" in html
    assert actions(approval) == [ApprovalEvent.Action.EXPIRED]
