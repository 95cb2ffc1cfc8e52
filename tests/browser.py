"""What every browser test shares: this machine's Chromium driven by Playwright, against the real
ASGI server (production settings, collected static files, the test database).

A browser test module imports the two fixtures into its namespace (pytest finds them there) and
uses the helpers::

    from tests.browser import (  # noqa: F401 - browser_server and chromium are fixtures
        PHONE, browser_server, chromium, expect, launch_chromium, logged_in_page, person, screenshot,
    )

    pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

    def test_something(browser_server, chromium):  # noqa: F811
        person("alice", team, Membership.Role.MEMBER)
        errors: list[str] = []
        with launch_chromium(chromium) as browser:
            page = logged_in_page(browser, browser_server, "alice", viewport=PHONE, errors=errors)
            ...
            screenshot(page, "something-phone.png")
        assert errors == []

- ``chromium`` (fixture): the path of the machine's Chromium (``VETO_CHROMIUM``, else
  /usr/bin/chromium). Missing Chromium or Playwright fails the test, never skips it.
- ``browser_server`` (fixture): :func:`conftest.start_asgi_server` on a var directory of its own
  into which collectstatic gathered the static files (DEBUG off serves only those).
- :func:`person` makes a user in a team whom :func:`log_in` logs in through the log-in page.
- :func:`launch_chromium`, :func:`new_page`, :func:`logged_in_page`: a browser, then pages on
  the server with the default timeout set and the page's JavaScript errors collected;
  :func:`new_context` and :func:`watch_page` for several tabs of one person.
- :data:`COLLECT_CSP_VIOLATIONS` (an init script) and :func:`csp_violations`: what the page's
  Content-Security-Policy blocked.
- :func:`screenshot` writes to ``settings.VAR_DIR / "screenshots"``; :func:`page_width` is what a
  sideways-scroll check compares with the viewport's width; :data:`PHONE`, :data:`DESKTOP`,
  :data:`DESKTOP_TALL` are the viewports the tests use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from conftest import (
    BASE_DIR,
    LiveServer,
    _wait_for_other_sessions_to_close,
    start_asgi_server,
    stop_processes,
    subprocess_environment,
)
from tenancy.models import Membership
from tests.factories import UserFactory

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the `chromium` fixture, as a failure
    expect = sync_playwright = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

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
# Every user made by person() has this password; log_in() types it.
PASSWORD = "browser-test-password"
# How long a page's actions and expectations wait, unless a test says otherwise.
DEFAULT_TIMEOUT_MS = 10_000
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
DESKTOP_TALL: ViewportSize = {"width": 1280, "height": 900}  # a whole row of panels in one screenshot
SCREENSHOTS_DIR_NAME = "screenshots"
# An init script: every Content-Security-Policy violation goes to the page's own list
# (window.__cspViolations, read with csp_violations()), before any of the page's code runs.
COLLECT_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || "?"}:${event.lineNumber}`);
});
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


def person(username: str, team: Any, role: str) -> Any:
    """A user with ``role`` in ``team`` who can log in with PASSWORD on the live server."""
    user = UserFactory(username=username)
    # The server runs the production hashers (the test settings' MD5 is not among them); few
    # iterations keep logging in fast, and the server upgrades the hash as it would any old one.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])
    Membership.objects.create(user=user, team=team, role=role)
    return user


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Log in through the log-in page, as a person does; returns once the top bar names them."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator(".topbar .logout span")).to_have_text(username)


@contextmanager
def launch_chromium(executable: str) -> Iterator[Browser]:
    """The machine's Chromium (the ``chromium`` fixture's path), closed when the block ends."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def watch_page(page: Page, errors: list[str] | None = None, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Page:
    """``page`` with its default timeout set and, given ``errors``, its uncaught JavaScript
    errors appended to that list (for a test's ``assert errors == []``)."""
    page.set_default_timeout(timeout_ms)
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def new_context(
    browser: Browser, server: LiveServer, *, viewport: ViewportSize | None = None, **options: Any
) -> BrowserContext:
    """A browser context of its own (its own cookies: one person) whose relative URLs go to
    ``server``; ``viewport`` None keeps Playwright's default, ``options`` go to new_context."""
    if viewport is not None:
        options["viewport"] = viewport
    return browser.new_context(base_url=server.url, **options)


def new_page(
    browser: Browser,
    server: LiveServer,
    *,
    viewport: ViewportSize | None = None,
    errors: list[str] | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    **options: Any,
) -> Page:
    """A page in a context of its own on ``server`` (see new_context), watched (see watch_page)."""
    context = new_context(browser, server, viewport=viewport, **options)
    return watch_page(context.new_page(), errors, timeout_ms=timeout_ms)


def logged_in_page(
    browser: Browser,
    server: LiveServer,
    username: str,
    password: str = PASSWORD,
    *,
    viewport: ViewportSize | None = None,
    errors: list[str] | None = None,
) -> Page:
    """new_page(), then log_in() as ``username``: the page is on the dashboard, logged in."""
    page = new_page(browser, server, viewport=viewport, errors=errors)
    log_in(page, username, password)
    return page


def screenshot(page: Page, name: str) -> Path:
    """The whole page as ``settings.VAR_DIR/screenshots/<name>`` (name with its .png)."""
    directory = settings.VAR_DIR / SCREENSHOTS_DIR_NAME
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    page.screenshot(path=str(path), full_page=True)
    return path


def page_width(page: Page) -> int:
    """The document's width in CSS pixels: wider than the viewport means it scrolls sideways."""
    return int(page.evaluate("document.documentElement.scrollWidth"))


def csp_violations(page: Page) -> list[str]:
    """What COLLECT_CSP_VIOLATIONS (added with page.add_init_script) has seen on this page."""
    return page.evaluate("window.__cspViolations")
