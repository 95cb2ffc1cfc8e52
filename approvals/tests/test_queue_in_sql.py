"""The queue, its summary and the nav badge read eligibility in SQL on PostgreSQL (100,000 pending
approvals: benchmarks/scale_10m.py) and row by row elsewhere: both give what ``may_decide`` says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals import selectors
from approvals.selectors import QueueFilters
from tenancy.models import Membership
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """Two teams; alice approves for compliance and privacy in the first, is an admin of the
    second (which does not let admins decide what names a group)."""
    first, second = TeamFactory(slug="first"), TeamFactory(slug="second", admins_may_approve=False)
    alice = UserFactory(username="alice")
    for slug in ("compliance", "privacy"):
        ApproverGroupFactory(team=first, slug=slug).members.add(alice)
    Membership.objects.create(user=alice, team=second, role=Membership.Role.ADMIN)
    now = timezone.now()
    specs = [
        (first, ["compliance"], "read"),
        (first, ["privacy", "compliance"], "send"),
        (first, ["security"], "read"),  # not hers
        (first, [], "read"),  # no group, and she is no admin of first: not hers
        (second, ["compliance"], "send"),  # a group of second she is not in, admins may not
        (second, [], "delete"),  # no group: second's admins decide
        (TeamFactory(), ["compliance"], "read"),  # another team's group of the same name
    ]
    approvals = [
        ApprovalFactory(
            team=team, approver_groups=groups, tool_name=tool, created_at=now - timedelta(minutes=10 - i)
        )
        for i, (team, groups, tool) in enumerate(specs)
    ]
    return alice, approvals


def test_queue__only_what_may_decide_says__oldest_first(world):
    alice, approvals = world
    eligible = [a for a in approvals if selectors.approval_may_decide(approval=a, user=alice)]

    assert [a.tool_name for a in eligible] == ["read", "send", "delete"]  # the fixture is what it says
    assert selectors.approvals_queue_for(user=alice) == eligible
    assert selectors.approvals_pending_count_for(user=alice) == 3


def test_queue__limit_keeps_the_oldest_and_filters_apply_in_the_database(world):
    alice, approvals = world

    assert selectors.approvals_queue_for(user=alice, limit=2) == approvals[:2]
    assert selectors.approvals_queue_for(user=alice, filters=QueueFilters(group="privacy")) == [approvals[1]]
    assert selectors.approvals_queue_for(user=alice, filters=QueueFilters(team_slug="second")) == [
        approvals[5]
    ]
    assert selectors.approvals_queue_count_for(user=alice, filters=QueueFilters(tool_name="read")) == 1


def test_queue_summary__the_whole_queue_counted_with_its_choices(world):
    alice, approvals = world

    summary = selectors.approvals_queue_summary_for(user=alice)

    assert summary.total == 3
    assert summary.next_deadline == min(approvals[i].expires_at for i in (0, 1, 5))
    assert summary.groups == ["compliance", "privacy"]
    assert summary.tools == ["delete", "read", "send"]
    assert summary.teams == ["first", "second"]


def test_queue_page__lists_at_most_a_page_and_says_how_many_wait(world, client, monkeypatch):
    alice, _ = world
    monkeypatch.setattr(selectors, "QUEUE_PAGE", 2)
    client.force_login(alice)

    page = client.get(reverse("approvals:queue"))

    assert page.status_code == 200
    assert len(page.context["rows"]) == 2
    assert "3 of 3 pending approvals · the oldest 2 are listed" in page.content.decode()


def test_counts__capped_at_their_limit__shown_with_a_plus(world):
    alice, _ = world

    badge = selectors.approvals_pending_count_for(user=alice, limit=2)
    summary = selectors.approvals_queue_summary_for(user=alice, limit=2)
    matching = selectors.approvals_queue_count_for(
        user=alice, filters=QueueFilters(tool_name="read"), limit=1
    )
    exact = selectors.approvals_pending_count_for(user=alice, limit=3)

    assert (badge, badge.capped, str(badge)) == (2, True, "2+")
    assert (summary.total, summary.total.capped, str(summary.total)) == (2, True, "2+")
    assert (matching, matching.capped) == (1, False)  # one matches: exactly the limit, not past it
    assert (exact, exact.capped, str(exact)) == (3, False, "3")


def test_nav_badge__capped_count__renders_1000_plus():
    from django.template.loader import render_to_string

    html = render_to_string(
        "approvals/_nav_link.html", {"approvals_pending_count": selectors.CappedCount(1000, capped=True)}
    )

    assert '<span class="badge count" title="waiting for you">1,000+</span>' in html


def test_queue_page__more_than_the_count_limit__says_so(world, client, monkeypatch):
    alice, _ = world
    monkeypatch.setattr(selectors, "PENDING_COUNT_LIMIT", 2)
    client.force_login(alice)

    page = client.get(reverse("approvals:queue"))

    assert "2+ of 2+ pending approvals" in page.content.decode()
    assert '<span class="badge count" title="waiting for you">2+</span>' in page.content.decode()
