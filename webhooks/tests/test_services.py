"""webhooks.services on their own: who may, rotations that overlap, changes that change
nothing, and what the trail keeps after an endpoint is gone."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from tenancy.actor import Actor
from tenancy.models import ApiKey, Membership
from tenancy.selectors import principal_for_token
from tenancy.services import ScopeNotAllowed
from tests.factories import BY_TESTS, TeamFactory, UserFactory, api_key_for, personal_api_key_for
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSecret
from webhooks.selectors import live_secrets_of

pytestmark = pytest.mark.django_db

URL = "https://93.184.215.14/hook"
VALUES = {"name": "SIEM", "url": URL, "events": ["deny"]}
MANAGE = ApiKey.Scope.WEBHOOKS_MANAGE.value


@pytest.fixture
def team():
    return TeamFactory(slug="payments")


def key_actor(token: str) -> Actor:
    principal = principal_for_token(token)
    assert principal is not None
    return Actor.key(principal)


def team_entries(team) -> list[dict]:
    events = AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TEAM_CHANGED).order_by("sequence")
    return [json.loads(e.record)["details"] for e in events]


def test_manager__member_person_or_key__refused(team):
    # Given a member of the team
    member = UserFactory()
    Membership.objects.create(user=member, team=team, role=Membership.Role.MEMBER)
    # When they create an endpoint on the page, or mint a personal key that could
    # Then both are refused, and nothing is written
    with pytest.raises(services.WebhookManagerRequired):
        services.webhook_endpoint_create(team=team, actor=Actor.person(member), values=VALUES)
    with pytest.raises(ScopeNotAllowed):
        personal_api_key_for(member, team, scopes=(MANAGE,))
    assert not WebhookEndpoint.objects.exists()


def test_manager__admin_demoted__their_personal_key_no_longer_manages(team):
    # Given an admin's personal key holding webhooks:manage
    admin = UserFactory()
    token = personal_api_key_for(admin, team, scopes=(MANAGE,), role="admin")
    services.webhook_endpoint_create(team=team, actor=key_actor(token), values=VALUES)
    # When they are made a plain member
    Membership.objects.filter(user=admin, team=team).update(role=Membership.Role.MEMBER)
    # Then the key lacks the scope from then on (a personal key holds at most its person's rights)
    with pytest.raises(services.PermissionDenied):
        services.webhook_endpoint_create(team=team, actor=key_actor(token), values=VALUES)
    assert WebhookEndpoint.objects.count() == 1


def test_manager__key_of_another_team__not_found(team):
    endpoint = services.webhook_endpoint_create(team=team, actor=BY_TESTS, values=VALUES).endpoint
    other_key = key_actor(api_key_for(TeamFactory(slug="other"), scopes=(MANAGE,)))
    with pytest.raises(services.NotFound):
        services.webhook_endpoint_delete(endpoint=endpoint, actor=other_key)
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_rotate__twice_within_the_overlap__the_oldest_keeps_its_earlier_end(team):
    # Given an endpoint rotated with a day's overlap
    created = services.webhook_endpoint_create(team=team, actor=BY_TESTS, values=VALUES)
    first = services.webhook_secret_rotate(
        endpoint=created.endpoint, actor=BY_TESTS, overlap=timedelta(days=1)
    )
    # When it is rotated again with an hour's overlap
    second = services.webhook_secret_rotate(
        endpoint=created.endpoint, actor=BY_TESTS, overlap=timedelta(hours=1)
    )
    # Then all three sign for now, the two old ones for at most the hour
    secrets = {s.secret: s.expires_at for s in live_secrets_of(endpoint=created.endpoint)}
    assert set(secrets) == {created.secret, first.secret, second.secret}
    assert secrets[second.secret] is None
    soon = timezone.now() + timedelta(hours=1)
    assert secrets[created.secret] <= soon and secrets[first.secret] <= soon
    # And a rotation with no overlap leaves only the newest
    third = services.webhook_secret_rotate(endpoint=created.endpoint, actor=BY_TESTS, overlap=timedelta(0))
    assert [s.secret for s in live_secrets_of(endpoint=created.endpoint)] == [third.secret]
    assert WebhookSecret.objects.filter(expires_at__lte=timezone.now()).count() <= 3


def test_update__same_values__no_trail_entry(team):
    endpoint = services.webhook_endpoint_create(team=team, actor=BY_TESTS, values=VALUES).endpoint
    services.webhook_endpoint_update(endpoint=endpoint, actor=BY_TESTS, changes={"name": "SIEM", "url": URL})
    assert [e["change"] for e in team_entries(team)] == ["webhook.created"]


def test_update__unknown_field__refused_naming_it(team):
    endpoint = services.webhook_endpoint_create(team=team, actor=BY_TESTS, values=VALUES).endpoint
    with pytest.raises(services.InvalidWebhook) as refused:
        services.webhook_endpoint_update(endpoint=endpoint, actor=BY_TESTS, changes={"decisions_cursor": 0})
    assert refused.value.details["field"] == "decisions_cursor"


def test_delete__trail_keeps_name_and_host_never_the_url_key_or_secret(team):
    # Given a PagerDuty endpoint (its routing key is a credential)
    created = services.webhook_endpoint_create(
        team=team,
        actor=BY_TESTS,
        values={"name": "On call", "format": "pagerduty", "routing_key": "R0UTE-SECRET", "events": ["deny"]},
    )
    # When it is deleted
    services.webhook_endpoint_delete(endpoint=created.endpoint, actor=BY_TESTS)
    # Then the trail still names it and its host, and holds none of its credentials
    entries = team_entries(team)
    assert [(e["change"], e["webhook_name"], e["host"]) for e in entries] == [
        ("webhook.created", "On call", "events.pagerduty.com"),
        ("webhook.deleted", "On call", "events.pagerduty.com"),
    ]
    stored = "".join(AuditEvent.objects.filter(team=team).values_list("record", flat=True))
    assert "R0UTE-SECRET" not in stored and created.secret not in stored
    assert "/v2/enqueue" not in stored


def test_resend__attempt_under_way__409_and_left_to_its_worker(team):
    # Given a test delivery a worker has claimed (attempt 1, lease running, no answer recorded)
    endpoint = services.webhook_endpoint_create(team=team, actor=BY_TESTS, values=VALUES).endpoint
    delivery = services.webhook_test_send(endpoint=endpoint, actor=BY_TESTS)
    lease_end = timezone.now() + timedelta(seconds=60)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempt_count=1, next_attempt_at=lease_end)
    # When it is re-sent by hand
    with pytest.raises(services.DeliveryInFlight):
        services.webhook_delivery_resend(delivery=delivery, actor=BY_TESTS)
    # Then it stays as the worker left it (no second send alongside)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == lease_end


def test_update__enabled_again__starts_at_the_present_and_the_trail_names_what_it_skipped(team):
    # Given an endpoint disabled (by hand or by the engine) while the team went on deciding
    from tests.factories import record_decision

    admin = UserFactory()
    Membership.objects.create(user=admin, team=team, role=Membership.Role.ADMIN)
    actor = Actor.person(admin)
    endpoint = services.webhook_endpoint_create(team=team, actor=actor, values=VALUES).endpoint
    services.webhook_endpoint_update(endpoint=endpoint, actor=actor, changes={"enabled": False})
    decisions = [record_decision(team, decision="deny") for _ in range(3)]

    # When it is enabled again
    services.webhook_endpoint_update(endpoint=endpoint, actor=actor, changes={"enabled": True})

    # Then its decisions cursor is at the newest decision (those three are not sent, days late)
    endpoint.refresh_from_db()
    assert endpoint.decisions_cursor == decisions[-1].sequence
    # and the trail says which sequences it skipped
    entry = team_entries(team)[-1]
    assert entry["change"] == "webhook.enabled"
    assert entry["skipped"]["decisions"] == [decisions[0].sequence, decisions[-1].sequence]
