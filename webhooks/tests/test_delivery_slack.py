"""A Slack endpoint with a bot token and a channel: require_approval is posted with
chat.postMessage and remembered; once the approval is decided in the browser, the next dispatch
replaces the buttons with the outcome (chat.update), once."""

from __future__ import annotations

import pytest

from approvals.services import approval_resolve
from tenancy.actor import Actor
from tenancy.models import Membership
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory, record_decision
from tests.slack_standin import slack_standin
from webhooks import delivery, dispatch
from webhooks.models import SlackMessage, WebhookDelivery
from webhooks.tests.helpers import endpoint_for, sink_paused

pytestmark = pytest.mark.django_db


@pytest.fixture
def slack(settings):
    with slack_standin() as standin, sink_paused():
        settings.SLACK_API_BASE_URL = standin.api_url
        settings.SLACK_RESPONSE_URL_PREFIX = standin.hooks_url
        yield standin


def test_slack_bot_endpoint__approval_posted_then_decided_in_the_browser__buttons_replaced_once(slack):
    # Given a Slack endpoint with a bot token and a channel, and a decision that raised an approval
    team = TeamFactory(slug="payments", name="Payments")
    alice = UserFactory(username="alice")
    Membership.objects.create(user=alice, team=team, role=Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
    endpoint = endpoint_for(
        team,
        url="https://hooks.slack.com/services/unused",
        events=("require_approval",),
        format="slack",
        slack_bot_token="xoxb-test",
        slack_channel="C123",
    )
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], tool_name="export")
    record_decision(team, decision="require_approval", tool_name="export", approval_id=approval.id, severity="high")
    # When it is dispatched and delivered
    dispatch.dispatch_team(team.id)
    item = WebhookDelivery.objects.get(endpoint=endpoint)
    attempt = delivery.attempt_due(item.id)
    # Then it was posted to the channel with buttons and remembered
    assert attempt is not None and attempt.error == ""
    (posted,) = slack.received("/api/chat.postMessage")
    assert posted["json"]["channel"] == "C123"
    assert "veto_approve" in str(posted["json"]["blocks"])
    (remembered,) = SlackMessage.objects.filter(endpoint=endpoint)
    assert remembered.approval_id == approval.id and remembered.retired_at is None
    # When Alice denies it in the browser and the team is dispatched (as its event makes it)
    approval_resolve(approval=approval, actor=Actor.person(alice), action="deny")
    dispatch.dispatch_team(team.id)
    dispatch.dispatch_team(team.id)
    # Then the message was updated with the outcome, once, and is retired
    (updated,) = slack.received("/api/chat.update")
    assert updated["json"]["ts"] == remembered.ts
    assert "veto_approve" not in str(updated["json"]["blocks"])
    remembered.refresh_from_db()
    assert remembered.retired_at is not None
