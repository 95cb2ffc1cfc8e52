"""The policies page in a real browser: this machine's Chromium, driven by Playwright, against
the real ASGI server (production settings, collected static files, the test database).

A member writes a broken rule and sees the error at its line as she types, fixes it, saves a
draft and sees its diff; a second person, a team admin, publishes it and sees it active.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from conftest import (
    BASE_DIR,
    LiveServer,
    _wait_for_other_sessions_to_close,
    start_asgi_server,
    stop_processes,
    subprocess_environment,
)
from policies.models import RuleSetPublication, RuleSetVersion
from policies.services import rule_set_version_create, rule_set_version_publish
from tenancy.models import Membership
from tests.factories import BY_TESTS, TeamFactory, UserFactory

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # reported by the `chromium` fixture, as a failure
    sync_playwright = None

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("VETO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
PASSWORD = "browser-test-password"
V1 = """\
rules:
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: deny
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """The machine's Chromium. Missing is a failure, never a skip: CI must run this test."""
    if sync_playwright is None:
        pytest.fail(
            "playwright is not installed: `.venv/bin/pip install -e '.[dev]'` (never `playwright install`)"
        )
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: the browser tests drive the machine's Chromium, not a "
            "downloaded one. Install it with `apt-get install -y chromium chromium-driver` (.ci/run does "
            "this when it is missing), or point VETO_CHROMIUM at a Chromium binary."
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser_server(
    chromium: str, django_db_setup: None, django_db_blocker: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The ASGI server as production runs it, static files included: DEBUG off serves only what
    collectstatic gathered, so gather it into a var directory of its own first."""
    var_dir = tmp_path_factory.mktemp("browser-var")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=subprocess_environment(VETO_VAR_DIR=str(var_dir)),
        check=True,
    )
    process, server = start_asgi_server(var_dir / "server.log", VETO_VAR_DIR=str(var_dir))
    yield server
    stop_processes(process)
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        _wait_for_other_sessions_to_close()


def person(username: str, team, role: str):
    user = UserFactory(username=username)
    # The server runs the production hashers (the test settings' MD5 is not among them); few
    # iterations keep logging in fast, and the server upgrades the hash as it would any old one.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])
    Membership.objects.create(user=user, team=team, role=role)
    return user


def log_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".topbar .logout span")).to_have_text(username)


def test_policies_page__member_writes_and_fixes_a_rule__another_admin_publishes_it(browser_server, chromium):
    # Given a team with version 1 active, alice (member) and dana (team admin)
    team = TeamFactory(slug="payments", name="Payments")
    person("alice", team, Membership.Role.MEMBER)
    dana = person("dana", team, Membership.Role.ADMIN)
    rule_set_version_publish(version=rule_set_version_create(team=team, source_text=V1), actor=BY_TESTS)
    policies = f"/dashboard/teams/{team.slug}/policies/"
    action_line = V1.count("\n") + 3  # the typed rule's third line
    errors: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=browser_server.url)
            page.set_default_timeout(10_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            log_in(page, "alice")
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
        finally:
            browser.close()

    assert errors == [], f"JavaScript errors in the page: {errors}"
    active = RuleSetVersion.objects.get(team=team, is_active=True)
    assert (active.number, active.author_name) == (2, "alice")
    assert RuleSetPublication.objects.filter(team=team).first().actor_user == dana
