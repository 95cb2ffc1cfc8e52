"""The webhook settings pages through Django's test client: who sees them, the secret shown
once, bad input as a 400 page with the form kept, the state messages, test send and delete."""

from __future__ import annotations

import pytest
from django.test import Client

from tenancy.models import Membership
from tests.factories import BY_TESTS, TeamFactory, UserFactory
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.215.14/hooks/veto"
FORM = {
    "name": "SIEM",
    "format": "generic",
    "url": PUBLIC_URL,
    "events": ["deny"],
    "min_severity": "info",
    "enabled": "on",
}


@pytest.fixture
def team():
    return TeamFactory(slug="payments", name="Payments")


def client_of(team, role: str | None, *, staff: bool = False) -> Client:
    user = UserFactory(is_staff=staff)
    if role:
        Membership.objects.create(user=user, team=team, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin(team) -> Client:
    return client_of(team, Membership.Role.ADMIN)


def an_endpoint(team, **values) -> WebhookEndpoint:
    created = services.webhook_endpoint_create(
        team=team, actor=BY_TESTS, values={"name": "SIEM", "url": PUBLIC_URL, "events": ["deny"], **values}
    )
    return created.endpoint


def base(team) -> str:
    return f"/dashboard/teams/{team.slug}/settings/webhooks/"


def test_page__admin_creates_an_endpoint__secret_shown_once_then_never_again(admin, team):
    # When an admin adds an endpoint with the form
    response = admin.post(base(team) + "create", FORM)
    # Then the answer is the endpoint's page with its secret, not to be cached
    assert response.status_code == 201
    endpoint = WebhookEndpoint.objects.get()
    secret = endpoint.secrets.get().secret
    assert secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # And neither the list nor the endpoint's page shows it again
    assert secret not in admin.get(base(team)).content.decode()
    detail = admin.get(f"{base(team)}{endpoint.id}/")
    assert detail.status_code == 200 and secret not in detail.content.decode()


def test_page__bad_url__400_with_the_reason_and_the_form_as_filled_in(admin, team):
    response = admin.post(base(team) + "create", {**FORM, "url": "https://10.0.0.8/hook", "name": "Kept"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "url: the webhook URL" in text and "private address" in text
    assert 'value="Kept"' in text
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("role", "staff", "status"),
    [
        (Membership.Role.MEMBER, False, 403),
        (None, False, 404),
        (None, True, 200),
        (Membership.Role.ADMIN, False, 200),
    ],
)
def test_page__by_role__admins_and_staff_only(team, role, staff, status):
    # Given a team with an endpoint
    endpoint = an_endpoint(team)
    client = client_of(team, role, staff=staff)
    # When the list, the endpoint's page and a change are asked for
    answers = [
        client.get(base(team)).status_code,
        client.get(f"{base(team)}{endpoint.id}/").status_code,
        client.post(f"{base(team)}{endpoint.id}/test").status_code,
    ]
    # Then each is what the role may (a member is told why; an outsider finds no team)
    expected_change = 302 if status == 200 else status
    assert answers == [status, status, expected_change]
    if status == 403:
        assert endpoint.url not in client.get(base(team)).content.decode()


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"enabled": False, "disabled_reason": "gone"}, "disabled: the receiver answered 410 Gone"),
        ({"enabled": False, "disabled_reason": "failing"}, "disabled after 5 days of failures"),
        ({"enabled": False, "disabled_reason": ""}, "disabled by hand"),
        ({"enabled": True}, "enabled"),
    ],
)
def test_page__endpoint_state__said_in_words(admin, team, values, says):
    endpoint = an_endpoint(team)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**values)
    assert says in admin.get(base(team)).content.decode()
    assert says in admin.get(f"{base(team)}{endpoint.id}/").content.decode()


def test_page__send_test__redirects_to_the_log_which_lists_it(admin, team):
    endpoint = an_endpoint(team)
    response = admin.post(f"{base(team)}{endpoint.id}/test")
    assert response.status_code == 302 and response["Location"].endswith("#deliveries")
    delivery = WebhookDelivery.objects.get()
    assert f'id="delivery-{delivery.id}"' in admin.get(f"{base(team)}{endpoint.id}/").content.decode()


def test_page__rotate__new_secret_shown_and_both_live(admin, team):
    endpoint = an_endpoint(team)
    response = admin.post(f"{base(team)}{endpoint.id}/rotate-secret", {"overlap_hours": "24"})
    assert response.status_code == 200
    newest = endpoint.secrets.order_by("-created_at").first()
    assert newest.secret in response.content.decode()
    assert "keeps signing until" in response.content.decode()
    assert endpoint.secrets.count() == 2


def test_page__delete_without_confirming__400_and_kept_then_confirmed__gone(admin, team):
    endpoint = an_endpoint(team)
    refused = admin.post(f"{base(team)}{endpoint.id}/delete", {})
    assert refused.status_code == 400 and WebhookEndpoint.objects.exists()
    done = admin.post(f"{base(team)}{endpoint.id}/delete", {"confirm": "on"})
    assert done.status_code == 302 and not WebhookEndpoint.objects.exists()


def test_page__edit_to_disabled__saved_and_the_state_says_so(admin, team):
    endpoint = an_endpoint(team)
    form = {**FORM, "name": "SIEM 2"}
    form.pop("enabled")
    response = admin.post(f"{base(team)}{endpoint.id}/update", form)
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.enabled) == ("SIEM 2", False)
    assert "disabled by hand" in admin.get(f"{base(team)}{endpoint.id}/").content.decode()


def test_page__another_teams_endpoint_under_own_slug__404(admin, team):
    theirs = an_endpoint(TeamFactory(slug="other"))
    assert admin.get(f"{base(team)}{theirs.id}/").status_code == 404
    assert admin.post(f"{base(team)}{theirs.id}/delete", {"confirm": "on"}).status_code == 404
    assert WebhookEndpoint.objects.filter(pk=theirs.pk).exists()


def test_nav__admin_sees_the_webhooks_link__member_does_not(team):
    admin_page = client_of(team, Membership.Role.ADMIN).get(f"/dashboard/teams/{team.slug}/settings/")
    member_page = client_of(team, Membership.Role.MEMBER).get(f"/dashboard/teams/{team.slug}/settings/")
    assert base(team) in admin_page.content.decode()
    assert base(team) not in member_page.content.decode()


def test_log__pending_delivery__reloads_itself_until_none_is_pending(admin, team):
    # Given an endpoint with a pending test delivery
    endpoint = an_endpoint(team)
    delivery = services.webhook_test_send(endpoint=endpoint, actor=BY_TESTS)
    log = f"{base(team)}{endpoint.id}/deliveries"
    # Then its page's log asks for itself again, and the log alone answers
    assert f'hx-get="{log}"' in admin.get(f"{base(team)}{endpoint.id}/").content.decode()
    fragment = admin.get(log)
    assert fragment.status_code == 200 and f'id="delivery-{delivery.id}"' in fragment.content.decode()
    assert "<html" not in fragment.content.decode()
    # When it is delivered, the log stops asking
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="delivered")
    assert "hx-trigger" not in admin.get(log).content.decode()


def test_page__slack_credentials__never_shown_kept_when_left_empty_forgotten_on_request(admin, team):
    # Given a Slack endpoint with a bot token
    endpoint = an_endpoint(team, format="slack", slack_bot_token="xoxb-secret-1", slack_channel="C1")
    page = admin.get(f"{base(team)}{endpoint.id}/").content.decode()
    # Then its page shows that it is set and the Request URL, never the token
    assert "xoxb-secret-1" not in page and "(set: leave empty to keep it)" in page
    assert f"/v1/slack/interactivity/{endpoint.id}" in page
    # When the form is saved with the token left empty, it is kept
    form = {**FORM, "format": "slack", "slack_channel": "C1", "name": "Renamed"}
    assert admin.post(f"{base(team)}{endpoint.id}/update", form).status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.slack_bot_token) == ("Renamed", "xoxb-secret-1")
    # When "forget" is ticked, it is cleared
    admin.post(f"{base(team)}{endpoint.id}/update", {**form, "slack_forget": "on"})
    endpoint.refresh_from_db()
    assert endpoint.slack_bot_token == ""
