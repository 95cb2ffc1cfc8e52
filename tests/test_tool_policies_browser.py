"""Tool policies on the policies page in a real browser: this machine's Chromium, driven by
Playwright, against the real ASGI server (production settings, collected static files).

Dana, an admin of a team that requires review (no API key may change its tool policies),
creates a policy with session constraints, rate limits and output rules by typing its JSON,
reads them back as one line each, is told beside the editor that a negative budget is wrong
at ``sessionConstraints.budget`` (nothing changes), then raises the budget, which a person may.
Screenshot: var/screenshots/tool-policy-fields.png.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from policies.models import ToolPolicy
from tenancy.models import Membership

# The machine's Chromium and the live server with static files (fixtures: a missing Chromium
# fails, never skips), people who log in, screenshots.
from tests.browser import (  # noqa: F401
    DESKTOP_TALL,
    browser_server,
    chromium,
    expect,
    launch_chromium,
    logged_in_page,
    person,
    screenshot,
)
from tests.factories import TeamFactory

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

SESSION = {
    "maxCalls": 5,
    "spendArgument": "amount",
    "budget": 100,
    "counters": {
        "open_transfers": {"increment": ["transfer_funds"], "decrement": ["cancel_transfer"], "max": 2}
    },
}
POLICY = {
    "toolName": "transfer_funds",
    "mode": "deterministic",
    "constraints": [{"argumentName": "amount", "enabled": True, "greaterThan": 0, "maximum": 1000}],
    "sessionConstraints": SESSION,
    "rateLimits": [{"scope": "session", "windowSeconds": 60, "maxCalls": 10}],
    "outputRules": [
        {
            "id": "no_iban",
            "name": "Block IBANs",
            "action": "block",
            "output_conditions": [{"field": "output", "operator": "matches", "value": "[A-Z]{2}[0-9]{2}"}],
        },
        {
            "id": "mask_email",
            "name": "Mask e-mails",
            "action": "redact",
            "output_conditions": [{"field": "output", "operator": "matches", "value": "[a-z]+@[a-z]+"}],
        },
    ],
}


def stored() -> tuple[int, dict[str, Any] | None]:
    policy = ToolPolicy.objects.get(tool_name="transfer_funds")
    return policy.version, policy.session_constraints


def test_tool_policy_page__admin_of_a_review_team_creates_sees_fields_is_refused_a_bad_budget_then_raises_it(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
):
    # Given dana, admin of a team that requires review
    team = TeamFactory(slug="payments", name="Payments", require_policy_review=True)
    person("dana", team, Membership.Role.ADMIN)
    errors: list[str] = []

    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "dana", viewport=DESKTOP_TALL, errors=errors)
        page.goto(reverse("policies:page", args=[team.slug]))

        # When she types a policy with session constraints, rate limits and output rules
        page.fill("#tool-policy-create textarea[name=body]", json.dumps(POLICY, indent=2))
        page.get_by_role("button", name="Create tool policy").click()

        # Then it is created, and each field reads as one line beside the constraints
        expect(page.locator(".messages")).to_contain_text("Created the policy of transfer_funds")
        row = page.locator("table.tool-policies tr.is-active", has_text="transfer_funds")
        policy_id = (row.get_attribute("id") or "").removeprefix("tool-policy-")
        summary = row.locator(".policy-summary")
        expect(summary).to_contain_text(
            "Session: budget 100 on amount, max 5 calls, counters open_transfers ≤ 2 "
            "(+transfer_funds, −cancel_transfer); over a limit: denied"
        )
        expect(summary).to_contain_text("Rate limits: 10/60s per session")
        expect(summary).to_contain_text("Output rules: 2 (block, redact)")

        # When she replaces it with a negative budget
        editor = page.locator(f"form[action$='/{policy_id}/replace']")
        page.get_by_text("Replace the policy of transfer_funds").click()
        textarea = editor.locator("textarea[name=body]")
        shown = json.loads(textarea.input_value())
        assert shown["sessionConstraints"] == SESSION and shown["rateLimits"] == POLICY["rateLimits"]
        textarea.fill(json.dumps({**shown, "sessionConstraints": {**SESSION, "budget": -5}}, indent=2))
        editor.get_by_role("button", name="Replace (version 2)").click()

        # Then the problem is beside the editor at its path, her text is kept, and nothing changed
        editor = page.locator(f"form[action$='/{policy_id}/replace']")
        expect(page.locator(".messages")).to_contain_text("Policy of transfer_funds not changed")
        expect(editor.locator(".problem .where")).to_have_text(["sessionConstraints.budget"])
        expect(editor.locator(".problem")).to_contain_text("must be a number above 0")
        assert '"budget": -5' in editor.locator("textarea[name=body]").input_value()
        expect(page.locator(f"#tool-policy-{policy_id}")).to_contain_text("v1")
        expect(page.locator(f"#tool-policy-{policy_id} .policy-summary")).to_contain_text(
            "budget 100 on amount"
        )
        screenshot(page, "tool-policy-fields-refused.png")

        # When she raises the budget instead (a loosening: no API key of this team could)
        editor.locator("textarea[name=body]").fill(
            json.dumps({**shown, "sessionConstraints": {**SESSION, "budget": 500}}, indent=2)
        )
        editor.get_by_role("button", name="Replace (version 2)").click()

        # Then it is saved, and the page says so
        expect(page.locator(".messages")).to_contain_text(
            "Replaced the policy of transfer_funds: now version 2."
        )
        expect(page.locator(f"#tool-policy-{policy_id} .policy-summary")).to_contain_text(
            "Session: budget 500 on amount"
        )
        expect(page.locator(f"#tool-policy-{policy_id}")).to_contain_text("v2")
        screenshot(page, "tool-policy-fields.png")
    assert errors == []
    # (The database is read once the browser is closed: Playwright's loop runs in this thread.)
    assert stored() == (2, {**SESSION, "budget": 500})
