"""Every page of the product on a phone (390x844) and on a desktop (1280x800), in this machine's
Chromium against the real ASGI server (production settings, collected static files, its CSP).

The pages are not listed by hand: they come from the URL configuration (every pattern in a
namespace that answers GET, plus the log-in page and the API docs), so a page added later is
visited too. A pattern whose path names an object gets one made here (PATH_VALUES); a new kind
of path value fails the enumeration test until it has one. A GET that answers a fragment (no
<html>: htmx panels, the badge) or a file (exports) is not a page and is left out.

On each page: no sideways scroll (the document is no wider than the window), no console error,
no Content-Security-Policy violation, no response of 400 or more (the favicon included), every
cell of a data table labelled for the stacked phone layout, and every visible button at least
44 px high on the phone. Screenshots go to var/screenshots/<page>.png and <page>-phone.png.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError

from approvals.models import Approval
from policies.services import rule_set_version_create
from tenancy.models import ApiKey, Membership, Team

# The machine's Chromium and the live server with static files (fixtures), people who log in,
# the viewports, the CSP violation collector, screenshots.
from tests.browser import (  # noqa: F401
    COLLECT_CSP_VIOLATIONS,
    DESKTOP,
    PHONE,
    browser_server,
    chromium,
    csp_violations,
    launch_chromium,
    log_in,
    logged_in_page,
    new_page,
    person,
    screenshot,
)
from tests.factories import (
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    ToolPolicyFactory,
    personal_api_key_for,
    policy_draft_for,
    publish_rules,
    record_decision,
)
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

# Long unbroken values, as real traffic has them: they must wrap, not widen the page.
LONG_URL = "https://exports.example.com/buckets/internal-reports/" + "a1b2c3d4" * 24 + "?token=" + "f" * 64
LONG_TOOL = "run_data_export_to_the_partner_warehouse_with_a_rather_long_tool_name"
RULES_V1 = """\
rules:
  - name: pii_export_review
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
    approvers: [compliance]
    message: PII exports need a compliance review
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: deny
"""
RULES_V2 = (
    RULES_V1
    + """\
  - name: no_wire_transfers_over_limit
    tool: wire_transfer
    when: args.amount > 10000
    action: deny
"""
)
INLINE_RULES = [{"id": "cap", "name": "cap", "action": "block", "tools": ["transfer"]}]
# Pages outside a namespace that a person opens (the others are the API, probes and redirects).
LOOSE_PAGES = {"api/docs/": "api-docs"}
# Query strings a page needs to be a page (the diff compares two versions).
QUERIES = {"policies:diff": "?from=1&to=2"}
# The elements that stick out past the window's right edge, innermost first: what to fix.
OVERFLOWING = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const element of document.querySelectorAll("body *")) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.right <= width + 1) continue;
    if ([...element.children].some((child) => child.getBoundingClientRect().right > width + 1)) continue;
    const name = element.tagName.toLowerCase() + (element.id ? "#" + element.id : "")
      + (element.className && typeof element.className === "string"
         ? "." + element.className.trim().split(/\\s+/).join(".") : "");
    out.push(`${name} right=${Math.round(box.right)}`);
    if (out.length >= 8) break;
  }
  return out;
}"""
# What scrolls sideways inside the page (a table too wide for its card): as bad as the page
# scrolling on a phone. A source listing and the editor may scroll: wrapping code lines would
# break their line numbers.
INNER_SCROLL = """() => [...document.querySelectorAll("main *")]
  .filter((element) => element.offsetParent !== null && element.clientWidth > 1
    && !element.closest("pre.source, .editor, textarea, .visually-hidden"))
  .filter((element) => ["auto", "scroll"].includes(getComputedStyle(element).overflowX)
    && element.scrollWidth > element.clientWidth + 1)
  .slice(0, 5).map((element) => `${element.tagName.toLowerCase()}${element.id ? "#" + element.id : ""}`
    + `${element.className && typeof element.className === "string" ? "." + element.className.trim().split(/\\s+/).join(".") : ""}`
    + ` ${element.scrollWidth} > ${element.clientWidth}`)"""
UNLABELLED_CELLS = """() => [...document.querySelectorAll("table.data td:not([data-label])")]
  .filter((cell) => cell.textContent.trim() !== "" && !cell.hasAttribute("colspan"))
  .slice(0, 5).map((cell) => cell.closest("table").id + ": " + cell.textContent.trim().slice(0, 40))"""
SMALL_BUTTONS = """() => [...document.querySelectorAll(
    "main button, main .button, main input[type=submit], header button, header .button")]
  .filter((element) => element.offsetParent !== null)
  .map((element) => [element, element.getBoundingClientRect()])
  .filter(([, box]) => box.height < 44)
  .slice(0, 5).map(([element, box]) => `${element.textContent.trim().slice(0, 30)} ${Math.round(box.height)}px`)"""


@dataclass(frozen=True)
class Page:
    """One page to visit: its screenshot name and its path."""

    name: str
    path: str


def path_values() -> dict[str, str]:
    """One of everything a page is about, in a team where the signed-in admin sees it all; the
    values fill the URL patterns' path arguments by name."""
    team = TeamFactory(slug="payments", name="Payments and very long team names")
    TeamFactory(slug="other-team", name="Another team")  # exists, not theirs: never in their nav
    admin = person("root", team, Membership.Role.ADMIN)
    admin.is_staff = admin.is_superuser = True
    admin.save(update_fields=["is_staff", "is_superuser"])
    second = TeamFactory(slug="research", name="Research")
    Membership.objects.create(user=admin, team=second, role=Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance", name="Compliance").members.add(admin)
    publish_rules(team, RULES_V1)
    draft = rule_set_version_create(team=team, source_text=RULES_V2)
    policy = ToolPolicyFactory(team=team, tool_name=LONG_TOOL)
    proposal = policy_draft_for(team, INLINE_RULES, name="proposed rules")
    arguments = {"bucket": LONG_URL, "include_pii": True, "recipient": "dana@example.com"}
    approval = ApprovalFactory(
        team=team,
        tool_name="run_data_export",
        arguments=arguments,
        rule_id="pii_export_review",
        approver_groups=["compliance"],
        status=Approval.Status.PENDING,
    )
    decision = None
    for n in range(3):
        decision = record_decision(
            team,
            tool_name=LONG_TOOL if n == 0 else "run_data_export",
            arguments=arguments,
            decision="deny" if n == 1 else "require_approval",
            rule_id="bucket_allowlist",
            rule_name="bucket_allowlist",
            reason="The bucket " + LONG_URL + " is not internal",
            approval_id=approval.id if n == 2 else None,
        )
    assert decision is not None
    personal_api_key_for(admin, team, name="root's key with a long name for the phone", role="admin")
    webhook = _webhook_with_a_failed_delivery(team)
    return {
        "slug": team.slug,
        "number": str(draft.number),
        "draft_id": str(proposal.id),
        "policy_id": str(policy.id),
        "approval_id": str(approval.id),
        "decision_id": str(decision.id),
        "key_id": str(ApiKey.objects.filter(user=admin).values_list("id", flat=True)[0]),
        "panel": "activity",  # the overview's panels are fragments: left out as pages
        "webhook_id": str(webhook.id),
    }


def _webhook_with_a_failed_delivery(team: Any) -> WebhookEndpoint:
    """A webhook endpoint with a long URL whose delivery failed once with a long answer: the
    delivery log's widest content."""
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        name="SIEM collector with a long name for the phone",
        url=LONG_URL,
        events=["deny", "require_approval", "approval.resolved"],
        failing_since=timezone.now(),
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        team=team,
        event="deny",
        source_key="decisions:1:deny",
        next_attempt_at=timezone.now() + timedelta(minutes=5),
        attempt_count=1,
    )
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=1,
        status_code=503,
        latency_ms=12.5,
        response_snippet="upstream unavailable: " + "x" * 300,
        next_attempt_at=delivery.next_attempt_at,
    )
    return endpoint


def get_patterns() -> dict[str, str]:
    """Every pattern in a namespace (outside the admin) whose view answers GET, by its name
    "namespace:name", plus the loose pages a person opens."""
    found: dict[str, str] = {}

    def walk(patterns: list[Any], prefix: str, namespace: str | None) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace)
            elif isinstance(entry, URLPattern):
                pattern = prefix + str(entry.pattern)
                if pattern in LOOSE_PAGES:
                    found[LOOSE_PAGES[pattern]] = pattern
                elif namespace and namespace != "admin" and "GET" in _methods(entry.callback):
                    found[f"{namespace}:{entry.name}"] = pattern

    walk(get_resolver().url_patterns, "", None)
    return found


def _methods(callback: Any) -> tuple[str, ...]:
    """The methods the view's require_http_methods lets in (GET and POST when it has none)."""
    function: Any = callback
    while function is not None:
        names = function.__code__.co_freevars
        if "request_method_list" in names:
            return tuple(function.__closure__[names.index("request_method_list")].cell_contents)
        function = getattr(function, "__wrapped__", None)
    return ("GET", "POST")


def _filled(pattern: str, values: dict[str, str]) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: values[match.group(1)], pattern)


def _arguments_of(pattern: str) -> set[str]:
    return set(re.findall(r"<(?:\w+:)?(\w+)>", pattern))


KNOWN_ARGUMENTS = {
    "slug", "number", "draft_id", "policy_id", "approval_id", "decision_id", "key_id", "panel", "webhook_id"
}


def test_page_enumeration__every_get_pattern__has_values_for_its_path():
    # Given every pattern that answers GET
    patterns = get_patterns()
    # When their path arguments are compared with the values this test makes
    unknown = {name: _arguments_of(p) - KNOWN_ARGUMENTS for name, p in patterns.items()}
    # Then each one can be filled (add a value to path_values() for a new kind), and the pages
    # the issue names are among them
    assert {name: args for name, args in unknown.items() if args} == {}
    assert {
        "dashboard:home",
        "dashboard:overview",
        "dashboard:audit",
        "policies:page",
        "approvals:queue",
    } <= set(patterns)


def _visit(page: Any, url: str, problems: list[str]) -> str | None:
    """Open ``url``; returns the document's HTML, or None when it is no page (a fragment, a file)."""
    try:
        response = page.goto(url)
    except PlaywrightError as exc:
        # An attachment (the explorer's exports) starts a download instead of a page.
        if "Download is starting" in str(exc):
            return None
        raise
    assert response is not None, url
    if response.status >= 400:
        problems.append(f"{response.status} {url}")
        return None
    if "text/html" not in (response.headers.get("content-type") or ""):
        return None
    if "<html" not in response.text()[:400].lower():
        return None
    page.wait_for_load_state("networkidle")
    if url.endswith("/api/docs/"):
        page.locator(".opblock").first.wait_for()
    return response.text()


def _open_browser_session(browser: Any, server: Any, viewport: dict[str, int], problems: list[str]) -> Any:
    page = new_page(browser, server, viewport=viewport, timeout_ms=15_000, has_touch=viewport == PHONE)
    page.add_init_script(COLLECT_CSP_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type} at {page.url}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"page error at {page.url}: {exc}"))
    page.on(
        "response",
        lambda response: (
            problems.append(f"{response.status} {response.url} (on {page.url})")
            if response.status >= 400
            else None
        ),
    )
    return page


def test_every_page__phone_and_desktop__no_sideways_scroll_no_errors(browser_server, chromium):  # noqa: F811
    # Given one of everything, and a team admin (staff too, so the nav is at its longest)
    values = path_values()
    pages = [Page("login", "/accounts/login/")] + [
        Page(name.replace(":", "-"), _filled(pattern, values) + QUERIES.get(name, ""))
        for name, pattern in sorted(get_patterns().items())
    ]
    problems: list[str] = []
    findings: dict[str, dict[str, list[str]]] = {}
    visited: list[str] = []

    with launch_chromium(chromium) as browser:
        for viewport, suffix in ((PHONE, "-phone"), (DESKTOP, "")):
            page = _open_browser_session(browser, browser_server, viewport, problems)
            # When they open every page, logged out for the log-in page, then logged in
            for target in pages:
                if target.name == "login":
                    _visit(page, target.path, problems)
                    _check(page, target, suffix, findings, viewport)
                    log_in(page, "root")
                    continue
                if _visit(page, target.path, problems) is None:
                    continue
                visited.append(target.name)
                _check(page, target, suffix, findings, viewport)
            page.context.close()

    # Then every page fits the window, with no error, violation or failed load on the way
    assert "dashboard-home" in visited and "approvals-detail" in visited
    assert findings == {}, json.dumps(findings, indent=1)
    assert problems == [], "\n".join(problems)


def _check(
    page: Any, target: Page, suffix: str, findings: dict[str, dict[str, list[str]]], viewport: dict
) -> None:
    """What one page shows wrong at ``viewport``, by kind; and its screenshot."""
    found: dict[str, list[str]] = {}
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if width[0] > width[1]:
        found["overflow"] = [f"scrollWidth {width[0]} > {width[1]}", *page.evaluate(OVERFLOWING)]
    if violations := csp_violations(page):
        found["csp"] = violations
    if target.name not in ("api-docs",):
        if scrolling := page.evaluate(INNER_SCROLL):
            found["scrolls sideways inside"] = scrolling
        if unlabelled := page.evaluate(UNLABELLED_CELLS):
            found["unlabelled cells"] = unlabelled
        if viewport == PHONE and (small := page.evaluate(SMALL_BUTTONS)):
            found["buttons under 44 px"] = small
    if found:
        findings[f"{target.name}{suffix}"] = found
    screenshot(page, f"{target.name}{suffix}.png")


def test_nav__team_switcher__lists_only_the_viewers_teams(browser_server, chromium):  # noqa: F811
    # Given a person (no staff: staff see every team) in two teams, and a third team they are not in
    path_values()
    nina = person("nina", Team.objects.get(slug="payments"), Membership.Role.ADMIN)
    Membership.objects.create(user=nina, team=Team.objects.get(slug="research"), role=Membership.Role.MEMBER)
    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "nina", viewport=PHONE)
        # When they open a team page and its switcher
        page.goto("/dashboard/teams/payments/policies/")
        switcher = page.locator(".team-switcher")
        switcher.locator("summary").click()
        links = switcher.locator("a")
        names = links.all_inner_texts()
        # Then it names their two teams only, the current one marked, and the other team's
        # link leads to the same page of that team
        assert [name.strip() for name in names] == ["Payments and very long team names", "Research"]
        assert switcher.locator("a[aria-current=true]").inner_text().strip().startswith("Payments")
        links.nth(1).click()
        page.wait_for_url("**/dashboard/teams/research/policies/")
        # And the nav's current page is marked for screen readers
        assert page.locator("nav.main-nav [aria-current=page]").inner_text().strip() == "Policies"
