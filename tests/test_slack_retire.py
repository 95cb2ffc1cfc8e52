"""An approval decided elsewhere (the browser here) or expired: the Slack messages still
showing its buttons get the outcome instead, by chat.update with the bot token or by a recent
press's response_url; each once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import Approval
from approvals.services import approval_resolve
from audit.models import ChainStream
from common.events import Event, EventType
from tenancy.actor import Actor
from tenancy.models import Membership
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory
from tests.slack_standin import slack_standin
from webhooks.models import SlackMessage, WebhookEndpoint
from webhooks.slack.retire import slack_messages_retire, slack_messages_to_retire

pytestmark = pytest.mark.django_db


@pytest.fixture
def slack(settings):
    with slack_standin() as standin:
        settings.SLACK_API_BASE_URL = standin.api_url
        settings.SLACK_RESPONSE_URL_PREFIX = standin.hooks_url
        yield standin


def endpoint_of(team, *, bot_token="xoxb-test", format=WebhookEndpoint.Format.SLACK):
    return WebhookEndpoint.objects.create(
        team=team, name="Slack", url="https://hooks.slack.com/services/x", format=format, slack_bot_token=bot_token
    )


@pytest.fixture
def decided_in_the_browser():
    """Alice (compliance) denies a PII export on the approval page."""
    team = TeamFactory(slug="payments", name="Payments")
    alice = UserFactory(username="alice")
    Membership.objects.create(user=alice, team=team, role=Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])

    def decide():
        approval_resolve(approval=approval, actor=Actor.person(alice), action="deny")
        approval.refresh_from_db()

    return team, approval, decide


def ended(approval, event_type=EventType.APPROVAL_RESOLVED):
    return Event(event_type, approval.team_id, ChainStream.EVENTS.value, 1, timezone.now(), {"approval_id": str(approval.pk)})


def test_retire__decided_in_the_browser__message_updated_with_the_outcome_once(slack, decided_in_the_browser):
    # Given a Slack message posted with the bot token, showing the approval's buttons
    team, approval, decide = decided_in_the_browser
    endpoint = endpoint_of(team)
    SlackMessage.objects.create(endpoint=endpoint, approval_id=approval.pk, channel="C42", ts="1770000000.000100")

    # When alice denies it in the browser, and the endpoint's dispatch sees it ended
    decide()
    to_retire = slack_messages_to_retire(endpoint=endpoint, events=[ended(approval)])
    replaced = [slack_messages_retire(approval_id=a) for a in to_retire]

    # Then chat.update replaced the message: the outcome, no buttons
    assert to_retire == [approval.pk] and replaced == [1]
    (update,) = slack.received("/api/chat.update")
    assert (update["json"]["channel"], update["json"]["ts"]) == ("C42", "1770000000.000100")
    assert update["headers"]["Authorization"] == "Bearer xoxb-test"
    blocks = json.dumps(update["json"]["blocks"])
    assert "veto_approve" not in blocks and "denied" in json.dumps(update["json"]).lower()
    # and once only: it is retired
    assert SlackMessage.objects.get().retired_at is not None
    assert slack_messages_to_retire(endpoint=endpoint, events=[ended(approval)]) == []
    assert slack_messages_retire(approval_id=approval.pk) == 0
    assert len(slack.received("/api/chat.update")) == 1


def test_retire__no_bot_token__a_recent_presss_response_url_is_used(slack, decided_in_the_browser):
    team, approval, decide = decided_in_the_browser
    endpoint = endpoint_of(team, bot_token="")
    SlackMessage.objects.create(
        endpoint=endpoint, approval_id=approval.pk, channel="C42", ts="1.1", response_url=slack.response_url()
    )
    decide()
    assert slack_messages_retire(approval_id=approval.pk) == 1
    (reply,) = slack.received("/hooks/")
    assert reply["json"]["replace_original"] is True


def test_retire__response_url_too_old_and_no_token__left_for_a_later_press(slack, decided_in_the_browser):
    team, approval, decide = decided_in_the_browser
    endpoint = endpoint_of(team, bot_token="")
    SlackMessage.objects.create(
        endpoint=endpoint,
        approval_id=approval.pk,
        channel="C42",
        ts="1.1",
        response_url=slack.response_url(),
        created_at=timezone.now() - timedelta(minutes=31),
    )
    decide()
    assert slack_messages_retire(approval_id=approval.pk) == 0
    assert slack.requests == []
    assert SlackMessage.objects.get().retired_at is None


def test_retire__approval_still_pending__nothing_sent(slack, decided_in_the_browser):
    team, approval, _ = decided_in_the_browser
    SlackMessage.objects.create(endpoint=endpoint_of(team), approval_id=approval.pk, channel="C42", ts="1.1")
    assert slack_messages_retire(approval_id=approval.pk) == 0
    assert slack.requests == []


def test_retire__expired_approval__retired_too(slack, decided_in_the_browser):
    team, approval, _ = decided_in_the_browser
    endpoint = endpoint_of(team)
    SlackMessage.objects.create(endpoint=endpoint, approval_id=approval.pk, channel="C42", ts="1.1")
    Approval.objects.filter(pk=approval.pk).update(status=Approval.Status.EXPIRED, resolved_at=timezone.now())
    assert slack_messages_to_retire(endpoint=endpoint, events=[ended(approval, EventType.APPROVAL_EXPIRED)]) == [
        approval.pk
    ]
    assert slack_messages_retire(approval_id=approval.pk) == 1
    assert "expired" in json.dumps(slack.received("/api/chat.update")[0]["json"]).lower()


def test_to_retire__other_endpoints_and_events__not_this_endpoints_business(decided_in_the_browser):
    # Given messages for the approval on a Slack endpoint, and a generic endpoint of the team
    team, approval, _ = decided_in_the_browser
    slack_endpoint = endpoint_of(team)
    generic = endpoint_of(team, format=WebhookEndpoint.Format.GENERIC)
    SlackMessage.objects.create(endpoint=slack_endpoint, approval_id=approval.pk, channel="C42", ts="1.1")
    voted = ended(approval, EventType.APPROVAL_VOTED)
    # Then only an ending event, on the endpoint holding the message, asks for it
    assert slack_messages_to_retire(endpoint=generic, events=[ended(approval)]) == []
    assert slack_messages_to_retire(endpoint=slack_endpoint, events=[voted]) == []
    assert slack_messages_to_retire(endpoint=endpoint_of(team), events=[ended(approval)]) == []
