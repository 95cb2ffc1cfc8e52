"""The team overview in a real browser: this machine's Chromium, driven by Playwright, against the
real ASGI server (production settings, collected static files, the test database, websockets
through veto_cloud/asgi.py).

Alice keeps her team's overview open while an agent's calls reach POST /v1/tools/validate: the
counts, the chart and the top denied tools move without a reload. At 390 px wide (a phone) the
page does not scroll sideways. Screenshots go to var/screenshots/.
"""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings

from tenancy.models import ApiKey, Membership
from tests.factories import TeamFactory, api_key_for, publish_rules

# The machine's Chromium, its launch flags and the live server with static files: the policies
# page's browser test's own (a missing Chromium fails, never skips).
from tests.test_policies_browser import (  # noqa: F401
    CHROMIUM_ARGS,
    browser_server,
    chromium,
    log_in,
    person,
    sync_playwright,
)

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `chromium` fixture fails the test, with how to install it
    expect = None

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
RULES = """\
rules:
  - name: no_exports
    tool: run_data_export
    action: deny
"""


def screenshot(page: Page, name: str) -> None:
    directory = settings.VAR_DIR / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(directory / name), full_page=True)


def validate(url: str, key: str, tool_name: str) -> dict:
    response = httpx.post(
        f"{url}/v1/tools/validate",
        json={
            "tool_name": tool_name,
            "arguments": {"bucket": "reports"},
            "context": {"custom": {"model": "gpt-5", "environment": "production"}},
        },
        headers={"X-Veto-API-Key": key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def hour_count(page: Page, outcome: str):
    return page.locator(f'#counts-hour [data-count="{outcome}"]')


def test_overview__agent_calls_validate__counts_and_chart_move_without_reload(browser_server, chromium):  # noqa: F811
    # Given a team that denies exports, alice (member) and an agent's key
    team = TeamFactory(slug="payments", name="Payments")
    person("alice", team, Membership.Role.MEMBER)
    publish_rules(team, RULES)
    key = api_key_for(team, scopes=(ApiKey.Scope.RUNTIME,))
    overview = f"/dashboard/teams/{team.slug}/"
    errors: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=browser_server.url, viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            log_in(page, "alice")
            # she reaches the overview from the teams list
            page.click(f"#team-{team.slug} h2 a")
            expect(page.locator("main h1")).to_contain_text("Payments")
            expect(page.locator("#live-status")).to_have_attribute("data-state", "open")
            page.evaluate("window.__notReloaded = true")
            expect(hour_count(page, "total")).to_have_text("0")
            expect(page.locator("#overview-policy")).to_contain_text("Version 1")

            # When the agent's calls are decided: two allowed, one denied by the rule
            assert validate(browser_server.url, key, "send_email")["decision"] == "allow"
            assert validate(browser_server.url, key, "send_email")["decision"] == "allow"
            assert validate(browser_server.url, key, "run_data_export")["decision"] == "deny"

            # Then, without a reload, the counts, the chart and the lists say so
            expect(hour_count(page, "total")).to_have_text("3")
            expect(hour_count(page, "allow")).to_have_text("2")
            expect(hour_count(page, "deny")).to_have_text("1")
            expect(page.locator("#counts-day [data-count='total']")).to_have_text("3")
            expect(page.locator("#chart-hour g.bar").last).to_have_attribute("data-count", "3")
            expect(page.locator("#chart-hour desc")).to_contain_text("3 decisions")
            expect(page.locator("#top-denied-tools")).to_contain_text("run_data_export")
            expect(page.locator("#top-rules")).to_contain_text("no_exports")
            expect(page.locator("#by-model")).to_contain_text("gpt-5")
            expect(page.locator("#by-environment")).to_contain_text("production")
            expect(page.locator("#overview-latency [data-latency='p50']").first).to_contain_text("ms")
            assert page.evaluate("window.__notReloaded") is True
            screenshot(page, "overview.png")

            # When another call is denied, the numbers move again (the panels keep refreshing)
            validate(browser_server.url, key, "run_data_export")
            expect(hour_count(page, "deny")).to_have_text("2")
            expect(hour_count(page, "total")).to_have_text("4")
            assert page.evaluate("window.__notReloaded") is True

            # At 390 px wide (a phone) nothing scrolls sideways, the overview or the teams list
            phone = browser.new_context(base_url=browser_server.url, viewport=PHONE).new_page()
            phone.set_default_timeout(10_000)
            phone.on("pageerror", lambda exc: errors.append(str(exc)))
            log_in(phone, "alice")
            widths = {}
            for path, name in ((overview, "overview-phone.png"), ("/dashboard/", None)):
                phone.goto(path)
                expect(phone.locator("main h1")).to_be_visible()
                # the page as a whole, and its content alone (main: without the shell's top bar)
                widths[path] = phone.evaluate(
                    "[document.documentElement.scrollWidth, document.querySelector('main').scrollWidth]"
                )
                if name:
                    screenshot(phone, name)
        finally:
            browser.close()

    assert all(main <= PHONE["width"] for _, main in widths.values()), f"content widths at 390 px: {widths}"
    assert all(page <= PHONE["width"] for page, _ in widths.values()), f"page widths at 390 px: {widths}"
    assert errors == [], f"JavaScript errors in the page: {errors}"
