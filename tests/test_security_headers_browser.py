"""The Content-Security-Policy in a real browser: every page of the product (dashboard, policies,
approvals, audit, the API docs, the admin site) loads in this machine's Chromium, against the real
ASGI server with production settings, and the browser reports no policy violation: no inline
script or style, no eval, nothing from elsewhere."""

from __future__ import annotations

import pytest

from approvals.models import Approval
from tenancy.models import Membership
from tests.browser import (  # noqa: F401 - fixtures: the machine's Chromium, the server
    COLLECT_CSP_VIOLATIONS,
    browser_server,
    chromium,
    csp_violations,
    launch_chromium,
    log_in,
    new_page,
    person,
)
from tests.factories import ApprovalFactory, TeamFactory, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = """\
rules:
  - name: exports_need_approval
    tool: run_data_export
    action: require_approval
"""


def test_every_page__strict_csp__no_violation_reported(browser_server, chromium):  # noqa: F811
    # Given a team with an active rule set and a pending approval, and an admin who is a member
    team = TeamFactory(slug="payments", name="Payments")
    admin = person("root", team, Membership.Role.ADMIN)
    admin.is_staff = admin.is_superuser = True
    admin.save(update_fields=["is_staff", "is_superuser"])
    publish_rules(team, RULES)
    approval = ApprovalFactory(team=team, status=Approval.Status.PENDING)
    pages = [
        "/dashboard/",
        f"/dashboard/teams/{team.slug}/audit/",
        "/dashboard/teams/",
        f"/dashboard/teams/{team.slug}/policies/",
        f"/dashboard/teams/{team.slug}/policies/versions/1/",
        "/dashboard/approvals/",
        "/dashboard/approvals/history/",
        f"/dashboard/approvals/{approval.pk}/",
        "/dashboard/api-keys/",
        "/api/docs/",
        "/admin/",
        "/admin/auth/user/",
        f"/admin/auth/user/{admin.pk}/change/",
    ]
    violations: dict[str, list[str]] = {}
    console_errors: list[str] = []
    policies: dict[str, str] = {}

    with launch_chromium(chromium) as browser:
        page = new_page(browser, browser_server)
        page.add_init_script(COLLECT_CSP_VIOLATIONS)
        # A browser asks for /favicon.ico on its own; any other failed load is an error.
        page.on(
            "console",
            lambda message: (
                console_errors.append(f"{page.url}: {message.text}")
                if message.type == "error" and not message.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda response: (
                console_errors.append(f"{response.status} {response.url}")
                if response.status >= 400 and not response.url.endswith("/favicon.ico")
                else None
            ),
        )
        page.on("pageerror", lambda exc: console_errors.append(f"{page.url}: {exc}"))
        # When the admin logs in and opens every page, letting scripts and styles load and run
        log_in(page, "root")
        for path in ["/accounts/login/", *pages]:
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            policies[path] = response.headers.get("content-security-policy", "")
            page.wait_for_load_state("networkidle")
            if path == "/api/docs/":
                # Swagger UI renders the operations from the schema it fetched
                page.locator(".opblock").first.wait_for()
            violations[path] = csp_violations(page)
        page.click("text=Log out")

    # Then every page was served under the strict policy, and the browser reported no violation
    for path, policy in policies.items():
        assert "script-src 'self'" in policy, (path, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (path, policy)
    assert {path: found for path, found in violations.items() if found} == {}
    assert console_errors == []
