"""The approvals pages in a real browser: this machine's Chromium, driven by Playwright, against the
real ASGI server (production settings, collected static files, the test database).

An approver logs in, sees the pending approval in her queue, opens it, sees the e-mail address in
its arguments flagged, tries to deny without a comment (refused, on the page), then denies with one.
"""

from __future__ import annotations

import re

import pytest

from approvals.models import Approval
from tenancy.models import Membership

# The machine's Chromium and the live server with static files: browser_server and chromium
# are fixtures, found by pytest in this module's namespace once imported (a missing Chromium
# fails, never skips).
from tests.browser import browser_server, chromium, expect, launch_chromium, log_in, new_page, person  # noqa: F401
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]


def test_approvals_page__approver_denies_a_flagged_call__comment_required(browser_server, chromium):  # noqa: F811
    # Given a pending approval for the compliance group, of which alice is a member
    team = TeamFactory(slug="payments", name="Payments")
    alice = person("alice", team, Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
    approval = ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        arguments={"bucket": "internal-reports", "recipient": "dana@example.com", "include_pii": True},
        context={"custom": {"model": "gpt-5", "environment": "production"}},
        reason="PII exports need a compliance review",
    )
    errors: list[str] = []

    with launch_chromium(chromium) as browser:
        page = new_page(browser, browser_server, errors=errors)

        # When she logs in, the nav says one approval waits for her; the queue lists it
        log_in(page, "alice")
        expect(page.locator("#nav-approvals .badge")).to_have_text("1")
        page.click("#nav-approvals")
        row = page.locator(f"#approval-{approval.id}")
        expect(row).to_contain_text("run_data_export")
        expect(row).to_contain_text("gpt-5")
        expect(row).to_contain_text("production")

        # and she opens it: the e-mail address in the arguments is flagged
        row.get_by_role("link", name="Review").click()
        expect(page).to_have_url(re.compile(rf"/dashboard/approvals/{approval.id}/$"))
        recipient = page.locator("#arguments li.arg.flagged", has_text="recipient")
        expect(recipient).to_contain_text("dana@example.com")
        expect(recipient.locator(".pii-flag")).to_have_text("e-mail address")
        expect(page.locator("#rule")).to_contain_text("PII exports need a compliance review")

        # When she denies without a comment, the panel says a comment is needed (htmx: the
        # message comes inside the swapped panel) and nothing is decided
        page.get_by_role("button", name="Deny").click()
        expect(page.locator("#comment-error")).to_contain_text("A comment is required to deny")
        expect(page.locator("#decision .messages")).to_contain_text("Not decided")
        expect(page.locator("#decision-status")).to_have_text("Pending")

        # When she denies with a comment
        page.fill("#decision textarea[name=comment]", "Exports of customer e-mails are not allowed")
        page.get_by_role("button", name="Deny").click()

        # Then the approval is denied, by her, with her comment; the trail shows it too
        expect(page.locator("#decision-status")).to_have_text("Denied")
        expect(page.locator("#decided-by")).to_have_text("alice")
        expect(page.locator("#decision-comment")).to_have_text("Exports of customer e-mails are not allowed")
        expect(page.locator("#trail")).to_contain_text("Denied")
        expect(page.locator("#decision button")).to_have_count(0)
        expect(page.locator("#nav-approvals .badge")).to_have_count(0)  # nothing waits for her now
        expect(page).to_have_url(re.compile(rf"/dashboard/approvals/{approval.id}/$"))

    assert errors == [], f"JavaScript errors in the page: {errors}"
    approval.refresh_from_db()
    assert (approval.status, approval.resolved_by) == (Approval.Status.DENIED, "alice")
    assert approval.resolution_comment == "Exports of customer e-mails are not allowed"
    assert list(approval.events.values_list("action", "channel")) == [("deny", "web")]
