"""The "My API keys" page (Django test client): a signed-in person lists, creates and revokes their
own personal keys; the token is shown once; nobody reaches another person's key; plain forms
with CSRF, htmx fragments, no inline script."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from tenancy.models import ApiKey, Membership
from tenancy.selectors import principal_for_token
from tests.factories import TeamFactory, UserFactory, personal_api_key_for

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/api-keys/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def team():
    return TeamFactory(slug="payments", name="Payments")


@pytest.fixture
def alice(team):
    user = UserFactory(username="alice")
    Membership.objects.create(user=user, team=team)
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def create(client: Client, **fields: object):
    data = {"name": "laptop", "team": "payments", "scopes": ["decisions:read", "approvals:resolve"], **fields}
    return client.post(PAGE, data)


def test_page__signed_in__lists_own_keys_per_team_and_is_in_the_nav(team, alice):
    # Given a key of alice's and one of someone else's in the same team
    personal_api_key_for(alice, team, name="alice laptop")
    personal_api_key_for(UserFactory(username="bob"), team, name="bob laptop")
    # When alice opens the page
    response = client_for(alice).get(PAGE)
    html = response.content.decode()
    # Then she sees her key under her team, not bob's, and the nav links here
    assert response.status_code == 200
    assert "alice laptop" in html and "bob laptop" not in html
    assert 'id="team-payments"' in html
    assert f'href="{reverse("tenancy:my-api-keys")}"' in html
    assert reverse("tenancy:my-api-keys") == PAGE


def test_page__signed_out__sent_to_the_login_page():
    response = Client().get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_create__valid_form__token_shown_once_and_it_acts_as_the_user(team, alice):
    client = client_for(alice)
    # When alice creates a key
    response = create(client)
    html = response.content.decode()
    # Then the page shows the token once, uncached, and the token is a key acting as her
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    token = re.search(r'value="(vk_[^"]+)"', html).group(1)
    principal = principal_for_token(token)
    assert principal is not None and principal.user_id == alice.id and principal.team_id == team.id
    assert principal.scopes == frozenset({"decisions:read", "approvals:resolve"})
    # And never again
    assert token not in client.get(PAGE).content.decode()


def test_create__scope_a_member_may_not_hold__403_with_the_reason_and_nothing_created(team, alice):
    response = create(client_for(alice), scopes=["approvals:resolve", "admin"])
    assert response.status_code == 403
    assert "may not hold admin" in response.content.decode()
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("fields", "where"),
    [({"name": ""}, "name"), ({"team": "someone-elses"}, "team"), ({"scopes": ["nonsense"]}, "scopes")],
)
def test_create__bad_form__400_naming_the_field_and_nothing_created(team, alice, fields, where):
    TeamFactory(slug="someone-elses")
    response = create(client_for(alice), **fields)
    assert response.status_code == 400
    assert f'id="{where}-error"' in response.content.decode()
    assert not ApiKey.objects.exists()


def test_create__htmx__answers_the_section_only(team, alice):
    response = client_for(alice).post(
        PAGE, {"name": "laptop", "team": "payments", "scopes": ["approvals:resolve"]}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 201
    assert html.lstrip().startswith('<div id="my-api-keys">') and "<html" not in html
    assert "shown only this once" in html


def test_revoke__own_key__revoked_and_stops_working(team, alice):
    # Given alice's key
    token = personal_api_key_for(alice, team)
    api_key = ApiKey.objects.get(user=alice)
    # When she revokes it (no JavaScript: a plain form post)
    response = client_for(alice).post(reverse("tenancy:my-api-key-revoke", args=[api_key.id]))
    # Then it is revoked and the page says so
    assert response.status_code == 302 and response["Location"] == PAGE
    assert principal_for_token(token) is None
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_revoke__another_users_key__404_and_it_keeps_working(team, alice):
    # Given bob's key, and a team key
    token = personal_api_key_for(UserFactory(username="bob"), team)
    bobs = ApiKey.objects.get(user__username="bob")
    # When alice posts a revoke for it (or for a key that does not exist)
    client = client_for(alice)
    refused = client.post(reverse("tenancy:my-api-key-revoke", args=[bobs.id]))
    missing = client.post(reverse("tenancy:my-api-key-revoke", args=[uuid.uuid4()]))
    # Then both are a 404 and bob's key still works
    assert (refused.status_code, missing.status_code) == (404, 404)
    assert principal_for_token(token) is not None


def test_revoke__htmx__answers_the_section_with_the_key_marked_revoked(team, alice):
    personal_api_key_for(alice, team, name="old laptop")
    api_key = ApiKey.objects.get(user=alice)
    response = client_for(alice).post(reverse("tenancy:my-api-key-revoke", args=[api_key.id]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Revoked old laptop" in html and "status-denied" in html


def test_forms__without_the_csrf_token__refused(team, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(PAGE, {"name": "laptop", "team": "payments", "scopes": ["approvals:resolve"]})
    assert response.status_code == 403
    assert not ApiKey.objects.exists()


def test_page__no_inline_script_and_every_form_carries_csrf(team, alice):
    personal_api_key_for(alice, team)
    html = client_for(alice).get(PAGE).content.decode()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all("src=" in tag for tag in scripts)
    assert all(not body.strip() for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S))
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    forms = re.findall(r"<form\b.*?</form>", html, re.S)
    post_forms = [f for f in forms if 'method="post"' in f]
    assert len(post_forms) >= 2 and all("csrfmiddlewaretoken" in f for f in post_forms)


def test_page__not_a_member_of_any_team__says_so_and_offers_no_form():
    html = client_for(UserFactory(username="loner")).get(PAGE).content.decode()
    assert 'id="no-teams"' in html and 'id="create-key"' not in html
