"""The done-when of the approvals pages: the published SDK (veto==0.15.2) in cloud mode waits on
a wrapped tool while a person decides IN THE BROWSER, against the live ASGI server.

The "browser" is an httpx client doing what a browser does without JavaScript: it loads the login
page, posts the credentials with the CSRF cookie and token, finds the approval in its queue, loads
the approval's page and posts its approve / deny form with the token from that page.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from veto import Veto, VetoOptions

from approvals.models import Approval
from tenancy.models import Membership
from tests.factories import (
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    api_key_for,
    publish_rules,
    set_live_server_password,
)

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

PASSWORD = "web-approver-password"
RULES = """\
rules:
  - name: pii_export_review
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
    approvers: [compliance]
    message: PII exports need a compliance review
"""
CALL = {"bucket": "internal-reports", "include_pii": True, "recipient": "dana@example.com"}
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
APPROVAL_LINK = re.compile(r'href="/dashboard/approvals/([0-9a-f-]{36})/"')


@dataclass
class Setup:
    key: str
    base_url: str
    alice: str
    carol: str
    mallory: str


@pytest.fixture
def setup(asgi_server) -> Setup:
    """A team whose PII exports need the compliance group; alice is in it (and in no membership:
    a rule's approvers need not be team members); carol is a member but no approver; mallory is
    nobody there."""
    team = TeamFactory(slug=f"web-{uuid.uuid4().hex[:8]}")
    publish_rules(team, RULES)
    alice, carol, mallory = (
        UserFactory(username=f"{name}-{team.slug}") for name in ("alice", "carol", "mallory")
    )
    for user in (alice, carol, mallory):
        set_live_server_password(user, PASSWORD)
    ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
    Membership.objects.create(user=carol, team=team)
    return Setup(api_key_for(team), asgi_server.url, alice.username, carol.username, mallory.username)


@dataclass
class Browser:
    """A person at the dashboard, as a browser without JavaScript would send it."""

    base_url: str
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=10)

    async def log_in(self, username: str) -> None:
        page = await self.http.get("/accounts/login/")
        assert "csrftoken" in self.http.cookies
        response = await self.http.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf_token(page.text)},
        )
        assert response.status_code == 302, f"login failed for {username}: {response.status_code}"

    async def pending_approval_id(self) -> str:
        """The approval the agent's call raised, as it appears in this person's queue."""
        for _ in range(200):
            queue = await self.http.get("/dashboard/approvals/", params={"tool": "run_data_export"})
            assert queue.status_code == 200
            found = APPROVAL_LINK.search(queue.text)
            if found:
                return found.group(1)
            await asyncio.sleep(0.05)
        raise AssertionError("the approval never reached the queue")

    async def decide(self, approval_id: str, action: str, comment: str = "") -> httpx.Response:
        """Load the approval's page and submit its form with the button for ``action``."""
        page = await self.http.get(f"/dashboard/approvals/{approval_id}/")
        assert page.status_code == 200
        form = re.search(r'<form method="post" action="([^"]+)" class="decision-form"', page.text)
        assert form, "the page offers no decision form"
        assert f'name="action" value="{action}"' in page.text
        return await self.http.post(
            form.group(1),
            data={"action": action, "comment": comment, "csrfmiddlewaretoken": csrf_token(page.text)},
        )

    async def close(self) -> None:
        await self.http.aclose()


def csrf_token(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@dataclass
class ExportTool:
    """A tool in the shape veto.wrap() expects (LangChain style: .name and async .func(dict))."""

    name: str = "run_data_export"
    description: str = "Export a customer dataset"
    ran_with: list[dict[str, Any]] = field(default_factory=list)

    async def func(self, arguments: dict[str, Any]) -> str:
        self.ran_with.append(arguments)
        return "exported"


async def agent_call_while(setup: Setup, human: Any) -> tuple[Any, list[dict[str, Any]], Any]:
    """Call the wrapped tool through the SDK; while it waits, let ``human(call)`` act in the
    browser. Returns what the call gave (or raised), what the tool ran with, and what ``human``
    returned."""
    veto = await Veto.init(
        VetoOptions(
            api_key=setup.key,
            base_url=setup.base_url,
            approval_poll_interval=0.1,
            approval_timeout=30,
            log_level="silent",
        )
    )
    tool = ExportTool()
    wrapped = veto.wrap([tool])[0]
    try:
        call = asyncio.ensure_future(wrapped.func(dict(CALL)))
        acted = await human(call)
        try:
            outcome: Any = await call
        except Exception as exc:  # noqa: BLE001 - the SDK raises ToolCallDeniedError on deny
            outcome = exc
        return outcome, tool.ran_with, acted
    finally:
        await veto.close()


@pytest.mark.parametrize(
    ("action", "comment", "status", "tool_runs"),
    [("approve", "", "approved", True), ("deny", "No customer e-mails leave the company", "denied", False)],
)
def test_sdk_call_waits__approver_decides_through_the_web_form(setup, action, comment, status, tool_runs):
    async def alice_decides(call: asyncio.Future) -> str:
        browser = Browser(setup.base_url)
        try:
            await browser.log_in(setup.alice)
            approval_id = await browser.pending_approval_id()
            assert not call.done()  # the agent waits for her
            response = await browser.decide(approval_id, action, comment)
            assert response.status_code == 302  # back to the approval's page, with a message
            assert response.headers["location"] == f"/dashboard/approvals/{approval_id}/"
            page = await browser.http.get(response.headers["location"])
            assert f'id="decision-status">{status.title()}</span>' in page.text
            return approval_id
        finally:
            await browser.close()

    outcome, ran_with, approval_id = asyncio.run(agent_call_while(setup, alice_decides))

    if tool_runs:
        assert outcome == "exported"
        assert ran_with == [CALL]
    else:
        assert type(outcome).__name__ == "ToolCallDeniedError"
        assert ran_with == []
    approval = Approval.objects.get(pk=approval_id)
    assert (approval.status, approval.resolved_by, approval.resolution_comment) == (
        status,
        setup.alice,
        comment,
    )
    assert set(approval.events.values_list("channel", flat=True)) == {"web"}


def test_sdk_call_waits__posts_of_people_who_may_not_decide_are_refused(setup):
    async def others_try_then_alice_approves(call: asyncio.Future) -> str:
        alice, carol, mallory = (Browser(setup.base_url) for _ in range(3))
        try:
            await alice.log_in(setup.alice)
            approval_id = await alice.pending_approval_id()
            decide = f"/dashboard/approvals/{approval_id}/decide"

            # mallory, in no way part of the team: the approval does not exist for her
            await mallory.log_in(setup.mallory)
            assert (await mallory.http.get(f"/dashboard/approvals/{approval_id}/")).status_code == 404
            token = mallory.http.cookies["csrftoken"]
            refused = await mallory.http.post(
                decide, data={"action": "approve", "csrfmiddlewaretoken": token}
            )
            assert refused.status_code == 404

            # carol, a member but no approver: she sees it, without buttons, and her POST is refused
            await carol.log_in(setup.carol)
            page = await carol.http.get(f"/dashboard/approvals/{approval_id}/")
            assert page.status_code == 200 and 'name="action"' not in page.text
            refused = await carol.http.post(
                decide, data={"action": "approve", "csrfmiddlewaretoken": csrf_token(page.text)}
            )
            assert refused.status_code == 403
            assert "may not decide this approval" in refused.text

            # a POST without the CSRF token is refused, even from the approver
            without_token = await alice.http.post(decide, data={"action": "approve"})
            assert without_token.status_code == 403

            # none of that decided anything: the agent still waits, until alice approves
            await asyncio.sleep(0.3)  # a few of the SDK's polls
            assert not call.done()
            assert (await alice.decide(approval_id, "approve")).status_code == 302
            return approval_id
        finally:
            for browser in (alice, carol, mallory):
                await browser.close()

    outcome, ran_with, approval_id = asyncio.run(agent_call_while(setup, others_try_then_alice_approves))

    assert outcome == "exported"
    assert ran_with == [CALL]
    approval = Approval.objects.get(pk=approval_id)
    assert (approval.status, approval.resolved_by) == ("approved", setup.alice)
    assert list(approval.events.values_list("action", "actor_name")) == [
        ("refused", setup.carol),
        ("approve", setup.alice),
        ("approved", setup.alice),
    ]
