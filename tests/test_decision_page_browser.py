"""One decision's page in a real browser (this machine's Chromium, the real ASGI server): an
approval raised by a call whose long bucket URL made the rule fire. At 390 px (a phone) nothing
scrolls sideways (long hashes, the URL and the JSON wrap), the marked argument is visible, and the
chain's neighbour links and the verify button work from the keyboard. Screenshots in
var/screenshots/decision-page*.png."""

from __future__ import annotations

import pytest

from tenancy.models import Membership

# The machine's Chromium and the live server (fixtures), people who log in, screenshots.
from tests.browser import (  # noqa: F401
    COLLECT_CSP_VIOLATIONS,
    DESKTOP,
    PHONE,
    browser_server,
    chromium,
    csp_violations,
    expect,
    launch_chromium,
    logged_in_page,
    page_width,
    person,
    screenshot,
)
from tests.factories import ApprovalFactory, TeamFactory, publish_rules, record_decision

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

LONG_URL = (
    "s3://public-" + "very-long-bucket-name-" * 8 + "exports/2026/12/03/customers-with-personal-data.csv"
)
RULES = """\
rules:
  - name: public_buckets
    tool: run_data_export
    when: args.include_pii == true && args.bucket.startsWith("s3://public-")
    action: require_approval
"""


def test_decision_page__phone_and_desktop__no_sideways_scroll_marked_argument_keyboard_to_neighbours(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
):
    # Given a member, the published rule, and three chained decisions (the middle one fired the rule)
    team = TeamFactory(slug="payments", name="Payments")
    person("alice", team, Membership.Role.MEMBER)
    publish_rules(team, RULES)
    first = record_decision(team, tool_name="search")
    approval = ApprovalFactory(team=team, tool_name="run_data_export")
    arguments = {
        "include_pii": True,
        "bucket": LONG_URL,
        "rows": 12,
        "nested": {"deep": {"list": list(range(30))}},
    }
    fired = record_decision(
        team,
        tool_name="run_data_export",
        arguments=arguments,
        context={"session_id": "s-" + "x" * 120, "custom": {"model": "gpt-5"}},
        decision="require_approval",
        rule_id="public_buckets",
        rule_name="public_buckets",
        reason="Matched rule: public_buckets",
        rule_set_version=1,
        approval_id=approval.id,
    )
    record_decision(team, tool_name="search")
    url = f"/dashboard/teams/{team.slug}/decisions/{fired.id}/"
    errors: list[str] = []

    with launch_chromium(chromium) as browser:
        for viewport, name in ((PHONE, "decision-page-phone.png"), (DESKTOP, "decision-page.png")):
            page = logged_in_page(browser, browser_server, "alice", viewport=viewport, errors=errors)
            page.add_init_script(COLLECT_CSP_VIOLATIONS)
            page.goto(url)
            # Then the condition, the marked bucket and the chain are shown, nothing scrolls sideways
            expect(page.locator("[data-condition]")).to_contain_text('args.bucket.startsWith("s3://public-")')
            expect(page.locator('#arguments mark[data-path="bucket"]')).to_be_visible()
            expect(page.locator('#why tr.fired[data-path="args.bucket"]')).to_be_visible()
            expect(page.locator('[data-field="hash"]')).to_contain_text(fired.hash)
            assert page_width(page) <= viewport["width"], f"{name}: {page_width(page)} px wide"
            assert csp_violations(page) == []
            screenshot(page, name)
            page.context.close()

        # And by keyboard alone she goes to the previous decision in the chain
        page = logged_in_page(browser, browser_server, "alice", viewport=PHONE, errors=errors)
        page.goto(url)
        page.locator("a[rel=prev]").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/decisions/{first.id}/")
        expect(page.locator('[data-field="sequence"]')).to_have_text(f"#{first.sequence}")
        # and verifies the team's chains from there
        page.locator("#chain button[type=submit]").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/dashboard/teams/{team.slug}/audit/")
        expect(page.locator(".message.success").first).to_contain_text("OK")

    assert errors == []
