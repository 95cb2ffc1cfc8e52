"""The product by keyboard alone, in this machine's Chromium against the real ASGI server: Tab
from the top of a page reaches the skip link first, then the nav, the team switcher and the
page's main action, and every stop shows where the focus is; the skip link jumps past the nav;
the team switcher opens and switches team with the keyboard; Approve works with Enter."""

from __future__ import annotations

import pytest

from approvals.models import Approval
from tenancy.models import Membership

# The machine's Chromium and the live server with static files (fixtures), people who log in.
from tests.browser import DESKTOP, PHONE, browser_server, chromium, launch_chromium, logged_in_page, person  # noqa: F401
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = """\
rules:
  - name: pii_export_review
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
    approvers: [compliance]
"""
# The focused element: what it is, whether the browser draws a ring around it, and where it is.
FOCUSED = """() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const style = getComputedStyle(element);
  const box = element.getBoundingClientRect();
  return {
    tag: element.tagName.toLowerCase(),
    text: (element.innerText || element.value || "").trim().split("\\n")[0].slice(0, 40),
    classes: typeof element.className === "string" ? element.className : "",
    inNav: !!element.closest("nav.main-nav"),
    inSwitcher: !!element.closest(".team-switcher"),
    inMain: !!element.closest("main"),
    ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    visible: box.width > 1 && box.height > 1 && box.bottom > 0 && box.top < window.innerHeight,
  };
}"""


def _team_with_an_approval():
    team = TeamFactory(slug="payments", name="Payments")
    other = TeamFactory(slug="research", name="Research")
    admin = person("alice", team, Membership.Role.ADMIN)
    Membership.objects.create(user=admin, team=other, role=Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance").members.add(admin)
    publish_rules(team, RULES)
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], rule_id="pii_export_review")
    return approval


def _tab_until(page, predicate, *, most: int = 40) -> list[dict]:
    """Press Tab until the focused element satisfies ``predicate``; every stop on the way."""
    stops: list[dict] = []
    for _ in range(most):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            continue
        stops.append(focused)
        if predicate(focused):
            return stops
    raise AssertionError(f"never reached it by Tab; stops: {stops}")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_tab_from_the_top__skip_link_nav_switcher_then_approve__focus_always_visible(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
    viewport,
):
    # Given alice, an approver with a pending approval, on its page
    approval = _team_with_an_approval()
    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "alice", viewport=viewport)
        page.goto(f"/dashboard/approvals/{approval.pk}/")

        # When she presses Tab from the top until Approve has the focus
        stops = _tab_until(page, lambda f: f["tag"] == "button" and f["text"] == "Approve")

        # Then the skip link came first, then the nav and the team switcher, and every stop
        # was on screen with a focus ring
        assert stops[0]["text"] == "Skip to content" and stops[0]["visible"], stops[0]
        assert any(stop["inNav"] for stop in stops), stops
        assert any(stop["inSwitcher"] and stop["tag"] == "summary" for stop in stops), stops
        assert [stop for stop in stops if not (stop["ring"] and stop["visible"])] == []
        assert "primary" in stops[-1]["classes"]

        # When she presses Enter on Approve
        page.keyboard.press("Enter")
        page.locator("#decision-outcome.outcome-approved").wait_for()
    # Then the approval is approved, by her
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED


def test_skip_link__enter__next_tab_lands_in_the_page_not_the_nav(browser_server, chromium):  # noqa: F811
    # Given alice on her approval's page
    approval = _team_with_an_approval()
    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "alice", viewport=PHONE)
        page.goto(f"/dashboard/approvals/{approval.pk}/")
        # When she tabs to the skip link and follows it
        page.keyboard.press("Tab")
        assert page.evaluate(FOCUSED)["text"] == "Skip to content"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        # Then the next stop is inside the page's content, past the whole nav
        focused = page.evaluate(FOCUSED)
        assert focused["inMain"] and not focused["inNav"], focused
        assert focused["ring"], focused


def test_team_switcher__by_keyboard__opens_and_switches_to_the_same_page_of_the_other_team(
    browser_server,  # noqa: F811
    chromium,  # noqa: F811
):
    # Given alice, in two teams, on the first one's policies page
    _team_with_an_approval()
    with launch_chromium(chromium) as browser:
        page = logged_in_page(browser, browser_server, "alice", viewport=PHONE)
        page.goto("/dashboard/teams/payments/policies/")
        # When she tabs to the switcher, opens it with Enter, tabs to the other team and
        # presses Enter
        _tab_until(page, lambda f: f["tag"] == "summary" and f["inSwitcher"])
        page.keyboard.press("Enter")
        _tab_until(page, lambda f: f["inSwitcher"] and f["text"] == "Research", most=5)
        page.keyboard.press("Enter")
        # Then she is on the other team's policies page
        page.wait_for_url("**/dashboard/teams/research/policies/")
        assert page.locator(".team-switcher summary").inner_text().strip() == "Team: Research" or (
            page.locator(".team-switcher .team-name").inner_text().strip() == "Research"
        )
