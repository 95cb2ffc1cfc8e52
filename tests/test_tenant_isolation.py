"""Tenant isolation over every route: another team's key or user gets 404, sees none of its
objects in a list, and changes nothing of it.

The routes are read from the URL configuration (Django's resolver, recursively) and the
gateway's route list, not written down here: a new endpoint is tested the day it exists, and
an endpoint whose path parameter this module cannot fill fails the test until it can.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from approvals.models import Approval
from audit.models import DecisionRecord
from dashboards.views.overview import PANELS as OVERVIEW_PANELS
from policies.models import PolicyDraft, RuleSetVersion, ToolPolicy
from runtime.routes import runtime_routes
from tenancy.models import ApiKey, ApproverGroup, Membership, Organization, Team
from tenancy.services import ALL_SCOPES
from tests.factories import (
    BY_TESTS,
    ApprovalFactory,
    ApproverGroupFactory,
    OrganizationFactory,
    TeamFactory,
    ToolPolicyFactory,
    UserFactory,
    api_key_for,
    personal_api_key_for,
    policy_draft_for,
    publish_rules,
    record_decision,
)
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSecret
from webhooks.services import webhook_endpoint_create, webhook_test_send

pytestmark = pytest.mark.django_db(transaction=True)

BRAVO_TOOL = "bravo_secret_tool"
BRAVO_WEBHOOK_URL = "https://93.184.215.14/bravo-secret-hook"
BRAVO_RULES = (
    "rules:\n  - {name: bravo_secret_rule, tool: bravo_secret_tool, when: 'args.amount > 5', action: deny}\n"
)

# Routes anyone may call, or that are no team's: they are checked elsewhere (the admin below).
# "metrics" is the operators' scrape behind its own bearer token (tests/test_metrics.py): totals of
# the installation, no team's objects, and not opened with a person's session.
PUBLIC_ROUTES = {
    "",
    "readyz",
    "healthz",
    "api/schema/",
    "api/docs/",
    "accounts/login/",
    "accounts/logout/",
    "favicon.ico",
    "metrics",
}
# Routes that take no API key but a signature of their own (Slack's, with the endpoint's signing
# secret): a caller holding only alpha's keys is refused (401 unsigned, 404 for an id that is no
# Slack endpoint, 405 for a method the route does not take) and changes nothing.
SIGNED_ROUTES = {"v1/slack/interactivity/<uuid:endpoint_id>"}
ADMIN_PREFIX = "admin/"


@dataclass(frozen=True)
class Route:
    """One route of the URL configuration: its pattern as written, and how to fill it."""

    pattern: str
    methods: tuple[str, ...]
    parameters: tuple[str, ...]
    api: bool

    def path(self, values: dict[str, str]) -> str:
        path = self.pattern
        for name in self.parameters:
            path = re.sub(rf"<(?:\w+:)?{name}>|\(\?P<{name}>[^)]*\)", values[name], path)
        return "/" + path.removeprefix("^").removesuffix("$").replace("^", "")


def _view_methods(callback: Callable[..., Any]) -> tuple[str, ...]:
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        # A function view: its require_GET / require_POST says the rest (405, checked as allowed).
        return ("GET", "POST")
    return tuple(m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m))


def _django_routes(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[Route]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        text = str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _django_routes(entry.url_patterns, prefix + text)
        elif isinstance(entry, URLPattern):
            full = prefix + text
            names = tuple(a or b for a, b in re.findall(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", full))
            yield Route(full, _view_methods(entry.callback), names, api=full.startswith("v1/"))


def _gateway_routes() -> Iterator[Route]:
    for route in runtime_routes:
        pattern = route.pattern.removeprefix("/")
        names = tuple(re.findall(r"\(\?P<(\w+)>", pattern))
        yield Route(pattern, (route.method,), names, api=True)


def all_routes() -> list[Route]:
    return [*_django_routes(), *_gateway_routes()]


@dataclass
class World:
    """Team alpha (the caller) and team bravo (everything the caller must not reach)."""

    alpha: Team
    alpha_key: str
    alpha_personal_key: str
    alice: Any
    bravo: Team
    bravo_objects: dict[str, list[str]]
    markers: list[str]
    same_organization: bool

    def fillings(self, route: Route) -> list[dict[str, str]]:
        """The ways to fill ``route``'s parameters with bravo's objects (KeyError: unknown parameter).

        With a team slug and an object, the object is also tried under alpha's own slug: a page
        must find the object in the team it names, not merely refuse another team's slug."""
        choices: list[list[tuple[str, str]]] = []
        # Path parts that name no object (the overview's panel) are filled with what they may be.
        objects = [p for p in route.parameters if p not in NAMING_NO_OBJECT]
        for name in route.parameters:
            if name in NAMING_NO_OBJECT:
                values = NAMING_NO_OBJECT[name]
            elif name == "slug":
                values = [self.bravo.slug, self.alpha.slug] if len(objects) > 1 else [self.bravo.slug]
            else:
                values = self.bravo_objects[PARAMETERS[name]]
            choices.append([(name, value) for value in values])
        fillings: list[dict[str, str]] = [{}]
        for options in choices:
            fillings = [{**filled, name: value} for filled in fillings for name, value in options]
        return fillings


# Path parameter -> the kind of bravo's object that fills it.
PARAMETERS = {
    "approval_id": "approval",
    "decision_id": "decision",
    "draft_id": "draft",
    "tool_name": "tool_name",
    "policy_id": "tool_policy",
    "version": "version",
    "number": "version",
    "before": "version",
    "after": "version",
    "key_id": "api_key",
    "webhook_id": "webhook",
    "delivery_id": "webhook_delivery",
    "endpoint_id": "webhook",
}
# Parameters that pick a part of a page, not an object: every value is tried, under bravo's slug.
NAMING_NO_OBJECT: dict[str, list[str]] = {"panel": sorted(OVERVIEW_PANELS)}


@pytest.fixture(params=["other organization", "same organization"])
def world(request: pytest.FixtureRequest) -> World:
    # Given team alpha (alice is its admin and an approver) and team bravo, in another
    # organization or in alpha's own, holding one of every kind of object
    same_organization = request.param == "same organization"
    alpha = TeamFactory(
        slug="alpha-team", name="Alpha Team", organization=OrganizationFactory(slug="alpha-org")
    )
    alice = UserFactory(username="alice")
    Membership.objects.create(user=alice, team=alpha, role=Membership.Role.ADMIN)
    ApproverGroupFactory(team=alpha, slug="alpha-approvers").members.add(alice)
    bravo_org = alpha.organization if same_organization else OrganizationFactory(slug="bravo-org")
    bravo = TeamFactory(slug="bravo-team", name="Bravo Team", organization=bravo_org)
    bob = UserFactory(username="bravo-bob")
    Membership.objects.create(user=bob, team=bravo, role=Membership.Role.ADMIN)
    group = ApproverGroupFactory(team=bravo, slug="bravo-approvers", name="Bravo Approvers")
    group.members.add(bob)
    publish_rules(bravo, BRAVO_RULES)
    publish_rules(bravo, BRAVO_RULES.replace("> 5", "> 6"))
    policy = ToolPolicyFactory(team=bravo, tool_name=BRAVO_TOOL)
    draft = policy_draft_for(
        bravo,
        [{"id": "bravo_draft_rule", "name": "bravo draft rule", "action": "block", "tools": [BRAVO_TOOL]}],
        name="bravo draft",
    )
    approval = ApprovalFactory(team=bravo, tool_name=BRAVO_TOOL, rule_id="bravo_secret_rule")
    decision = record_decision(bravo, tool_name=BRAVO_TOOL, rule_id="bravo_secret_rule")
    api_key_for(bravo, name="bravo team key")
    personal_api_key_for(bob, bravo, name="bravo personal key")
    keys = list(ApiKey.objects.filter(team=bravo))
    webhook = webhook_endpoint_create(
        team=bravo, actor=BY_TESTS, values={"name": "bravo siem", "url": BRAVO_WEBHOOK_URL, "events": ["deny"]}
    ).endpoint
    webhook_delivery = webhook_test_send(endpoint=webhook, actor=BY_TESTS)
    objects = {
        "approval": [str(approval.id)],
        "decision": [str(decision.id)],
        "draft": [str(draft.id)],
        "tool_name": [BRAVO_TOOL],
        "tool_policy": [str(policy.id)],
        "version": [str(v.number) for v in RuleSetVersion.objects.filter(team=bravo)],
        "api_key": [str(k.id) for k in keys],
        "webhook": [str(webhook.id)],
        "webhook_delivery": [str(webhook_delivery.id)],
    }
    markers = [
        bravo.slug,
        str(bravo.id),
        # An organization's key administers it (VetoAdmin): alpha may see its own organization.
        *(() if same_organization else (str(bravo_org.id), bravo_org.slug)),
        bob.username,
        group.slug,
        BRAVO_TOOL,
        "bravo_secret_rule",
        *(str(k.id) for k in keys),
        *(k.prefix for k in keys),
        *(
            ids[0]
            for kind, ids in objects.items()
            if kind in ("approval", "decision", "draft", "tool_policy", "webhook", "webhook_delivery")
        ),
        BRAVO_WEBHOOK_URL,
        webhook.secrets.get().secret,
    ]
    return World(
        alpha=alpha,
        alpha_key=api_key_for(alpha, scopes=ALL_SCOPES, name="alpha team key"),
        alpha_personal_key=personal_api_key_for(alice, alpha, scopes=ALL_SCOPES, role="admin"),
        alice=alice,
        bravo=bravo,
        bravo_objects=objects,
        markers=markers,
        same_organization=same_organization,
    )


def bravo_state(world: World) -> list[Any]:
    """Everything of bravo a call could change, to compare before and after (its organization
    too, unless it is alpha's own: an admin key may add projects to its organization)."""
    team = world.bravo
    organization: list[Any] = []
    if not world.same_organization:
        organization = [
            list(Organization.objects.filter(pk=team.organization_id).values()),
            list(Team.objects.filter(organization_id=team.organization_id).values_list("id", flat=True)),
        ]
    return [
        *organization,
        list(Team.objects.filter(pk=team.pk).values()),
        list(ApiKey.objects.filter(team=team).order_by("id").values("id", "revoked_at", "scopes", "name")),
        list(ApproverGroup.objects.filter(team=team).values("id", "slug")),
        list(Membership.objects.filter(team=team).values("user_id", "role")),
        list(RuleSetVersion.objects.filter(team=team).order_by("number").values("id", "status")),
        list(ToolPolicy.objects.filter(team=team).order_by("id").values()),
        list(PolicyDraft.objects.filter(team=team).order_by("id").values("id", "status")),
        list(Approval.objects.filter(team=team).order_by("id").values("id", "status")),
        DecisionRecord.objects.filter(team=team).count(),
        list(WebhookEndpoint.objects.filter(team=team).order_by("id").values()),
        list(WebhookSecret.objects.filter(endpoint__team=team).order_by("id").values()),
        list(WebhookDelivery.objects.filter(team=team).order_by("id").values("id", "status", "next_attempt_at")),
    ]


def _leaks(body: str, markers: list[str], *, sent: str = "") -> list[str]:
    """Bravo's identifiers in ``body``, but for those the caller sent itself (a 404 may name them)."""
    return [marker for marker in markers if marker in body and marker not in sent]


def _probe_body(world: World) -> dict[str, Any]:
    """A body for every write: it names bravo where a body can (projectId, organizationId)."""
    return {
        "projectId": str(world.bravo.id),
        "organizationId": str(world.bravo.organization_id),
        "name": "isolation probe",
        "action": "approve",
        "decision": "approve",
        "approvals": [{"id": world.bravo_objects["approval"][0], "action": "approve"}],
        "tool_name": BRAVO_TOOL,
        "toolName": BRAVO_TOOL,
        "arguments": {"amount": 10},
        "context": {"tool_name": BRAVO_TOOL, "arguments": {"amount": 10}},
    }


def test_routes__every_path_parameter__has_a_filler_or_is_public():
    # Given every route of the URL configuration and the gateway
    routes = all_routes()
    # When their path parameters are looked up
    unknown = sorted(
        f"{route.pattern} ({name})"
        for route in routes
        if route.pattern not in PUBLIC_ROUTES and not route.pattern.startswith(ADMIN_PREFIX)
        for name in route.parameters
        if name != "slug" and name not in PARAMETERS and name not in NAMING_NO_OBJECT
    )
    # Then each is one this module fills with another team's object (add new ones to PARAMETERS)
    assert len(routes) > 60
    assert unknown == []


# How long an accepted event stream (GET /v1/events/stream, which never ends) is read.
STREAM_READ_SECONDS = 1.0


def _send(client: httpx.Client, method: str, path: str, **options: Any) -> httpx.Response:
    """The answer; of an accepted event stream, what it sent in its first STREAM_READ_SECONDS."""
    with client.stream(method, path, timeout=httpx.Timeout(30, read=STREAM_READ_SECONDS), **options) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
            return response
        sent: list[str] = []
        deadline = time.monotonic() + STREAM_READ_SECONDS
        try:
            for text in response.iter_text():
                sent.append(text)
                if time.monotonic() > deadline:
                    break
        except httpx.ReadTimeout:
            pass
        return httpx.Response(
            response.status_code, headers=response.headers, text="".join(sent), request=response.request
        )


@pytest.mark.asgi_server
def test_api__alpha_key_on_every_api_route_with_bravo_objects__404_nothing_listed_nothing_changed(
    asgi_server, world
):
    # Given bravo's state before
    before = bravo_state(world)
    failures: list[str] = []
    tested = 0
    with httpx.Client(base_url=asgi_server.url, timeout=30) as client:
        for route in all_routes():
            if not route.api:
                continue
            for filled in world.fillings(route):
                path = route.path(filled)
                for method in route.methods:
                    found = False
                    for key in (world.alpha_key, world.alpha_personal_key):
                        # When alpha's team key and alpha's personal key (every scope) call it
                        headers = {"X-Veto-API-Key": key}
                        if method in ("POST", "PUT", "PATCH"):
                            response = client.request(method, path, headers=headers, json=_probe_body(world))
                        else:
                            query = {
                                "projectId": str(world.bravo.id),
                                "organizationId": str(world.bravo.organization_id),
                            }
                            response = _send(client, method, path, headers=headers, params=query)
                        tested += 1
                        where = f"{method} {path} ({'team' if key == world.alpha_key else 'personal'} key)"
                        sent = f"{response.request.url} {response.request.content.decode()}"
                        leaked = _leaks(response.text, world.markers, sent=sent)
                        # Then nothing of bravo's is in the answer, and a named object is not found
                        if leaked:
                            failures.append(f"{where}: {response.status_code} shows {leaked}")
                        if response.status_code >= 500:
                            failures.append(f"{where}: {response.status_code} {response.text[:200]}")
                        if route.pattern in SIGNED_ROUTES:
                            found = True
                            if response.status_code not in (401, 404, 405):
                                failures.append(f"{where}: {response.status_code}, not 401/404: {response.text[:200]}")
                            continue
                        found = found or response.status_code == 404
                        if route.parameters and response.status_code not in (404, 403):
                            failures.append(
                                f"{where}: {response.status_code}, not 404: {response.text[:200]}"
                            )
                        if response.status_code == 403 and response.json()["error"]["code"] not in (
                            "personal_key_required",
                        ):
                            failures.append(f"{where}: 403 {response.text[:200]}")
                    if route.parameters and not found:
                        failures.append(f"{method} {path}: neither key got a 404")
    # Then bravo is as it was
    assert tested > 80
    assert not failures, "\n".join(failures)
    assert bravo_state(world) == before


def test_pages__alpha_admin_on_every_page_with_bravo_objects__404_nothing_listed_nothing_changed(world):
    # Given alice (alpha's admin and approver) signed in, and bravo's state before
    client = Client()
    client.force_login(world.alice)
    before = bravo_state(world)
    failures: list[str] = []
    tested = 0
    for route in all_routes():
        if route.api or route.pattern in PUBLIC_ROUTES or route.pattern.startswith(ADMIN_PREFIX):
            continue
        for filled in world.fillings(route):
            path = route.path(filled)
            statuses = []
            for method in route.methods:
                # When she opens or posts to it
                data = {
                    "action": "approve",
                    "comment": "probe",
                    "name": "probe",
                    "tool_name": BRAVO_TOOL,
                    "team": world.bravo.slug,
                    "scopes": "decisions:read",
                }
                response = client.get(path) if method == "GET" else client.post(path, data)
                tested += 1
                statuses.append(response.status_code)
                body = response.content.decode(errors="replace")
                leaked = _leaks(body, world.markers, sent=f"{path} {data}")
                # Then nothing of bravo's shows, and a page naming bravo's object is not found
                if leaked:
                    failures.append(f"{method} {path}: {response.status_code} shows {leaked}")
                if route.parameters and response.status_code not in (404, 405):
                    failures.append(f"{method} {path}: {response.status_code}, not 404")
                # A list page opens; a write naming bravo (the key form's team) is refused or ignored.
                if not route.parameters and method == "GET" and response.status_code != 200:
                    failures.append(f"{method} {path}: {response.status_code}")
                if response.status_code >= 500:
                    failures.append(f"{method} {path}: {response.status_code}")
            if route.parameters and 404 not in statuses:
                failures.append(f"{path}: no method answered 404 ({statuses})")
    assert tested > 30
    assert not failures, "\n".join(failures)
    # Then bravo is as it was
    assert bravo_state(world) == before


def test_admin__non_staff_member_on_every_admin_route__sent_to_the_admin_login(world):
    # Given alice, a team admin but not staff, signed in
    client = Client()
    client.force_login(world.alice)
    failures = []
    routes = [r for r in all_routes() if r.pattern.startswith(ADMIN_PREFIX)]
    for route in routes:
        values = {name: str(uuid.uuid4()) if name != "app_label" else "tenancy" for name in route.parameters}
        path = route.path(values)
        if path.endswith(("/login/", "/logout/")) or "(?P<url>" in route.pattern:
            continue
        # When she opens any admin page
        response = client.get(path)
        # Then she is sent to the admin's login, shown nothing
        if not (response.status_code == 302 and "/admin/login/" in response["Location"]):
            if response.status_code != 404:
                failures.append(f"GET {path}: {response.status_code}")
        if _leaks(response.content.decode(errors="replace"), world.markers):
            failures.append(f"GET {path}: shows bravo's objects")
    assert len(routes) > 10
    assert not failures, "\n".join(failures)
