"""The team settings page in a real browser: this machine's Chromium, driven by Playwright,
against the real ASGI server (production settings, collected static files, the test database).

Dana, a team admin, adds a person by e-mail, puts them in an approver group and lets admins
approve, all with plain forms; a member sees the page read-only. At 390 px wide (a phone) the
page does not scroll sideways. Screenshots: var/screenshots/team-settings.png and
team-settings-phone.png.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from audit.models import AuditEvent
from tenancy.models import ApproverGroup, Membership

# The machine's Chromium and the live server with static files (fixtures: a missing Chromium
# fails, never skips), people who log in, screenshots.
from tests.browser import (  # noqa: F401
    DESKTOP_TALL,
    PHONE,
    browser_server,
    chromium,
    expect,
    launch_chromium,
    log_in,
    logged_in_page,
    page_width,
    person,
    screenshot,
)
from tests.factories import ApproverGroupFactory, TeamFactory, UserFactory, personal_api_key_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]


def sideways_overflow(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_team_settings__admin_adds_a_member_to_team_and_group__member_sees_it_read_only(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
):
    # Given a team with dana (admin), carol (member, with a key), a compliance group, and erin
    team = TeamFactory(slug="payments", name="Payments")
    person("dana", team, Membership.Role.ADMIN)
    carol = person("carol", team, Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance", name="Compliance").members.add(carol)
    personal_api_key_for(carol, team, name="carol's laptop")
    UserFactory(username="erin", email="erin@example.com")
    settings_url = f"/dashboard/teams/{team.slug}/settings/"
    errors: list[str] = []

    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "dana", viewport=DESKTOP_TALL, errors=errors)
        page.goto(settings_url)

        # When she adds erin by e-mail, with the keyboard
        page.focus("#id_user")
        page.keyboard.type("erin@example.com")
        page.keyboard.press("Enter")
        # Then the page comes back with a message and erin in the table
        expect(page.locator(".messages")).to_contain_text("Added erin to payments as member.")
        expect(page.locator("#member-erin")).to_contain_text("Member")

        # When she puts erin into compliance and lets admins approve
        page.select_option("#add-to-compliance", "erin")
        page.locator("#group-compliance").get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("#group-compliance .group-members")).to_contain_text("erin")
        page.check("#id_admins_may_approve")
        page.get_by_role("button", name="Save options").click()
        expect(page.locator(".messages")).to_contain_text("Saved the options of payments.")
        expect(page.locator("#id_admins_may_approve")).to_be_checked()
        expect(page.locator("#keys")).to_contain_text("carol's laptop")
        screenshot(page, "team-settings.png")

        # On a phone the page does not scroll sideways
        page.set_viewport_size(PHONE)
        page.reload()
        assert page_width(page) <= PHONE["width"]
        assert sideways_overflow(page) <= 0
        expect(
            page.locator("#member-carol").get_by_role("button", name="Remove carol from payments")
        ).to_be_visible()
        screenshot(page, "team-settings-phone.png")

        # When carol, a member, opens it, she sees it read-only
        page.click("text=Log out")
        page.set_viewport_size(DESKTOP_TALL)
        log_in(page, "carol")
        page.goto(settings_url)
        expect(page.locator("#read-only")).to_contain_text("read-only for you")
        expect(page.locator("#member-erin")).to_be_visible()
        expect(page.locator("form[action$='/members/add']")).to_have_count(0)
        expect(page.locator("#keys")).to_have_count(0)

    assert errors == [], f"JavaScript errors in the page: {errors}"
    assert set(ApproverGroup.objects.get(team=team).members.values_list("username", flat=True)) == {
        "carol",
        "erin",
    }
    assert AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TEAM_CHANGED).count() == 3
