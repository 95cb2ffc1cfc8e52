"""The decisions explorer in a real browser: this machine's Chromium, driven by Playwright, against
the real ASGI server (production settings, collected static files, websockets through
veto_cloud/asgi.py). Decisions are made through POST /v1/tools/validate with an agent's key, so
the live path is the one production runs (writer, event, sink, channel layer, socket, live.js).

Alice filters her team's decisions by keyboard (tool, outcome, environment); the filters land in
the URL; a new decision that matches joins the list without a reload, ones that do not never
show; she downloads the filtered set as CSV and JSON; a filter that cannot be applied says why
beside the form. At 390 px wide nothing scrolls sideways. Screenshots go to var/screenshots/.
"""

from __future__ import annotations

import csv
import io
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tenancy.models import ApiKey, Membership
from tests.browser import (  # noqa: F401
    DESKTOP_TALL,
    PHONE,
    browser_server,
    chromium,
    expect,
    launch_chromium,
    logged_in_page,
    page_width,
    person,
    screenshot,
)
from tests.factories import TeamFactory, api_key_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = """\
rules:
  - name: no_exports
    tool: run_data_export
    action: deny
"""


def validate(url: str, key: str, tool_name: str, environment: str) -> dict:
    """The answer of one governed call, with its decision's id at the top (``decision_id``).
    A 503 ("retry shortly": a database call past its deadline on a loaded machine) is retried,
    as the SDK does."""
    deadline = time.monotonic() + 15
    while True:
        response = httpx.post(
            f"{url}/v1/tools/validate",
            json={
                "tool_name": tool_name,
                "arguments": {"bucket": "reports"},
                "context": {
                    "agent_id": "billing-bot",
                    "custom": {"model": "gpt-5", "environment": environment},
                },
            },
            headers={"X-Veto-API-Key": key},
            timeout=10,
        )
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.text
    answer = response.json()
    return {**answer, "decision_id": answer["metadata"]["decision_id"]}


def test_explorer__filters_by_keyboard__a_matching_live_row_arrives_and_no_other(browser_server, chromium):  # noqa: F811
    # Given a team that denies exports, alice (member), an agent's key and three earlier decisions
    team = TeamFactory(slug="payments", name="Payments")
    person("alice", team, Membership.Role.MEMBER)
    publish_rules(team, RULES)
    key = api_key_for(team, scopes=(ApiKey.Scope.RUNTIME,))
    url = browser_server.url
    validate(url, key, "send_email", "production")
    earlier = validate(url, key, "run_data_export", "production")
    validate(url, key, "run_data_export", "staging")
    errors: list[str] = []

    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "alice", viewport=DESKTOP_TALL, errors=errors)
        # she opens the explorer from the nav: every decision, newest first
        page.goto(f"/dashboard/teams/{team.slug}/")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Decisions").click()
        rows = page.locator("#decision-rows > tr")
        expect(rows).to_have_count(3)
        expect(page.locator("#live-status")).to_have_attribute("data-state", "open")

        # When she filters by keyboard: tool, outcome, environment, then Enter
        page.get_by_label("Tool").focus()
        page.keyboard.type("run_data_export")
        page.keyboard.press("Tab")  # the outcome list
        page.keyboard.press("D")  # "Deny"
        for _ in range(3):  # rule, model, environment
            page.keyboard.press("Tab")
        page.keyboard.type("production")
        page.keyboard.press("Enter")

        # Then the URL holds exactly those filters and the list the one earlier match
        expect(rows).to_have_count(1)
        query = parse_qs(urlsplit(page.url).query)
        assert query == {"tool": ["run_data_export"], "decision": ["deny"], "environment": ["production"]}
        expect(page.locator(f"#decision-{earlier['decision_id']}")).to_be_visible()
        expect(page.locator("#explorer-counts [data-count='total']")).to_have_text("1")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "open")
        page.evaluate("window.__notReloaded = true")

        # When the agent makes two decisions that do not match and, last, one that does
        other_tool = validate(url, key, "send_email", "production")
        other_environment = validate(url, key, "run_data_export", "staging")
        match = validate(url, key, "run_data_export", "production")
        assert match["decision"] == "deny"

        # Then the match appears at the top without a reload, and neither of the others at all
        # (the same server sent them before it, in order: had they been let through, they'd be here)
        expect(rows.first).to_have_attribute("id", f"decision-{match['decision_id']}")
        expect(rows).to_have_count(2)
        for other in (other_tool, other_environment):
            expect(page.locator(f"#decision-{other['decision_id']}")).to_have_count(0)
        expect(page.locator("#explorer-counts [data-count='total']")).to_have_text("2")
        assert page.evaluate("window.__notReloaded") is True
        # and the live row, like the others, links to its decision's page
        expect(rows.first.locator("a").first).to_have_attribute(
            "href", f"/dashboard/teams/{team.slug}/decisions/{match['decision_id']}/"
        )
        screenshot(page, "explorer.png")

        # When she downloads the filtered set, as CSV and as JSON, by keyboard
        page.get_by_role("link", name="Export CSV").focus()
        with page.expect_download() as csv_download:
            page.keyboard.press("Enter")
        page.keyboard.press("Tab")  # the next link: Export JSON
        with page.expect_download() as json_download:
            page.keyboard.press("Enter")

        # Then both files hold the two matching chain entries, and only those
        entries = list(csv.DictReader(io.StringIO(open(csv_download.value.path(), encoding="utf-8").read())))
        assert [e["id"] for e in entries] == [earlier["decision_id"], match["decision_id"]]
        assert csv_download.value.suggested_filename.endswith(".csv")
        document = json.loads(open(json_download.value.path(), encoding="utf-8").read())
        assert [e["id"] for e in document["data"]] == [earlier["decision_id"], match["decision_id"]]
        assert {e["record"]["tool"] for e in document["data"]} == {"run_data_export"}

        # When a filter cannot be applied, the page says why beside the form and keeps her input
        page.goto(f"/dashboard/teams/{team.slug}/decisions/?tool=run_data_export&from=yesterday")
        expect(page.get_by_role("alert")).to_contain_text("from: 'yesterday' is not a date and time")
        expect(page.get_by_label("Tool")).to_have_value("run_data_export")

        # At 390 px wide (a phone) the filtered explorer does not scroll sideways
        phone = logged_in_page(browser, browser_server, "alice", viewport=PHONE, errors=errors)
        phone.goto(f"/dashboard/teams/{team.slug}/decisions/?tool=run_data_export")
        expect(phone.locator("#decision-rows > tr")).to_have_count(4)  # both environments
        expect(phone.locator("#live-status")).to_have_attribute("data-state", "open")
        width = page_width(phone)
        main_width = phone.evaluate("document.querySelector('main').scrollWidth")
        screenshot(phone, "explorer-phone.png")

    assert width <= PHONE["width"] and main_width <= PHONE["width"], (width, main_width)
    assert errors == [], f"JavaScript errors in the page: {errors}"
