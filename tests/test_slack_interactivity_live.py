"""Slack's 3 seconds, for real: the live ASGI server and a real Celery worker, with a Slack
stand-in whose users.info takes 4 s. The press is answered at once; the approval is resolved
and the buttons replaced after, by the worker."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import httpx
import pytest

from approvals.models import Approval
from conftest import start_asgi_server, start_celery_worker_and_beat, stop_processes, subprocess_environment
from tenancy.models import Membership
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory
from tests.slack_standin import slack_standin
from webhooks.models import WebhookEndpoint
from webhooks.slack.signature import slack_signature

SIGNING_SECRET = "live-slack-signing-secret"


@pytest.mark.django_db(transaction=True)
def test_press__slack_is_slow_to_say_who_pressed__answered_at_once_resolved_after(tmp_path):
    with slack_standin() as slack:
        # Given alice (compliance) in Slack, whose e-mail Slack takes 4 s to tell
        slack.emails["UALICE"] = "alice@payments.example"
        slack.users_info_delay = 4.0
        team = TeamFactory(slug="payments", name="Payments")
        alice = UserFactory(username="alice", email="alice@payments.example")
        Membership.objects.create(user=alice, team=team, role=Membership.Role.MEMBER)
        ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
        endpoint = WebhookEndpoint.objects.create(
            team=team,
            name="Slack",
            url="https://hooks.slack.com/services/x",
            format=WebhookEndpoint.Format.SLACK,
            slack_signing_secret=SIGNING_SECRET,
            slack_bot_token="xoxb-live",
        )
        approval = ApprovalFactory(team=team, approver_groups=["compliance"])
        # and the server and a worker that reach the stand-in for Slack
        slack_env = {
            "VETO_SLACK_API_BASE_URL": slack.api_url,
            "VETO_SLACK_RESPONSE_URL_PREFIX": slack.hooks_url,
            "VETO_VAR_DIR": str(tmp_path),
        }
        server_process, server = start_asgi_server(tmp_path / "server.log", **slack_env)
        workers = start_celery_worker_and_beat(tmp_path, subprocess_environment(**slack_env))
        try:
            # When Slack posts alice's signed Approve press
            payload = {
                "type": "block_actions",
                "user": {"id": "UALICE"},
                "team": {"id": "T9"},
                "container": {"type": "message", "message_ts": "1770000000.000100", "channel_id": "C42"},
                "response_url": slack.response_url(),
                "actions": [{"action_id": "veto_approve", "value": str(approval.pk), "type": "button"}],
            }
            body = urlencode({"payload": json.dumps(payload)}).encode()
            stamp = str(int(time.time()))
            started = time.monotonic()
            response = httpx.post(
                f"{server.url}/v1/slack/interactivity/{endpoint.pk}",
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Slack-Request-Timestamp": stamp,
                    "X-Slack-Signature": slack_signature(signing_secret=SIGNING_SECRET, timestamp=stamp, body=body),
                },
                timeout=10,
            )
            answered_in = time.monotonic() - started

            # Then Slack has its 200 well inside 3 s, before anyone knows who pressed
            assert response.status_code == 200, response.text
            assert answered_in < 2.0, f"answered in {answered_in:.2f} s"
            # and after users.info answers, the worker approves as alice and replaces the buttons
            (reply,) = slack.wait_for("/hooks/", timeout=45)
            logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log"))
            assert reply["json"]["replace_original"] is True, logs
            approval.refresh_from_db()
            assert (approval.status, approval.resolved_by) == (Approval.Status.APPROVED, "alice")
            assert time.monotonic() - started >= slack.users_info_delay
        finally:
            stop_processes(server_process, *workers)
