"""The team overview in a real browser: this machine's Chromium, driven by Playwright, against the
real ASGI server (production settings, collected static files, the test database, websockets
through veto_cloud/asgi.py).

Alice keeps her team's overview open while an agent's calls reach POST /v1/tools/validate: the
counts, the chart and the top denied tools move without a reload. At 390 px wide (a phone) the
page does not scroll sideways. Screenshots go to var/screenshots/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tenancy.models import ApiKey, Membership

# The machine's Chromium and the live server with static files (fixtures: a missing Chromium
# fails, never skips), people who log in, screenshots.
from tests.browser import (  # noqa: F401
    DESKTOP_TALL,
    PHONE,
    browser_server,
    chromium,
    expect,
    launch_chromium,
    logged_in_page,
    person,
    screenshot,
)
from tests.factories import TeamFactory, api_key_for, publish_rules

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = """\
rules:
  - name: no_exports
    tool: run_data_export
    action: deny
"""


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


# True once the last hour's chart bars add up to the expected number of decisions.
CHART_HOUR_TOTAL_IS = """expected => [...document.querySelectorAll('#chart-hour g.bar')]
    .reduce((total, bar) => total + Number(bar.dataset.count || 0), 0) === expected"""


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

    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "alice", viewport=DESKTOP_TALL, errors=errors)
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
        # (summed over the bars: the three calls may straddle a minute boundary)
        page.wait_for_function(CHART_HOUR_TOTAL_IS, arg=3, timeout=5000)
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
        phone = logged_in_page(browser, browser_server, "alice", viewport=PHONE, errors=errors)
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

    assert all(main <= PHONE["width"] for _, main in widths.values()), f"content widths at 390 px: {widths}"
    assert all(page <= PHONE["width"] for page, _ in widths.values()), f"page widths at 390 px: {widths}"
    assert errors == [], f"JavaScript errors in the page: {errors}"
