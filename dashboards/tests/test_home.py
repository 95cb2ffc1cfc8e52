"""The dashboard's home (dashboard:home): the person's teams, each with its pages and small counts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone

from tenancy.models import Membership
from tests.factories import ApprovalFactory, TeamFactory, UserFactory, record_decision

pytestmark = pytest.mark.django_db


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def card_of(html: str, slug: str) -> str:
    match = re.search(rf'<li class="card team-card" id="team-{slug}">(.*?)</li>', html, re.S)
    assert match, f"no card for {slug}"
    return match.group(1)


def test_home__member__lists_their_teams_with_links_and_the_days_counts():
    # Given alice in two teams (decisions today and two days ago, a pending approval) and a third team
    alice = UserFactory()
    payments, support = TeamFactory(name="Payments"), TeamFactory(name="Support")
    hidden = TeamFactory(name="Elsewhere")
    for team in (payments, support):
        Membership.objects.create(user=alice, team=team, role=Membership.Role.MEMBER)
    record_decision(payments, decision="allow")
    record_decision(payments, decision="deny")
    record_decision(payments, decision="deny", created_at=timezone.now() - timedelta(days=2))
    ApprovalFactory(team=payments)

    # When she opens the dashboard
    response = client_of(alice).get(reverse("dashboard:home"))

    # Then each of her teams has a card linking to its overview, policies and audit pages
    assert response.status_code == 200
    html = response.content.decode()
    assert "Elsewhere" not in html and hidden.slug not in html
    card = card_of(html, payments.slug)
    for url in (
        reverse("dashboard:overview", args=[payments.slug]),
        reverse("policies:page", args=[payments.slug]),
        reverse("dashboard:audit", args=[payments.slug]),
    ):
        assert f'href="{url}"' in card
    # with the last day's counts only (the row two days old is not one of them)
    assert "<strong>2</strong> decisions" in card
    assert "1 allowed" in card and "1 denied" in card and "1 pending approval<" in card
    assert "<strong>0</strong> decisions" in card_of(html, support.slug)


def test_home__settings_link__only_when_the_settings_page_answers():
    # Given a member of a team
    team = TeamFactory()
    user = UserFactory()
    Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    settings_url = f"/dashboard/teams/{team.slug}/settings/"
    try:
        resolve(settings_url)
        mounted = True
    except Resolver404:
        mounted = False

    # When they open the dashboard
    card = card_of(client_of(user).get(reverse("dashboard:home")).content.decode(), team.slug)

    # Then the settings link is there exactly when that page exists (the team-settings pages add it)
    assert (f'href="{settings_url}"' in card) is mounted


def test_home__no_team__200_and_says_so():
    response = client_of(UserFactory()).get(reverse("dashboard:home"))

    assert response.status_code == 200
    assert "You are not a member of any team yet." in response.content.decode()


def test_home__many_teams__same_queries_as_one():
    # Given a person in one team, then in five
    user = UserFactory()
    Membership.objects.create(user=user, team=TeamFactory(), role=Membership.Role.MEMBER)
    client = client_of(user)
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("dashboard:home"))
    for _ in range(4):
        team = TeamFactory()
        Membership.objects.create(user=user, team=team, role=Membership.Role.MEMBER)
        record_decision(team)

    # When the page is drawn again
    with CaptureQueriesContext(connection) as five:
        client.get(reverse("dashboard:home"))

    # Then the counts of all teams come in the same queries (none per team)
    assert len(five.captured_queries) == len(one.captured_queries)
