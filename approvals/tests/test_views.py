"""The approvals pages (Django test client): the queue, one approval, approve / deny, history, the
nav badge; who sees and does what; htmx fragments; bad input never 500s."""

from __future__ import annotations

import math
import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals.context_processors import pending_approvals
from approvals.models import Approval, ApprovalEvent
from tenancy.models import Membership
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory, record_decision

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def team():
    return TeamFactory(slug="payments", name="Payments")


@pytest.fixture
def alice(team):
    """In the compliance group; not a member of the team (rules may name outside approvers)."""
    user = UserFactory(username="alice")
    ApproverGroupFactory(team=team, slug="compliance").members.add(user)
    return user


@pytest.fixture
def bob(team):
    user = UserFactory(username="bob")
    Membership.objects.create(user=user, team=team)
    team.approver_groups.get(slug="compliance").members.add(user)
    return user


@pytest.fixture
def carol(team):
    """A member of the team in no approver group."""
    user = UserFactory(username="carol")
    Membership.objects.create(user=user, team=team)
    return user


@pytest.fixture
def approval(team, alice):
    return ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        arguments={"to": "dana@example.com", "include_pii": True},
        context={"session_id": "s-1", "custom": {"model": "gpt-5", "environment": "production"}},
        rule_name="Exports with PII",
        reason="PII exports need a compliance review",
        severity="high",
    )


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def detail_url(approval) -> str:
    return reverse("approvals:detail", args=[approval.id])


def decide_url(approval) -> str:
    return reverse("approvals:decide", args=[approval.id])


def html_of(response) -> str:
    return response.content.decode()


# The queue


def test_queue__approver__sees_only_what_they_may_decide_oldest_first(team, alice, approval):
    # Given approvals alice may decide (one older), and others she may not
    older = ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        tool_name="send_sms",
        context={"model": "claude", "environment": "staging"},
        created_at=timezone.now() - timedelta(minutes=5),
    )
    ApprovalFactory(team=team, approver_groups=["engineering-leads"], tool_name="deploy_workflow")
    ApprovalFactory(approver_groups=["compliance"], tool_name="other_teams_tool")  # another team
    ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        tool_name="already_decided",
        status=Approval.Status.APPROVED,
        resolved_at=timezone.now(),
    )

    # When she opens the queue
    response = client_for(alice).get(reverse("approvals:queue"))

    # Then she sees her two, oldest first, with model and environment from either place in the context
    html = html_of(response)
    assert response.status_code == 200
    assert html.index(f"approval-{older.id}") < html.index(f"approval-{approval.id}")
    for hidden in ("deploy_workflow", "other_teams_tool", "already_decided"):
        assert hidden not in html
    assert "gpt-5" in html and "production" in html
    assert "claude" in html and "staging" in html
    assert "2 of 2 pending approvals" in html


def test_queue__filters_by_tool_and_group__without_javascript(team, alice, approval):
    ApprovalFactory(team=team, approver_groups=["compliance"], tool_name="send_sms")
    client = client_for(alice)

    by_tool = html_of(client.get(reverse("approvals:queue"), {"tool": "send_sms"}))
    by_other_group = html_of(client.get(reverse("approvals:queue"), {"group": "privacy-office"}))

    assert "send_sms" in by_tool and f"approval-{approval.id}" not in by_tool
    assert "1 of 2 pending approvals match the filters" in by_tool
    assert '<option value="send_sms" selected>' in by_tool
    assert "No pending approval matches these filters." in by_other_group


def test_queue__htmx_filter__returns_only_the_results(alice, approval):
    response = client_for(alice).get(reverse("approvals:queue"), {"tool": "run_data_export"}, **HTMX)

    html = html_of(response)
    assert response.status_code == 200
    assert "<html" not in html and html.startswith('<div id="queue-results" ')
    assert f"approval-{approval.id}" in html
    assert "HX-Request" in response["Vary"]
    # and the results refresh themselves live from the same filters, so the element stays one
    assert 'hx-get="/dashboard/approvals/?tool=run_data_export"' in html.split(">", 1)[0]


def _without_delay(markup: str) -> str:
    return re.sub(r"load delay:\d+s", "load delay:Ns", markup)


def test_queue__live_refresh__same_element_with_its_filters_and_a_refresh_past_the_next_deadline(
    team, alice, approval
):
    # Given a second approval whose deadline is the nearer one (90.x s away)
    deadline = timezone.now() + timedelta(seconds=90.5)
    ApprovalFactory(team=team, approver_groups=["compliance"], expires_at=deadline)

    # When the page is drawn, and when its results element asks for itself
    drawn_from = timezone.now()
    page = html_of(client_for(alice).get(reverse("approvals:queue"), {"group": "compliance"}))
    fragment = html_of(client_for(alice).get(reverse("approvals:queue"), {"group": "compliance"}, **HTMX))
    drawn_until = timezone.now()

    # Then both declare the same live element, refreshing on approvals and just past the
    # deadline (the delay counts down between the two draws: compared apart)
    opening = fragment.split(">", 1)[0] + ">"
    assert _without_delay(opening) in _without_delay(page)
    for attribute in (
        'hx-get="/dashboard/approvals/?group=compliance"',
        'hx-swap="outerHTML"',
        'data-live-refresh="approvals"',
    ):
        assert attribute in opening
    # (whole seconds, a second past the deadline as seen when it was drawn)
    delay = re.search(r'hx-trigger="live-refresh, load delay:(\d+)s"', opening)
    assert delay is not None
    left_at_most = (deadline - drawn_from).total_seconds()
    left_at_least = (deadline - drawn_until).total_seconds()
    assert math.ceil(left_at_least) + 1 <= int(delay.group(1)) <= math.ceil(left_at_most) + 1


def test_queue__waiting_column__humane_age_not_zero_minutes(team, alice):
    # Given approvals raised just now, 45 s, 3 minutes and 2 h 5 min ago
    now = timezone.now()
    for seconds in (2, 45, 180, 7500):
        ApprovalFactory(
            team=team, approver_groups=["compliance"], created_at=now - timedelta(seconds=seconds)
        )

    html = html_of(client_for(alice).get(reverse("approvals:queue")))

    # Then the Waiting column says so, with the card label for a phone
    for words in ("just now", "45 s", "3 min", "2 h 5 min"):
        assert f">{words}</td>" in html, words
    assert "0 minutes" not in html
    assert 'data-label="Waiting"' in html and '<table class="data queue">' in html


def test_queue__nul_in_a_filter__400_with_the_filters_ignored(alice, approval):
    response = client_for(alice).get(reverse("approvals:queue"), {"tool": "run\x00data"})

    assert response.status_code == 400
    assert "Filters ignored" in html_of(response)
    assert f"approval-{approval.id}" in html_of(response)


def test_queue__anonymous__sent_to_log_in(approval):
    response = Client().get(reverse("approvals:queue"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# The nav badge


def test_nav_badge__counts_what_waits_for_the_person(team, alice, carol, approval):
    ApprovalFactory(team=team, approver_groups=["compliance"])

    alice_page = html_of(client_for(alice).get(reverse("dashboard:home")))
    carol_page = html_of(client_for(carol).get(reverse("dashboard:home")))

    assert 'title="waiting for you">2</span>' in alice_page
    assert "waiting for you" not in carol_page


def test_nav_badge__badge_view__the_link_alone_counting_live(team, alice, carol, approval):
    # Given alice's badge, drawn in the nav of a page
    page = html_of(client_for(alice).get(reverse("approvals:history")))
    link = page[page.index('<a href="/dashboard/approvals/" id="nav-approvals"') :].split("</a>")[0] + "</a>"

    # When a second approval is raised and the badge asks for itself
    ApprovalFactory(team=team, approver_groups=["compliance"])
    response = client_for(alice).get(reverse("approvals:badge"), **HTMX)

    # Then it is the same element (it keeps refreshing), now counting two; carol's counts none
    html = html_of(response).strip()
    assert response.status_code == 200 and "<html" not in html
    assert html.split(">", 1)[0] == link.split(">", 1)[0]
    assert 'hx-get="/dashboard/approvals/badge/" hx-trigger="live-refresh"' in html
    assert 'data-live-refresh="approvals"' in html
    assert 'title="waiting for you">2</span>' in html and 'title="waiting for you">1</span>' in link
    assert "waiting for you" not in html_of(client_for(carol).get(reverse("approvals:badge")))


def test_nav_badge__anonymous__sent_to_log_in():
    response = Client().get(reverse("approvals:badge"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_nav_badge__one_set_of_queries_only_when_drawn(rf, alice, approval, django_assert_num_queries):
    request = rf.get("/")
    request.user = alice
    with django_assert_num_queries(0):
        context = pending_approvals(request)  # an htmx fragment never draws it: nothing is asked
    with django_assert_num_queries(3):  # alice's groups, her admin teams, the pending approvals
        assert str(context["approvals_pending_count"]) == "1"
        assert bool(context["approvals_pending_count"]) is True  # read again: not counted again


# One approval


def test_detail__not_a_member__404_like_an_unknown_id(approval):
    outsider = client_for(UserFactory(username="mallory"))

    assert outsider.get(detail_url(approval)).status_code == 404
    assert outsider.get(reverse("approvals:detail", args=[uuid.uuid4()])).status_code == 404
    assert outsider.post(decide_url(approval), {"action": "approve"}).status_code == 404
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert not approval.events.exists()


@pytest.mark.parametrize("who", ["member", "approver", "staff"])
def test_detail__visible_to_members_approvers_and_staff(team, alice, carol, approval, who):
    user = {"member": carol, "approver": alice, "staff": UserFactory(username="sam", is_staff=True)}[who]

    response = client_for(user).get(detail_url(approval))

    assert response.status_code == 200


def test_detail__shows_the_call_rule_flags_session_and_trail(team, alice, approval):
    # Given a call with nested and long arguments, an earlier call in its session, and a refusal
    approval.arguments = {
        "to": "dana@example.com",
        "filters": {"region": "eu", "owner": {"phone": "+1 555-010-1234"}},
        "query": "SELECT " + "x" * 400,
    }
    approval.save()
    record_decision(team, tool_name="list_customers", decision="allow", context={"session_id": "s-1"})
    ApprovalEvent.objects.create(
        approval=approval, action="refused", actor_name="carol", comment="not an approver", channel="web"
    )

    html = html_of(client_for(alice).get(detail_url(approval)))

    # The e-mail is flagged where it is; the phone number inside a folded object at its fold
    assert '<span class="arg-string">"dana@example.com"</span>' in html
    assert '<span class="pii-flag" title="looks like personal data or a secret">e-mail address</span>' in html
    assert "inside: phone number" in html
    arguments = html[html.index('id="arguments"') : html.index('id="context"')]
    assert arguments.count("<details>") == 2  # filters and filters.owner are folded
    assert "400 characters" not in html and "407 characters: show all" in html
    # The rule and why it fired; the model and environment; min approvals and votes
    for text in ("Exports with PII", "block_pii_exports", "PII exports need a compliance review", "high"):
        assert text in html
    assert '<dd id="model">gpt-5</dd>' in html and '<dd id="environment">production</dd>' in html
    assert "0 of 1 needed" in html
    # The session's calls and the trail, refusals included
    assert "list_customers" in html
    assert "Refused (not allowed to decide)" in html and "not an approver" in html


def test_detail__approver__approve_primary_and_deny_danger_side_by_side(alice, approval):
    html = html_of(client_for(alice).get(detail_url(approval)))

    actions = html[html.index('<div class="actions decision-actions">') :].split("</div>")[0]
    assert actions.index('class="button primary">Approve</button>') < actions.index(
        'class="button danger">Deny</button>'
    )


def _panel_refresh_url(html: str) -> str:
    panel = html[html.index('<section class="card decision" id="decision"') :].split(">", 1)[0]
    return panel.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")


def test_detail__live_refresh__204_while_nothing_changed_then_the_panel_when_it_did(alice, bob, approval):
    # Given alice's open page of the approval
    alice_client = client_for(alice)
    refresh = _panel_refresh_url(html_of(alice_client.get(detail_url(approval))))
    assert refresh.startswith(detail_url(approval) + "?shown=")

    # When something else in her teams changes, the panel asks: nothing to swap (her comment stays)
    assert alice_client.get(refresh, **HTMX).status_code == 204

    # When bob approves it, the panel asks again
    client_for(bob).post(decide_url(approval), {"action": "approve"})
    response = alice_client.get(refresh, **HTMX)

    # Then it is the panel, buttons retired, saying who decided and when; the trail comes along
    html = html_of(response)
    assert response.status_code == 200 and "<html" not in html
    approval.refresh_from_db()
    assert f'Approved by bob at <time datetime="{approval.resolved_at.isoformat()}">' in html
    assert f"{approval.resolved_at:%H:%M} UTC</time>" in html
    assert 'name="action"' not in html
    assert '<section class="card" id="trail" hx-swap-oob="true">' in html
    # and the new panel refreshes from its new state, no longer at a deadline
    new_refresh = _panel_refresh_url(html)
    assert new_refresh != refresh and alice_client.get(new_refresh, **HTMX).status_code == 204
    assert "load delay" not in html.split(">", 1)[0]


def test_detail__open_at_its_deadline__refreshes_just_past_it_and_says_expired(alice, approval):
    # Given an approval 30.2 s from its deadline, open in alice's browser
    approval.expires_at = timezone.now() + timedelta(seconds=30.2)
    approval.save()
    client = client_for(alice)
    html = html_of(client.get(detail_url(approval)))
    panel = html[html.index('<section class="card decision" id="decision"') :].split(">", 1)[0]
    assert re.search(r'hx-trigger="live-refresh, load delay:(31|32)s"', panel)  # just past it

    # When the deadline passes and the scheduled refresh asks (no sweep has run)
    Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(_panel_refresh_url(html), **HTMX)

    # Then the read settles it: the panel says it expired, without buttons
    html = html_of(response)
    assert response.status_code == 200
    assert "Expired at" in html and "nobody decided before the deadline" in html
    assert 'name="action"' not in html
    approval.refresh_from_db()
    assert approval.status == Approval.Status.EXPIRED


def test_detail__not_an_approver__sees_no_buttons(carol, approval):
    html = html_of(client_for(carol).get(detail_url(approval)))

    assert 'name="action"' not in html
    assert "You cannot decide this one: it is for compliance." in html


# Approve / deny


def test_decide__not_an_approver__refused_403_and_still_pending(carol, approval):
    response = client_for(carol).post(decide_url(approval), {"action": "approve", "comment": "sure"})

    assert response.status_code == 403
    assert "may not decide this approval" in html_of(response)
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert list(approval.events.values_list("action", "actor_name", "channel")) == [
        ("refused", "carol", "web")
    ]


def test_decide__deny_without_a_comment__form_error_and_nothing_happens(alice, approval):
    response = client_for(alice).post(decide_url(approval), {"action": "deny", "comment": "   "})

    assert response.status_code == 400
    assert "A comment is required to deny" in html_of(response)
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert not approval.events.exists()


def test_decide__deny_with_a_comment__denied_with_who_and_why(alice, approval):
    client = client_for(alice)

    response = client.post(decide_url(approval), {"action": "deny", "comment": "no PII leaves"}, follow=True)

    html = html_of(response)
    assert response.redirect_chain == [(detail_url(approval), 302)]
    assert "Denied: the agent&#x27;s call is refused." in html
    assert '<span class="status status-denied" id="decision-status">Denied</span>' in html
    assert '<dd id="decided-by">alice</dd>' in html and '<dd id="decision-comment">no PII leaves</dd>' in html
    approval.refresh_from_db()
    assert (approval.status, approval.resolution_comment) == ("denied", "no PII leaves")
    event = approval.events.get()
    assert (event.channel, event.remote_addr) == ("web", "127.0.0.1")


def test_decide__approve__then_a_second_approve_is_told_already(alice, bob, approval):
    first = client_for(alice).post(decide_url(approval), {"action": "approve"})
    second = client_for(bob).post(decide_url(approval), {"action": "approve"})

    assert first.status_code == 302
    assert second.status_code == 409
    html = html_of(second)
    assert "approval is already approved by alice" in html
    assert 'name="action"' not in html  # decided: no buttons any more
    approval.refresh_from_db()
    assert (approval.status, approval.resolved_by) == ("approved", "alice")


def test_decide__quorum_of_two__first_vote_recorded_and_approve_offered_no_more(alice, bob, approval):
    approval.min_approvals = 2
    approval.save()
    client = client_for(alice)

    html = html_of(client.post(decide_url(approval), {"action": "approve"}, follow=True))

    assert "Your approval is recorded; 2 different people must approve." in html
    assert "1 of 2 needed: alice" in html
    assert 'value="approve"' not in html and 'value="deny"' in html
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING


def test_decide__htmx__returns_the_panel_and_the_trail_only(alice, approval):
    response = client_for(alice).post(decide_url(approval), {"action": "approve"}, **HTMX)

    html = html_of(response)
    assert response.status_code == 200
    assert "<html" not in html
    assert html.startswith('<section class="card decision" id="decision" ')
    assert "Approved: the agent&#x27;s call may run." in html  # the message, inside the panel
    assert '<section class="card" id="trail" hx-swap-oob="true">' in html
    assert "Quorum reached: approved" in html
    # and the nav link, whose badge no longer counts it
    nav = html[html.index('<a href="/dashboard/approvals/" id="nav-approvals"') :]
    assert nav.split("</a>")[0].endswith('hx-swap-oob="true">Approvals')


def test_decide__htmx_deny_without_comment__panel_with_the_error_and_status_400(alice, approval):
    response = client_for(alice).post(decide_url(approval), {"action": "deny"}, **HTMX)

    assert response.status_code == 400
    assert "<html" not in html_of(response)
    assert "A comment is required to deny" in html_of(response)


def test_decide__resolved_by_someone_else__page_says_who_when_and_why(alice, bob, approval):
    client_for(bob).post(decide_url(approval), {"action": "deny", "comment": "wrong bucket"})

    html = html_of(client_for(alice).get(detail_url(approval)))

    assert '<span class="status status-denied" id="decision-status">Denied</span>' in html
    assert '<dd id="decided-by">bob</dd>' in html and "wrong bucket" in html
    assert 'name="action"' not in html


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"action": "maybe"},
        {"action": "approve", "comment": "x" * 4001},
        {"action": "deny", "comment": "a\x00b"},
    ],
    ids=["no-action", "unknown-action", "comment-too-long", "nul-in-comment"],
)
def test_decide__bad_input__400_and_still_pending(alice, approval, data):
    response = client_for(alice).post(decide_url(approval), data)

    assert response.status_code == 400
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING


def test_decide__get__405(alice, approval):
    assert client_for(alice).get(decide_url(approval)).status_code == 405


def test_decide__without_csrf_token__refused(alice, approval):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(decide_url(approval), {"action": "approve"})

    assert response.status_code == 403
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING


# History


def test_history__decided_approvals_of_my_teams_with_who_outcome_and_time(team, carol):
    raised = timezone.now() - timedelta(minutes=10)
    decided = ApprovalFactory(
        team=team,
        status=Approval.Status.DENIED,
        created_at=raised,
        resolved_at=raised + timedelta(minutes=2, seconds=5),
        resolved_by="bob",
        resolution_comment="wrong bucket",
    )
    pending = ApprovalFactory(team=team, tool_name="still_waiting")
    elsewhere = ApprovalFactory(
        tool_name="other_team", status=Approval.Status.APPROVED, resolved_at=timezone.now()
    )

    html = html_of(client_for(carol).get(reverse("approvals:history")))

    assert f"approval-{decided.id}" in html
    assert "Denied" in html and "bob" in html and "2 min 5 s" in html and "wrong bucket" in html
    assert pending.tool_name not in html and elsewhere.tool_name not in html
