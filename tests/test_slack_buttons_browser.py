"""The Slack message of an approval, retired after a browser decision (issue 13's done-when):
the published SDK's call is held for approval, the team's Slack endpoint (a bot token and a
channel) posts it with Approve / Deny buttons to a local stand-in for Slack; alice approves on
the approval page in this machine's Chromium; the real worker then replaces the message's
buttons with the outcome (chat.update, the same channel and ts)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from veto.cloud.client import VetoCloudClient, VetoCloudConfig

from audit.models import ChainStream
from audit.selectors import chain_heads_of_team
from conftest import start_celery_worker_and_beat, stop_processes, subprocess_environment
from tenancy.models import Membership

# The machine's Chromium and the live server with static files (fixtures), people who log in.
from tests.browser import (  # noqa: F401
    browser_server,
    chromium,
    expect,
    launch_chromium,
    logged_in_page,
    person,
    screenshot,
)
from tests.factories import ApproverGroupFactory, TeamFactory, api_key_for, publish_rules
from tests.slack_standin import slack_standin
from webhooks.models import SlackMessage, WebhookEndpoint

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = """\
rules:
  - name: pii_export_review
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
    approvers: [compliance]
    message: PII exports need a compliance review
"""


def held_for_approval(base_url: str, key: str) -> str:
    async def call() -> str:
        client = VetoCloudClient(VetoCloudConfig(api_key=key, base_url=base_url, retries=0))
        try:
            answer = await client.validate("run_data_export", {"bucket": "reports", "include_pii": True})
        finally:
            await client.close()
        assert answer.decision == "require_approval" and answer.approval_id, answer
        return answer.approval_id

    return asyncio.run(call())


def buttons_of(message: dict) -> list[str]:
    return [
        element.get("action_id")
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def test_slack_buttons__approved_in_the_browser__the_slack_message_shows_the_outcome(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
    tmp_path,
):
    with slack_standin() as slack:
        # Given a team whose PII exports need compliance (alice), and its Slack endpoint posting
        # with a bot token to #approvals (from now on: its cursors at the chains' heads)
        team = TeamFactory(slug="payments", name="Payments")
        publish_rules(team, RULES)
        alice = person("alice", team, Membership.Role.MEMBER)
        ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
        heads = chain_heads_of_team(team_id=team.id)
        WebhookEndpoint.objects.create(
            team=team,
            name="Slack #approvals",
            url="https://hooks.slack.com/services/unused",
            format=WebhookEndpoint.Format.SLACK,
            events=["require_approval"],
            slack_bot_token="xoxb-browser",
            slack_channel="C42",
            decisions_cursor=heads[ChainStream.DECISIONS],
            events_cursor=heads[ChainStream.EVENTS],
        )
        # and a real worker and beat on the server's broker, reaching the stand-in for Slack
        worker_env = subprocess_environment(
            VETO_VAR_DIR=str(browser_server.log_path.parent),
            VETO_SLACK_API_BASE_URL=slack.api_url,
            VETO_SLACK_RESPONSE_URL_PREFIX=slack.hooks_url,
        )
        workers = start_celery_worker_and_beat(tmp_path, worker_env)
        errors: list[str] = []
        try:
            # When the agent's PII export is held for approval
            approval_id = held_for_approval(browser_server.url, api_key_for(team, name="export agent"))

            # Then it is posted to the channel with Approve and Deny
            logs = lambda: "\n".join(p.read_text() for p in tmp_path.glob("*.log"))  # noqa: E731
            try:
                (posted,) = slack.wait_for("/api/chat.postMessage", timeout=45)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{logs()}") from None
            assert posted["json"]["channel"] == "C42"
            assert buttons_of(posted["json"]) == ["veto_approve", "veto_deny"]
            # (the worker keeps the message once Slack has answered the post: wait for the row)
            deadline = time.monotonic() + 15
            while not SlackMessage.objects.filter(approval_id=approval_id).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert SlackMessage.objects.filter(approval_id=approval_id, retired_at__isnull=True).count() == 1

            # When alice approves it on the approval page
            with launch_chromium(chromium) as browser:
                page = logged_in_page(browser, browser_server, "alice", errors=errors)
                page.goto(f"/dashboard/approvals/{approval_id}/")
                page.locator("#decision button", has_text="Approve").click()
                expect(page.locator("#decision")).to_contain_text("approved", ignore_case=True)

            # Then the worker replaces that message's buttons with the outcome, by chat.update
            try:
                (update,) = slack.wait_for("/api/chat.update", timeout=45)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{logs()}") from None
            message = SlackMessage.objects.get(approval_id=approval_id)
            assert (update["json"]["channel"], update["json"]["ts"]) == ("C42", message.ts)
            assert buttons_of(update["json"]) == []
            text = json.dumps(update["json"]).lower()
            assert "approved" in text and "alice" in text
            assert message.retired_at is not None
            assert errors == []
        finally:
            stop_processes(*workers)
