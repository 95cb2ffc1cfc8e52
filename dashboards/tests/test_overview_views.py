"""The team overview page and its live panels (dashboard:overview, dashboard:overview-panel)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboards.views.overview import PANELS
from tenancy.models import Membership
from tests.factories import ApprovalFactory, TeamFactory, UserFactory, publish_rules, record_decision

pytestmark = pytest.mark.django_db

RULES = """\
rules:
  - name: no_exports
    tool: run_data_export
    action: deny
"""


def member_client(team, *, role=Membership.Role.MEMBER) -> Client:
    user = UserFactory()
    Membership.objects.create(user=user, team=team, role=role)
    client = Client()
    client.force_login(user)
    return client


def page_url(team) -> str:
    return reverse("dashboard:overview", args=[team.slug])


def panel_url(team, panel: str) -> str:
    return reverse("dashboard:overview-panel", args=[team.slug, panel])


def test_overview__member__shows_counts_latency_lists_approvals_and_policy():
    # Given a team with a published policy, decisions of the last minutes and a pending approval
    team = TeamFactory(name="Payments")
    publish_rules(team, RULES)
    now = timezone.now()
    record_decision(team, decision="allow", latency_ms=2.0, created_at=now - timedelta(seconds=30))
    record_decision(
        team,
        decision="deny",
        tool_name="run_data_export",
        rule_id="no_exports",
        latency_ms=4.0,
        context={"custom": {"model": "gpt-5", "environment": "prod"}},
        created_at=now - timedelta(minutes=2),
    )
    ApprovalFactory(team=team, approver_groups=["compliance"], created_at=now - timedelta(minutes=5))

    # When a member opens the overview
    response = member_client(team).get(page_url(team))

    # Then every panel is there with its numbers
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'id="counts-hour">.*?data-count="total"><strong>2</strong>', html, re.S)
    assert 'data-count="deny">1</td>' in html
    assert 'data-latency="p50">3.0 ms' in html
    assert "<code>run_data_export</code>" in html and "<code>no_exports</code>" in html
    assert "<code>gpt-5</code>" in html and "<code>prod</code>" in html
    assert 'data-count="pending">1</strong>' in html and "<code>compliance</code>" in html
    assert 'the oldest for <span data-age="oldest">5 min' in html
    assert 'data-policy-version="1"' in html
    assert f'href="{reverse("policies:page", args=[team.slug])}"' in html
    # and the charts are drawn as accessible SVG, with the numbers in a table for screen readers
    assert html.count('role="img"') == 2
    assert '<title id="chart-hour-title">Per minute, last hour</title>' in html
    assert "2 decisions from" in html
    assert '<table class="visually-hidden">' in html


def test_overview__live_panels__declare_their_kinds_and_fragment_urls():
    # Given a team whose chains have entries
    team = TeamFactory()
    record_decision(team)
    record_decision(team)

    # When a member opens the overview
    html = member_client(team).get(page_url(team)).content.decode()

    # Then each panel refreshes itself from its own URL on its kind of change
    for panel, kind in [
        ("activity", "decisions"),
        ("latency", "decisions"),
        ("breakdown", "decisions"),
        ("approvals", "approvals"),
        ("policy", "policies"),
    ]:
        tag = re.search(rf'<section [^>]*id="overview-{panel}"[^>]*>', html, re.S)
        assert tag, panel
        assert f'hx-get="{panel_url(team, panel)}"' in tag.group(0)
        assert f'data-live-refresh="{kind}"' in tag.group(0)
        assert 'hx-swap="outerHTML"' in tag.group(0) and "live-refresh" in tag.group(0)
    # and the socket asks for the team's three kinds from the chain heads the page was drawn at
    socket = re.search(r'ws-connect="/ws/live/\?([^"]+)"', html)
    assert socket
    query = parse_qs(socket.group(1).replace("&amp;", "&"))
    assert query["kinds"] == ["approvals,decisions,policies"]
    assert query["team"] == [team.slug]
    assert query["after"] == ["2"]
    assert 'data-decisions="2"' in html


@pytest.mark.parametrize("panel", sorted(PANELS))
def test_overview_panel__member__the_element_itself_again(panel):
    # Given a team with a decision
    team = TeamFactory()
    record_decision(team, decision="deny", tool_name="send_email")

    # When a member's page fetches one panel
    response = member_client(team).get(panel_url(team, panel))

    # Then it is that panel's element alone, with the same id and attributes, so it keeps refreshing
    assert response.status_code == 200
    html = response.content.decode().strip()
    assert html.startswith('<section class="card overview-panel') and f'id="overview-{panel}"' in html
    assert f'hx-get="{panel_url(team, panel)}"' in html
    assert "<html" not in html


def test_overview_panel__after_a_new_decision__counts_move():
    # Given a member's activity panel with one decision
    team = TeamFactory()
    client = member_client(team)
    record_decision(team, decision="allow")
    before = client.get(panel_url(team, "activity")).content.decode()

    # When another decision is recorded and the panel is fetched again
    record_decision(team, decision="deny")
    after = client.get(panel_url(team, "activity")).content.decode()

    # Then the hour's total went from 1 to 2
    total = r'id="counts-hour">.*?data-count="total"><strong>(\d+)</strong>'
    assert re.search(total, before, re.S).group(1) == "1"
    assert re.search(total, after, re.S).group(1) == "2"


@pytest.mark.parametrize("url_of", [page_url, lambda team: panel_url(team, "activity")])
def test_overview__non_member__404(url_of):
    # Given a team and someone who belongs to another one
    team = TeamFactory()
    outsider = member_client(TeamFactory())

    # When they open its overview or a panel
    response = outsider.get(url_of(team))

    # Then it does not exist for them
    assert response.status_code == 404


def test_overview_panel__unknown_panel__404():
    team = TeamFactory()

    assert member_client(team).get(panel_url(team, "nope")).status_code == 404


def test_overview__anonymous__sent_to_log_in():
    response = Client().get(page_url(TeamFactory()))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_overview__staff_not_a_member__200():
    team = TeamFactory()
    client = Client()
    client.force_login(UserFactory(is_staff=True))

    assert client.get(page_url(team)).status_code == 200


def test_overview_panel__post__refused():
    team = TeamFactory()

    assert member_client(team).post(panel_url(team, "activity")).status_code == 405


def test_overview__empty_team__says_so_without_numbers():
    team = TeamFactory()

    html = member_client(team).get(page_url(team)).content.decode()

    assert "No rule set is published" in html
    assert "Nothing was denied." in html
    assert 'data-latency="p50">—' in html
    assert "No decisions in this window." in html
