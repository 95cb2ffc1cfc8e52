"""The webhook settings pages in a real browser: this machine's Chromium, driven by Playwright,
against the real ASGI server (production settings, collected static files, the test database).

Dana, a team admin, opens Webhooks from the nav, adds an endpoint with the keyboard, sees its
signing secret once (gone after a reload), sends a test message and finds it in the delivery
log. At 390 px wide (a phone) neither page scrolls sideways; no CSP violation, no script error.
Screenshots: var/screenshots/webhooks.png, webhooks-phone.png, webhook-endpoint-phone.png.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tenancy.models import Membership

# The machine's Chromium and the live server with static files (fixtures: a missing Chromium
# fails, never skips), people who log in, screenshots.
from tests.browser import (  # noqa: F401
    COLLECT_CSP_VIOLATIONS,
    DESKTOP_TALL,
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
from tests.factories import TeamFactory
from webhooks.models import WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

# A public address written as an IP: the SSRF guard passes it without a DNS lookup.
RECEIVER = "https://93.184.215.14/hooks/veto-siem"


def sideways_overflow(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_webhooks__admin_adds_an_endpoint_sees_the_secret_once_and_sends_a_test(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
):
    # Given a team with dana, its admin
    team = TeamFactory(slug="payments", name="Payments")
    person("dana", team, Membership.Role.ADMIN)
    errors: list[str] = []

    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "dana", viewport=DESKTOP_TALL, errors=errors)
        page.add_init_script(COLLECT_CSP_VIOLATIONS)
        page.goto(f"/dashboard/teams/{team.slug}/settings/")

        # When she follows the nav's Webhooks link and fills in the form with the keyboard
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
        expect(page.locator("#no-webhooks")).to_be_visible()
        page.focus("#id_name")
        page.keyboard.type("SIEM")
        page.keyboard.press("Tab")  # the format: generic, as it is
        page.keyboard.press("Tab")
        page.keyboard.type(RECEIVER)
        page.check("input[name=events][value='policy.published']")
        page.select_option("#id_min_severity", "high")
        page.get_by_role("button", name="Add endpoint").click()

        # Then the endpoint's page shows its secret, once
        expect(page.locator(".messages")).to_contain_text("Created the webhook endpoint SIEM.")
        secret = page.locator("#secret-value").input_value()
        assert secret.startswith("whsec_")
        expect(page.locator("#state")).to_contain_text("enabled")
        screenshot(page, "webhook-created.png")
        # (the page answers the form's POST, as My API keys does: the secret is in no URL or
        # session; coming back is a new visit)
        page.get_by_role("link", name="All webhooks of Payments").click()
        page.get_by_role("link", name="SIEM", exact=True).click()
        expect(page.locator("#endpoint h1")).to_contain_text("SIEM")
        expect(page.locator("#new-secret")).to_have_count(0)
        assert secret not in page.content()

        # When she sends a test message
        page.get_by_role("button", name="Send a test message").click()
        # Then the log lists a test delivery of the endpoint's first event
        expect(page.locator(".messages")).to_contain_text("Sent a test deny message to SIEM")
        entry = page.locator("#deliveries .delivery")
        expect(entry).to_have_count(1)
        expect(entry).to_contain_text("deny")
        expect(entry).to_contain_text("test")
        logged = entry.get_attribute("id") or ""
        shown = entry.inner_text()

        # On a phone neither the list nor the endpoint's page scrolls sideways
        page.set_viewport_size(PHONE)
        page.reload()
        assert page_width(page) <= PHONE["width"]
        assert sideways_overflow(page) <= 0
        expect(page.get_by_role("button", name="Rotate secret")).to_be_visible()
        screenshot(page, "webhook-endpoint-phone.png")
        page.goto(f"/dashboard/teams/{team.slug}/settings/webhooks/")
        expect(page.locator("table.webhooks tbody tr")).to_contain_text("SIEM")
        assert page_width(page) <= PHONE["width"]
        assert sideways_overflow(page) <= 0
        screenshot(page, "webhooks-phone.png")
        violations = csp_violations(page)

    assert errors == [], f"JavaScript errors in the page: {errors}"
    assert violations == []
    # And what the pages showed is what is stored (read here: the ORM is not for Playwright's loop)
    endpoint = WebhookEndpoint.objects.get(team=team)
    assert endpoint.secrets.get().secret == secret
    assert endpoint.events == ["deny", "require_approval", "policy.published"]
    assert endpoint.min_severity == "high"
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert logged == f"delivery-{delivery.id}" and delivery.webhook_id in shown
    assert delivery.message["test"] is True
