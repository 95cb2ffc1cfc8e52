"""Approve / Deny on a Slack message, through POST /v1/slack/interactivity/<endpoint id>, with a
local stand-in for Slack (users.info, response_url). The same eligibility as the browser: an
approver group's member decides, once; a forged, stale or foreign press changes nothing."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

import pytest

from approvals.models import Approval, ApprovalEvent
from tenancy.models import Membership
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory
from tests.slack_standin import slack_standin
from webhooks.models import SlackMessage, WebhookEndpoint
from webhooks.slack.signature import slack_signature

pytestmark = pytest.mark.django_db

SIGNING_SECRET = "slack-signing-secret-for-tests"


@pytest.fixture
def slack(settings):
    with slack_standin() as standin:
        settings.SLACK_API_BASE_URL = standin.api_url
        settings.SLACK_RESPONSE_URL_PREFIX = standin.hooks_url
        yield standin


@pytest.fixture
def payments(slack):
    """A team whose compliance group (alice) decides PII exports, bob a plain member, a Slack
    endpoint with its app's signing secret and bot token, and one pending approval."""
    team = TeamFactory(slug="payments", name="Payments")
    alice = UserFactory(username="alice", email="alice@payments.example")
    bob = UserFactory(username="bob", email="bob@payments.example")
    for user in (alice, bob):
        Membership.objects.create(user=user, team=team, role=Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
    slack.emails.update({"UALICE": "Alice@Payments.example", "UBOB": "bob@payments.example"})
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        name="Slack #approvals",
        url="https://hooks.slack.com/services/T/B/x",
        format=WebhookEndpoint.Format.SLACK,
        events=["require_approval"],
        slack_signing_secret=SIGNING_SECRET,
        slack_bot_token="xoxb-test",
    )
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], rule_name="PII export")
    return team, endpoint, approval


def press_body(approval_id, *, action_id="veto_approve", user="UALICE", response_url, ts="1770000000.000100"):
    payload = {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T9"},
        "team": {"id": "T9"},
        "container": {"type": "message", "message_ts": ts, "channel_id": "C42"},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "value": str(approval_id), "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def post_press(client, endpoint, body, *, secret=SIGNING_SECRET, at=None):
    timestamp = str(int(at if at is not None else time.time()))
    return client.post(
        f"/v1/slack/interactivity/{endpoint.pk}",
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_SLACK_REQUEST_TIMESTAMP=timestamp,
        HTTP_X_SLACK_SIGNATURE=slack_signature(signing_secret=secret, timestamp=timestamp, body=body),
    )


def trail(approval):
    return list(ApprovalEvent.objects.filter(approval=approval).order_by("id").values_list("action", "actor_name", "channel"))


def test_press__approver_approves__resolved_as_her_via_slack_and_buttons_replaced(client, slack, payments):
    # Given a pending approval and alice (compliance) pressing Approve on its Slack message
    _, endpoint, approval = payments

    # When Slack posts the signed press
    response = post_press(client, endpoint, press_body(approval.pk, response_url=slack.response_url()))

    # Then Slack hears 200 at once, and the approval is approved by alice, through Slack
    assert response.status_code == 200
    approval.refresh_from_db()
    assert (approval.status, approval.resolved_by) == (Approval.Status.APPROVED, "alice")
    assert trail(approval)[-1] == ("approved", "alice", "slack")
    # and the message's buttons are replaced by the outcome through the press's response_url
    (reply,) = slack.received("/hooks/")
    assert reply["json"]["replace_original"] is True
    blocks = json.dumps(reply["json"]["blocks"])
    assert "veto_approve" not in blocks and "veto_deny" not in blocks
    assert "approved" in json.dumps(reply["json"]).lower()
    # and the message is known, retired, for later updates
    message = SlackMessage.objects.get(endpoint=endpoint)
    assert (message.approval_id, message.channel, message.retired_at) == (approval.pk, "C42", approval.resolved_at)


def test_press__deny__denied_at_once(client, slack, payments):
    _, endpoint, approval = payments
    post_press(client, endpoint, press_body(approval.pk, action_id="veto_deny", response_url=slack.response_url()))
    approval.refresh_from_db()
    assert (approval.status, approval.resolved_by) == (Approval.Status.DENIED, "alice")


def test_press__double_click__resolves_once(client, slack, payments):
    # Given alice's press already approved it
    _, endpoint, approval = payments
    body = press_body(approval.pk, action_id="veto_deny", response_url=slack.response_url())
    post_press(client, endpoint, body)

    # When the same press arrives again (a double click)
    second = post_press(client, endpoint, body)

    # Then it is answered, changes nothing, and says so to her alone
    assert second.status_code == 200
    approval.refresh_from_db()
    assert approval.status == Approval.Status.DENIED
    assert [a for a, _, _ in trail(approval)] == ["deny"]
    replies = slack.received("/hooks/")
    assert replies[-1]["json"]["response_type"] == "ephemeral"
    assert "already denied" in replies[-1]["json"]["text"]


def test_press__member_not_in_the_approver_group__refused_and_kept_in_the_trail(client, slack, payments):
    _, endpoint, approval = payments
    post_press(client, endpoint, press_body(approval.pk, user="UBOB", response_url=slack.response_url()))
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert trail(approval) == [("refused", "bob", "slack")]
    (reply,) = slack.received("/hooks/")
    assert reply["json"]["response_type"] == "ephemeral" and "cannot let you decide" in reply["json"]["text"]


def test_press__slack_user_with_no_members_email__refused_by_slack_id(client, slack, payments):
    # Given a Slack user whose e-mail no member of the team has
    _, endpoint, approval = payments
    slack.emails["UEVE"] = "eve@elsewhere.example"
    post_press(client, endpoint, press_body(approval.pk, user="UEVE", response_url=slack.response_url()))
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert trail(approval) == [("refused", "slack:UEVE", "slack")]
    assert "eve@elsewhere.example" in slack.received("/hooks/")[0]["json"]["text"]


def test_press__approval_of_another_team__not_touched(client, slack, payments):
    # Given an approval of another team (its id guessed or copied)
    _, endpoint, _ = payments
    other = ApprovalFactory(team=TeamFactory(), approver_groups=["compliance"])
    post_press(client, endpoint, press_body(other.pk, response_url=slack.response_url()))
    other.refresh_from_db()
    assert other.status == Approval.Status.PENDING
    assert ApprovalEvent.objects.filter(approval=other).count() == 0


@pytest.mark.parametrize(
    ("how", "expected"),
    [("forged", 401), ("stale", 401), ("unsigned", 401), ("not_a_button", 400), ("unknown_endpoint", 404)],
)
def test_press__forged_stale_or_foreign__refused_and_nothing_changes(client, slack, payments, how, expected):
    _, endpoint, approval = payments
    body = press_body(approval.pk, response_url=slack.response_url())
    if how == "forged":
        response = post_press(client, endpoint, body, secret="not-the-apps-secret")
    elif how == "stale":
        response = post_press(client, endpoint, body, at=time.time() - 301)
    elif how == "unsigned":
        response = client.post(
            f"/v1/slack/interactivity/{endpoint.pk}", data=body, content_type="application/x-www-form-urlencoded"
        )
    elif how == "not_a_button":
        response = post_press(client, endpoint, urlencode({"payload": json.dumps({"type": "view_submission"})}).encode())
    else:
        endpoint = WebhookEndpoint(pk=uuid.uuid4())
        response = post_press(client, endpoint, body)

    assert response.status_code == expected
    assert response.json()["error"]["message"]
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert trail(approval) == []
    assert slack.requests == []


def test_press__endpoint_without_bot_token__refused_since_nobody_can_be_named(client, slack, payments):
    _, endpoint, approval = payments
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(slack_bot_token="")
    post_press(client, endpoint, press_body(approval.pk, response_url=slack.response_url()))
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert "no bot token" in slack.received("/hooks/")[0]["json"]["text"]


def test_press__response_url_not_slacks__not_followed(client, slack, payments, settings):
    # Given a signed press whose response_url points somewhere other than Slack's hooks
    _, endpoint, approval = payments
    post_press(client, endpoint, press_body(approval.pk, response_url=f"{slack.url}/elsewhere"))
    # Then the decision stands (the press was Slack's) but nothing is sent there
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED
    assert slack.received("/elsewhere") == []
