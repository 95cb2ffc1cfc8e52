"""The policies page in a real browser: this machine's Chromium, driven by Playwright, against
the real ASGI server (production settings, collected static files, the test database).

A member writes a broken rule and sees the error at its line as she types, fixes it, saves a
draft and sees its diff; a second person, a team admin, publishes it and sees it active.
"""

from __future__ import annotations

import re

import pytest

from policies.models import RuleSetPublication, RuleSetVersion
from policies.services import rule_set_version_create, rule_set_version_publish
from tenancy.models import Membership

# The machine's Chromium and the live server with static files (fixtures), people who log in.
from tests.browser import browser_server, chromium, expect, launch_chromium, log_in, logged_in_page, person  # noqa: F401
from tests.factories import BY_TESTS, TeamFactory

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

V1 = """\
rules:
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: deny
"""


def test_policies_page__member_writes_and_fixes_a_rule__another_admin_publishes_it(browser_server, chromium):  # noqa: F811
    # Given a team with version 1 active, alice (member) and dana (team admin)
    team = TeamFactory(slug="payments", name="Payments")
    person("alice", team, Membership.Role.MEMBER)
    dana = person("dana", team, Membership.Role.ADMIN)
    rule_set_version_publish(version=rule_set_version_create(team=team, source_text=V1), actor=BY_TESTS)
    policies = f"/dashboard/teams/{team.slug}/policies/"
    action_line = V1.count("\n") + 3  # the typed rule's third line
    errors: list[str] = []

    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "alice", errors=errors)
        page.click("nav >> text=Policies")
        page.click("text=Payments")
        expect(page).to_have_url(re.compile(re.escape(policies) + "$"))

        # When alice types a rule with an unknown action at the end of the editor
        editor = page.locator("#source")
        expect(editor).to_have_value(V1)
        editor.click()
        page.keyboard.press("Control+End")
        editor.press_sequentially("  - name: no_sms\n    tool: send_sms\n    action: nope")

        # Then, without saving, the error shows at its line: gutter, the line itself, the list
        expect(page.locator(".gutter .ln.err")).to_have_text([str(action_line)])
        expect(page.locator(f'.lint-band[data-line="{action_line}"]')).to_contain_text(
            "unknown action 'nope'"
        )
        problem = page.locator(f'#validation .problem[data-line="{action_line}"]')
        expect(problem).to_contain_text("rules[1].action")
        expect(problem).to_contain_text("action: nope")

        # When she fixes it
        for _ in "nope":
            editor.press("Backspace")
        editor.press_sequentially("deny")

        # Then the marks go and the check says it is valid
        expect(page.locator("#validation")).to_contain_text("Valid: 2 rules")
        expect(page.locator(".gutter .ln.err")).to_have_count(0)
        expect(page.locator(".lint-band")).to_have_count(0)

        # When she saves it, she sees the draft and its diff against the active version
        page.click("#save-version")
        expect(page).to_have_url(re.compile(re.escape(policies) + "versions/2/$"))
        expect(page.locator(".messages")).to_contain_text("Saved version 2 as a draft.")
        expect(page.locator("#changes .change.added")).to_contain_text("+ added no_sms")
        expect(page.locator("#changes")).to_contain_text("From version 1 to version 2")
        # but she may not publish it herself
        expect(page.locator("#version button", has_text="Publish v2")).to_be_disabled()
        expect(page.locator("#version")).to_contain_text("Only team admins can publish")

        # When dana, a team admin, logs in and publishes it from the history
        page.click("text=Log out")
        log_in(page, "dana")
        page.goto(policies)
        page.locator("#version-2").get_by_role("link", name="Diff with active").click()
        expect(page.locator("#diff-result .change.added")).to_contain_text("+ added no_sms")
        page.locator("#version-2").get_by_role("button", name="Publish v2").click()

        # Then version 2 is active, on its page and in the history
        expect(page.locator(".messages")).to_contain_text("Published version 2; it is now active.")
        expect(page.locator("#version h1 .badge")).to_have_text("active")
        page.goto(policies)
        expect(page.locator("#version-2 .badge")).to_have_text("active")
        expect(page.locator("#version-1 .badge")).to_have_count(0)
        expect(page.locator("#active-version")).to_contain_text("Version 2, written by alice")

    assert errors == [], f"JavaScript errors in the page: {errors}"
    active = RuleSetVersion.objects.get(team=team, is_active=True)
    assert (active.number, active.author_name) == (2, "alice")
    assert RuleSetPublication.objects.filter(team=team).first().actor_user == dana
