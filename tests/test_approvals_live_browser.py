"""Approvals, live (issue 12's done-when), in a real browser: this machine's Chromium driven by
Playwright, against the real ASGI server (production settings, its websockets, collected static
files), while the published SDK (veto==0.15.2) raises the approval.

alice keeps the queue open while an agent's PII export waits for approval: it appears in her
queue, and bob's, without a reload, within a second of the validate answer; both badges count
it. She reaches it and approves it by keyboard alone; the agent's call is allowed; bob's queue
loses it and his open page of it retires its buttons and says alice decided, without a reload.
The pages work at 390 px wide without scrolling sideways. Screenshots go to var/screenshots/.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from veto.cloud.client import VetoCloudClient, VetoCloudConfig
from veto.cloud.types import ApprovalData, ApprovalPollOptions, ValidationResponse

from approvals.models import Approval
from tenancy.models import Membership

# The machine's Chromium and the live server with static files (fixtures), people who log in,
# pages on the server, screenshots.
from tests.browser import (  # noqa: F401
    PHONE,
    browser_server,
    chromium,
    expect,
    launch_chromium,
    log_in,
    logged_in_page,
    new_context,
    page_width,
    person,
    screenshot,
    watch_page,
)
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, api_key_for, publish_rules

if TYPE_CHECKING:
    from playwright.sync_api import Page

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
CALL = {"bucket": "internal-reports", "include_pii": True, "recipient": "dana@example.com"}
# The bound: a new pending approval appears for every eligible viewer within a second.
LIVE_SECONDS = 1.0
QUEUE = "/dashboard/approvals/"
# Records, in the page, when an element first matches and when it is gone (Date.now(), ms).
WATCH = """([selector, name]) => {
  const seen = () => document.querySelector(selector) !== null;
  window.__live = window.__live || {};
  const note = () => {
    if (seen() && !window.__live[name + ':in']) { window.__live[name + ':in'] = Date.now(); }
    if (!seen() && window.__live[name + ':in'] && !window.__live[name + ':out']) { window.__live[name + ':out'] = Date.now(); }
  };
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
  note();
}"""


@dataclass
class Agent:
    """The agent's side, in a thread of its own: the SDK's validate, then its approval poll."""

    key: str
    base_url: str
    validated: threading.Event = field(default_factory=threading.Event)
    validated_at: float = 0.0  # wall clock (time.time()) when validate answered
    validation: ValidationResponse | None = None
    approval: ApprovalData | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="sdk-agent", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._call())
        except BaseException as exc:  # noqa: BLE001 - reported by the test, in its thread
            self.error = exc
            self.validated.set()

    async def _call(self) -> None:
        client = VetoCloudClient(VetoCloudConfig(api_key=self.key, base_url=self.base_url, retries=0))
        try:
            self.validation = await client.validate("run_data_export", dict(CALL))
            self.validated_at = time.time()
            self.validated.set()
            if self.validation.approval_id:
                self.approval = await client.poll_approval(
                    self.validation.approval_id, ApprovalPollOptions(poll_interval=0.1, timeout=60)
                )
        finally:
            await client.close()


def open_live(page: Page, path: str) -> None:
    """Load ``path`` and wait until its socket is open (the live path's own status line)."""
    page.goto(path)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "open")
    page.evaluate("window.__notReloaded = true")


def tab_to(page: Page, selector: str, *, most: int = 60) -> None:
    """Press Tab until the element ``selector`` has the focus, as a keyboard user would."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab within {most} presses")


def seen_at(page: Page, name: str) -> float | None:
    value = page.evaluate("(n) => (window.__live || {})[n] || null", name)
    return None if value is None else value / 1000


def test_approvals_live__sdk_raises__both_approvers_see_it__alice_approves_by_keyboard__bob_sees_it_decided(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
):
    # Given a team whose PII exports need the compliance group: alice and bob are in it
    team = TeamFactory(slug="payments", name="Payments")
    publish_rules(team, RULES)
    alice = person("alice", team, Membership.Role.MEMBER)
    bob = person("bob", team, Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance").members.add(alice, bob)
    agent = Agent(api_key_for(team, name="export agent"), browser_server.url)
    errors: list[str] = []
    latencies: dict[str, float] = {}

    with launch_chromium(chromium) as browser:
        alice_page = logged_in_page(browser, browser_server, "alice", errors=errors)
        bob_context = new_context(browser, browser_server)
        bob_queue = watch_page(bob_context.new_page(), errors)
        log_in(bob_queue, "bob")

        # alice and bob keep their queues open: nothing waits yet
        for page in (alice_page, bob_queue):
            open_live(page, QUEUE)
            expect(page.locator("#queue-results")).to_contain_text("Nothing is waiting for you.")
            expect(page.locator("#nav-approvals .badge")).to_have_count(0)
            page.evaluate(WATCH, ["#queue-results tr[id^=approval-]", "row"])

        # When the agent's call (the published SDK) is held for approval
        agent.start()
        assert agent.validated.wait(30), "the SDK's validate did not answer"
        assert agent.error is None, agent.error
        assert agent.validation is not None and agent.validation.decision == "require_approval"
        approval_id = agent.validation.approval_id
        row = f"#approval-{approval_id}"

        # Then it appears in both queues without a reload, within a second of the answer,
        # and both badges count it
        for who, page in (("alice", alice_page), ("bob", bob_queue)):
            expect(page.locator(row)).to_contain_text("run_data_export", timeout=5_000)
            expect(page.locator(row)).to_contain_text("just now")
            appeared = seen_at(page, "row:in")
            assert appeared is not None
            latencies[who] = appeared - agent.validated_at
            expect(page.locator("#nav-approvals .badge")).to_have_text("1")
            assert page.evaluate("window.__notReloaded") is True
        assert max(latencies.values()) <= LIVE_SECONDS, f"appeared after {latencies} s"
        screenshot(alice_page, "approvals-queue.png")

        # bob opens it in a second tab and leaves it open
        bob_detail = watch_page(bob_context.new_page(), errors)
        open_live(bob_detail, f"{QUEUE}{approval_id}/")
        expect(bob_detail.locator("#decision button", has_text="Approve")).to_be_visible()

        # When alice, by keyboard alone, tabs to the row's link and opens it
        tab_to(alice_page, f"{row} a.review")
        alice_page.keyboard.press("Enter")
        expect(alice_page).to_have_url(f"{browser_server.url}{QUEUE}{approval_id}/")
        expect(alice_page.locator("#live-status")).to_have_attribute("data-state", "open")
        approve = alice_page.locator("#decision button", has_text="Approve")
        deny = alice_page.locator("#decision button", has_text="Deny")
        # (easy targets: Approve the primary action, both at least 44 px high, side by side)
        expect(approve).to_have_class("button primary")
        expect(deny).to_have_class("button danger")
        approve_box, deny_box = approve.bounding_box(), deny.bounding_box()
        assert approve_box and deny_box
        assert approve_box["height"] >= 44 and deny_box["height"] >= 44, (approve_box, deny_box)
        assert approve_box["x"] + approve_box["width"] <= deny_box["x"]  # Approve first, apart
        screenshot(alice_page, "approval-detail.png")
        bob_queue.evaluate(WATCH, [row, "decided"])
        # and tabs to Approve and presses Enter
        tab_to(alice_page, "#decision button[value=approve]")
        pressed = time.time()
        alice_page.keyboard.press("Enter")

        # Then it is approved, on her page
        expect(alice_page.locator("#decision-status")).to_have_text("Approved")
        expect(alice_page.locator("#decision-outcome")).to_contain_text("Approved by alice at")
        # and the agent's call completes, allowed
        agent.thread.join(30)
        assert agent.error is None, agent.error
        assert agent.approval is not None
        assert (agent.approval.status, agent.approval.resolved_by) == ("approved", "alice")

        # and bob's queue loses it, his open page retires its buttons and says alice decided,
        # and both badges count nothing: all without a reload
        expect(bob_queue.locator(row)).to_have_count(0)
        expect(bob_queue.locator("#queue-results")).to_contain_text("Nothing is waiting for you.")
        expect(bob_detail.locator("#decision-status")).to_have_text("Approved")
        expect(bob_detail.locator("#decision-outcome")).to_contain_text("Approved by alice at")
        expect(bob_detail.locator("#decision button")).to_have_count(0)
        expect(bob_detail.locator("#decision-outcome")).to_contain_text("UTC")
        expect(bob_detail.locator("#trail")).to_contain_text("Quorum reached: approved")
        for page in (alice_page, bob_queue, bob_detail):
            expect(page.locator("#nav-approvals .badge")).to_have_count(0)
        for page in (bob_queue, bob_detail):
            assert page.evaluate("window.__notReloaded") is True
        gone = seen_at(bob_queue, "decided:out")
        assert gone is not None
        screenshot(bob_detail, "approval-decided.png")

    print(  # the measured latencies, for the report (pytest -s)
        f"\nlive: queue appearance after the validate answer (s): {latencies}; "
        f"gone from bob's queue {gone - pressed:.2f} s after alice pressed Enter on Approve"
    )

    # At 390 px wide (a phone), with one approval waiting, no approvals page scrolls sideways
    ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        arguments={"bucket": "internal-reports-with-a-rather-long-name", "include_pii": True},
        context={"custom": {"model": "gpt-5", "environment": "production"}},
        rule_name="pii_export_review",
    )
    widths = {}
    with launch_chromium(chromium) as browser:
        phone_page = logged_in_page(browser, browser_server, "bob", viewport=PHONE, errors=errors)
        for path, name in (
            (QUEUE, "approvals-queue-phone.png"),
            (f"{QUEUE}{approval_id}/", None),
            (f"{QUEUE}history/", None),
        ):
            phone_page.goto(path)
            expect(phone_page.locator("main h1")).to_be_visible()
            widths[path] = page_width(phone_page)
            if name:
                screenshot(phone_page, name)
    assert all(width <= PHONE["width"] for width in widths.values()), f"page widths at 390 px: {widths}"

    assert errors == [], f"JavaScript errors in the page: {errors}"
    approval = Approval.objects.get(pk=approval_id)
    assert (approval.status, approval.resolved_by) == (Approval.Status.APPROVED, "alice")
    assert list(approval.events.values_list("action", "actor_name", "channel")) == [
        ("approve", "alice", "web"),
        ("approved", "alice", "web"),
    ]
