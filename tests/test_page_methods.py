"""Every dashboard page answers only the methods it is for: a page that only shows something
answers GET and HEAD, a form's target only POST; anything else is 405 with an Allow header."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import UserFactory

SHOWS = frozenset({"GET", "HEAD"})
ACTS = frozenset({"POST"})
# The page lists one's keys (GET) and its form makes one (POST).
SHOWS_AND_ACTS = SHOWS | ACTS

PAGE_METHODS: dict[str, frozenset[str]] = {
    "dashboard:home": SHOWS,
    "dashboard:audit": SHOWS,
    "dashboard:audit-verify": ACTS,
    "dashboard:overview": SHOWS,
    "dashboard:decisions": SHOWS,
    "dashboard:decisions-export": SHOWS,
    "dashboard:decision": SHOWS,
    "dashboard:overview-panel": SHOWS,
    "policies:teams": SHOWS,
    "policies:page": SHOWS,
    # Checks a draft without saving it; POST because the source is the body.
    "policies:validate": ACTS,
    "policies:version-create": ACTS,
    "policies:version": SHOWS,
    "policies:version-publish": ACTS,
    "policies:impact": SHOWS,
    "policies:diff": SHOWS,
    "policies:draft-approve": ACTS,
    "policies:draft-reject": ACTS,
    "policies:tool-policy-create": ACTS,
    "policies:tool-policy-replace": ACTS,
    "policies:tool-policy-activate": ACTS,
    "policies:tool-policy-deactivate": ACTS,
    "policies:tool-policy-delete": ACTS,
    "approvals:queue": SHOWS,
    "approvals:history": SHOWS,
    "approvals:detail": SHOWS,
    "approvals:decide": ACTS,
    "approvals:badge": SHOWS,
    "team_settings:page": SHOWS,
    "team_settings:member-add": ACTS,
    "team_settings:member-role": ACTS,
    "team_settings:member-remove": ACTS,
    "team_settings:group-create": ACTS,
    "team_settings:group-rename": ACTS,
    "team_settings:group-delete": ACTS,
    "team_settings:group-member-add": ACTS,
    "team_settings:group-member-remove": ACTS,
    "team_settings:options": ACTS,
    "team_settings:key-revoke": ACTS,
    "tenancy:my-api-keys": SHOWS_AND_ACTS,
    "tenancy:my-api-key-revoke": ACTS,
    "webhooks:page": SHOWS,
    "webhooks:create": ACTS,
    "webhooks:detail": SHOWS,
    "webhooks:deliveries": SHOWS,
    "webhooks:update": ACTS,
    "webhooks:delete": ACTS,
    "webhooks:rotate-secret": ACTS,
    "webhooks:test": ACTS,
    "webhooks:resend": ACTS,
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
VALUES = {"slug": "no-such-team", "number": "1"}  # ids: fresh UUIDs (nothing is found)


def _pages(
    patterns: list[Any] | None = None, prefix: str = "", namespace: str | None = None
) -> Iterator[tuple[str, str]]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from _pages(entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace)
        elif isinstance(entry, URLPattern) and namespace and namespace != "admin":
            yield f"{namespace}:{entry.name}", prefix + str(entry.pattern)


def _path(pattern: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: VALUES.get(m.group(1), str(uuid.uuid4())), pattern)


def test_page_methods__every_dashboard_page__has_its_methods_listed():
    # Given every page of the URL configuration in a namespace (the admin is Django's)
    names = {name for name, _ in _pages()}
    # When compared with the table
    # Then each has a row, and no row names a gone page
    assert names - set(PAGE_METHODS) == set(), "add these pages to PAGE_METHODS"
    assert set(PAGE_METHODS) - names == set(), "these rows name no page any more"


@pytest.mark.django_db
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("name", "pattern"), sorted(_pages()))
def test_page_methods__signed_in_user_sends_method__405_unless_the_page_is_for_it(name, pattern, method):
    # Given a signed-in staff user (sees every team, so only the method decides)
    client = Client()
    client.force_login(UserFactory(is_staff=True))
    # When they send ``method`` to the page
    response = client.generic(method, _path(pattern))
    # Then a method the page is not for is 405, naming the ones it is for; the others reach the view
    allowed = PAGE_METHODS[name]
    if method in allowed:
        assert response.status_code != 405
    else:
        assert response.status_code == 405
        assert set(response["Allow"].split(", ")) == allowed
