"""The authorization matrix: which scopes each API operation takes, and what each role may do in
the browser. The tables below are the specification; every operation of /api/schema/ and every
page of the URL configuration must have a row (a missing one fails), and each row is checked
against the running server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from policies.services import rule_set_version_create
from tenancy.models import ApiKey, Membership
from tests.factories import (
    BY_TESTS,
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    ToolPolicyFactory,
    UserFactory,
    personal_api_key_for,
    policy_draft_for,
    publish_rules,
    record_decision,
)
from webhooks.services import webhook_endpoint_create, webhook_test_send

RUNTIME = ApiKey.Scope.RUNTIME.value
READ = ApiKey.Scope.DECISIONS_READ.value
WRITE = ApiKey.Scope.POLICIES_WRITE.value
PUBLISH = ApiKey.Scope.POLICIES_PUBLISH.value
RESOLVE = ApiKey.Scope.APPROVALS_RESOLVE.value
ADMIN = ApiKey.Scope.ADMIN.value
INLINE = ApiKey.Scope.INLINE_RULES.value
WEBHOOKS = ApiKey.Scope.WEBHOOKS_MANAGE.value
ALL = frozenset(ApiKey.Scope.values)

# operationId -> every scope the operation takes (a key lacking one of them gets 403).
API_SCOPES: dict[str, frozenset[str]] = {
    # The SDK's runtime calls (the gateway and Django).
    "tool_call_validate": frozenset({RUNTIME}),
    "api_mode_validate": frozenset({RUNTIME}),
    "client_decision_create": frozenset({RUNTIME}),
    "rule_set_active": frozenset({RUNTIME}),
    "approval_get": frozenset({RUNTIME}),
    "v1_tools_register_create": frozenset({RUNTIME}),
    "v1_tools_retrieve": frozenset({RUNTIME}),
    # Reading rules and policies is what a runtime key's PolicyCache does.
    "v1_policies_list": frozenset({RUNTIME}),
    "v1_policies_retrieve": frozenset({RUNTIME}),
    "v1_policies_export_retrieve": frozenset({RUNTIME}),
    "v1_policy_drafts_list": frozenset({RUNTIME}),
    "v1_policy_drafts_retrieve": frozenset({RUNTIME}),
    "v1_rule_sets_list": frozenset({RUNTIME}),
    "v1_rule_sets_retrieve": frozenset({RUNTIME}),
    "v1_rule_sets_diff_retrieve": frozenset({RUNTIME}),
    # Writing rules and policies; what loosens or goes live takes publish.
    "v1_policies_create": frozenset({WRITE}),
    "v1_policies_update": frozenset({WRITE}),
    "v1_policies_destroy": frozenset({WRITE}),
    "v1_policies_activate_create": frozenset({PUBLISH}),
    "v1_policies_deactivate_create": frozenset({PUBLISH}),
    "v1_policy_drafts_create": frozenset({WRITE}),
    "v1_policy_drafts_approve_create": frozenset({PUBLISH}),
    "v1_policy_drafts_reject_create": frozenset({PUBLISH}),
    "v1_rule_sets_create": frozenset({WRITE}),
    "v1_rule_sets_publish_create": frozenset({PUBLISH}),
    "v1_rule_sets_preview_create": frozenset({WRITE, READ}),
    # The trail.
    "v1_decisions_list": frozenset({READ}),
    "v1_decisions_retrieve": frozenset({READ}),
    "v1_decisions_stats_retrieve": frozenset({READ}),
    "event_stream": frozenset({READ}),
    "v1_decisions_export": frozenset({READ}),
    "v1_approvals_retrieve": frozenset({READ}),
    "v1_approvals_trail_retrieve": frozenset({READ}),
    "v1_approvals_pending_retrieve": frozenset({READ}),
    # Deciding approvals (as a person: personal keys only, see tests/test_personal_keys_api.py).
    "v1_approvals_resolve_create": frozenset({RESOLVE}),
    "v1_approvals_batch_resolve_create": frozenset({RESOLVE}),
    # Administration.
    "v1_organizations_retrieve": frozenset({ADMIN}),
    "v1_organizations_create": frozenset({ADMIN}),
    "v1_projects_retrieve": frozenset({ADMIN}),
    "v1_projects_create": frozenset({ADMIN}),
    "v1_api_keys_retrieve": frozenset({ADMIN}),
    "v1_api_keys_create": frozenset({ADMIN}),
    "v1_api_keys_destroy": frozenset({ADMIN}),
    # Webhooks: reads too (an endpoint's URL and routing key are credentials); not the admin scope.
    "webhooks_list": frozenset({WEBHOOKS}),
    "webhook_create": frozenset({WEBHOOKS}),
    "webhook_get": frozenset({WEBHOOKS}),
    "webhook_update": frozenset({WEBHOOKS}),
    "webhook_replace": frozenset({WEBHOOKS}),
    "webhook_delete": frozenset({WEBHOOKS}),
    "webhook_secret_rotate": frozenset({WEBHOOKS}),
    "webhook_deliveries_list": frozenset({WEBHOOKS}),
    "webhook_test_send": frozenset({WEBHOOKS}),
    "webhook_delivery_resend": frozenset({WEBHOOKS}),
}

CAPPED = [{"argumentName": "amount", "enabled": True, "maximum": 1000}]
INLINE_RULES = [{"id": "cap", "name": "cap", "action": "block", "tools": ["transfer"]}]


@dataclass(frozen=True)
class Variant:
    """An operation called so that it takes more than its row: (team, call number) -> path values, body."""

    operation: str
    name: str
    scopes: frozenset[str]
    prepare: Callable[[Any, int], tuple[dict[str, str], Any]] = field(repr=False)


def _capped_tool(team: Any, n: int) -> dict[str, str]:
    tool = f"capped_{n}"
    ToolPolicyFactory(team=team, tool_name=tool, constraints=CAPPED)
    return {"tool_name": tool}


VARIANTS = [
    Variant(
        "api_mode_validate",
        "rules in the request",
        frozenset({RUNTIME, INLINE}),
        lambda team, n: ({}, {"context": {"tool_name": "transfer"}, "rules": INLINE_RULES}),
    ),
    Variant(
        "v1_policies_update",
        "loosening a policy",
        frozenset({WRITE, PUBLISH}),
        lambda team, n: (
            _capped_tool(team, n),
            {"mode": "deterministic", "constraints": [{**CAPPED[0], "maximum": 10**6}]},
        ),
    ),
    Variant(
        "v1_policies_destroy",
        "deleting a policy",
        frozenset({WRITE, PUBLISH}),
        lambda team, n: (_capped_tool(team, n), None),
    ),
]


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    parameters: tuple[tuple[str, str], ...]  # (name, JSON type) of path parameters


_schema_cache: dict[str, dict[str, Operation]] = {}


def operations_of(server_url: str) -> dict[str, Operation]:
    """The authenticated operations of the served OpenAPI document, by operationId."""
    if server_url not in _schema_cache:
        document = httpx.get(f"{server_url}/api/schema/", params={"format": "json"}, timeout=30).json()
        found = {}
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or not operation.get("security"):
                    continue
                parameters = tuple(
                    (p["name"], p.get("schema", {}).get("type", "string"))
                    for p in operation.get("parameters", [])
                    if p["in"] == "path"
                )
                found[operation["operationId"]] = Operation(
                    operation["operationId"], method.upper(), path, parameters
                )
        _schema_cache[server_url] = found
    return _schema_cache[server_url]


def _refused_for_scope(response: httpx.Response) -> bool:
    """403 because of what the key may do (a missing scope, a loosening), not another reason."""
    if response.status_code != 403:
        return False
    error = response.json()["error"]
    details = error.get("details") or {}
    return (
        "lacks the scope" in error["message"]
        or error["code"] == "loosening_not_allowed"
        or (isinstance(details, dict) and "missing_scope" in details)
    )


def _call(server_url: str, operation: Operation, token: str, values: dict[str, str], body: Any):
    path = operation.path
    for name, kind in operation.parameters:
        value = values.get(name) or ("1" if kind == "integer" else str(uuid.uuid4()))
        path = path.replace("{" + name + "}", value)
    headers = {"X-Veto-API-Key": token}
    if operation.method in ("POST", "PUT", "PATCH"):
        return httpx.request(
            operation.method, server_url + path, headers=headers, json=body or {}, timeout=30
        )
    with httpx.stream(operation.method, server_url + path, headers=headers, timeout=30) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            # An accepted event stream never ends: its status and headers are the answer.
            return httpx.Response(response.status_code, headers=response.headers)
        response.read()
        return response


def _key_sets(required: frozenset[str]) -> list[frozenset[str]]:
    """One key per scope alone, one with exactly what is required, one with everything else."""
    return [*(frozenset({scope}) for scope in sorted(ALL)), required, ALL - required]


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
def test_api_matrix__every_operation_of_the_schema__has_a_row(asgi_server):
    # Given the served OpenAPI document
    served = set(operations_of(asgi_server.url))
    # When it is compared with the table
    # Then every authenticated operation has its row, and no row names a gone operation
    assert served - set(API_SCOPES) == set(), "add these operations to API_SCOPES"
    assert set(API_SCOPES) - served == set(), "these rows name no operation any more"
    assert {variant.operation for variant in VARIANTS} <= served


ROWS = [(operation, None) for operation in sorted(API_SCOPES)] + [(v.operation, v) for v in VARIANTS]


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("operation_id", "variant"), ROWS, ids=[f"{o}-{v.name}" if v else o for o, v in ROWS]
)
def test_api_matrix__key_with_given_scopes__allowed_exactly_when_it_holds_the_row(
    asgi_server, operation_id, variant
):
    # Given a team admin's personal keys, each holding one set of scopes
    operation = operations_of(asgi_server.url)[operation_id]
    required = variant.scopes if variant else API_SCOPES[operation_id]
    team = TeamFactory()
    admin = UserFactory()
    wrong = []
    for n, scopes in enumerate(_key_sets(required)):
        token = personal_api_key_for(admin, team, scopes=tuple(sorted(scopes)), role="admin", name=f"key {n}")
        values, body = variant.prepare(team, n) if variant else ({}, None)
        # When each calls the operation
        response = _call(asgi_server.url, operation, token, values, body)
        # Then it is refused for its scopes exactly when it lacks one the row names
        expected_refusal = not required <= scopes
        refused = _refused_for_scope(response)
        if refused != expected_refusal or response.status_code in (401, 429) or response.status_code >= 500:
            wrong.append(f"{sorted(scopes)}: {response.status_code} {response.text[:200]}")
    assert not wrong, f"{operation.method} {operation.path}:\n" + "\n".join(wrong)


# --- roles x browser actions -------------------------------------------------------------------

ROLES = ("anonymous", "outsider", "member", "approver", "admin", "staff")
RULES_V1 = (
    "rules:\n  - {name: big_refunds, tool: refund, when: 'args.amount > 100', action: require_approval,"
    " approvers: [compliance]}\n"
)
RULES_V2 = RULES_V1.replace("> 100", "> 50")

# A public address as an IP (the SSRF guard passes it without a DNS lookup).
WEBHOOK_URL = "https://93.184.215.14/hooks/matrix"
# Form data each action is sent: valid, so that only who sends it decides the answer.
FORMS: dict[str, dict[str, str]] = {
    "policies:validate": {"source": RULES_V2},
    "policies:version-create": {"source": RULES_V2},
    "policies:draft-reject": {"reason": "not now"},
    "policies:tool-policy-create": {
        "body": '{"toolName": "new_tool", "mode": "deterministic", "constraints": []}'
    },
    "policies:tool-policy-replace": {
        "body": '{"toolName": "capped", "mode": "deterministic", "constraints": []}'
    },
    "approvals:decide": {"action": "approve", "comment": "fine"},
    "tenancy:my-api-keys": {"name": "mine", "team": "matrix-team", "scopes": "decisions:read"},
    "team_settings:member-add": {"user": "approver", "role": "member"},
    "team_settings:member-role": {"username": "member", "role": "admin"},
    "team_settings:member-remove": {"username": "member"},
    "team_settings:group-create": {"name": "New group"},
    "team_settings:group-rename": {"group": "compliance", "name": "Compliance office"},
    "team_settings:group-delete": {"group": "compliance"},
    "team_settings:group-member-add": {"group": "compliance", "username": "member"},
    "team_settings:group-member-remove": {"group": "compliance", "username": "approver"},
    "team_settings:options": {"admins_may_approve": "on"},
    "webhooks:create": {"name": "New hook", "format": "generic", "url": WEBHOOK_URL, "events": "deny"},
    "webhooks:update": {"name": "Renamed", "format": "generic", "url": WEBHOOK_URL, "events": "deny"},
    "webhooks:delete": {"confirm": "on"},
    "webhooks:rotate-secret": {"overlap_hours": "1"},
}
QUERIES: dict[str, dict[str, str]] = {"policies:diff": {"from": "1", "to": "2"}}


@dataclass
class Dashboard:
    """One team with one of everything a page acts on, and a person in each role."""

    users: dict[str, Any]
    values: dict[str, str]


@pytest.fixture
def dashboard() -> Dashboard:

    team = TeamFactory(slug="matrix-team")
    users = {
        "outsider": UserFactory(username="outsider"),
        "member": UserFactory(username="member"),
        "approver": UserFactory(username="approver"),
        "admin": UserFactory(username="admin"),
        "staff": UserFactory(username="staff", is_staff=True),
    }
    Membership.objects.create(user=users["member"], team=team, role=Membership.Role.MEMBER)
    Membership.objects.create(user=users["admin"], team=team, role=Membership.Role.ADMIN)
    ApproverGroupFactory(team=team, slug="compliance").members.add(users["approver"])
    publish_rules(team, RULES_V1)
    draft_version = rule_set_version_create(team=team, source_text=RULES_V2)
    policy = ToolPolicyFactory(team=team, tool_name="capped", constraints=CAPPED)
    draft = policy_draft_for(team, INLINE_RULES, name="proposed")
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    personal_api_key_for(users["admin"], team, name="admin's key", role="admin")
    decision = record_decision(
        team,
        tool_name="refund",
        arguments={"amount": 500},
        decision="require_approval",
        rule_id="big_refunds",
        rule_name="big_refunds",
        rule_set_version=1,
    )
    webhook = webhook_endpoint_create(
        team=team, actor=BY_TESTS, values={"name": "SIEM", "url": WEBHOOK_URL, "events": ["deny"]}
    ).endpoint
    webhook_delivery = webhook_test_send(endpoint=webhook, actor=BY_TESTS)
    return Dashboard(
        users=users,
        values={
            "slug": team.slug,
            "panel": "activity",
            "number": str(draft_version.number),
            "draft_id": str(draft.id),
            "policy_id": str(policy.id),
            "approval_id": str(approval.id),
            "key_id": str(ApiKey.objects.get(user=users["admin"]).id),
            "decision_id": str(decision.id),
            "webhook_id": str(webhook.id),
            "delivery_id": str(webhook_delivery.id),
        },
    )


def browser_actions() -> dict[str, tuple[str, str]]:
    """Every page of the URL configuration, by "namespace:name METHOD": (pattern, method)."""

    found: dict[str, tuple[str, str]] = {}

    def walk(patterns: list[Any], prefix: str, namespace: str | None) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace)
            elif isinstance(entry, URLPattern) and namespace and namespace != "admin":
                methods = _allowed_methods(entry.callback)
                for method in methods:
                    found[f"{namespace}:{entry.name} {method}"] = (prefix + str(entry.pattern), method)

    walk(get_resolver().url_patterns, "", None)
    return found


def _allowed_methods(callback: Callable[..., Any]) -> tuple[str, ...]:
    """The methods the view's require_http_methods (require_GET, require_POST) lets in; GET and
    POST when it has none."""
    function: Any = callback
    while function is not None:
        names = function.__code__.co_freevars
        if "request_method_list" in names:
            cell = function.__closure__[names.index("request_method_list")]
            return tuple(method for method in ("GET", "POST") if method in cell.cell_contents)
        function = getattr(function, "__wrapped__", None)
    return ("GET", "POST")


def _page_request(client: Any, dashboard: Dashboard, name: str, pattern: str, method: str) -> Any:

    path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: dashboard.values[m.group(1)], pattern)
    if method == "GET":
        return client.get(path, QUERIES.get(name, {}))
    return client.post(path, FORMS.get(name, {}))


LOGIN = "login"  # sent to the login page
# "namespace:name METHOD" -> what each role gets, in ROLES order (anonymous, outsider, member,
# approver, admin, staff). An approver is in one of the team's approver groups but no member;
# staff are no member either. 302 is the action done (redirect to its result).
PAGES: dict[str, tuple[str | int, ...]] = {
    # Read-only pages answer GET and HEAD only (a POST is 405: tests/test_page_methods.py).
    "dashboard:home GET": (LOGIN, 200, 200, 200, 200, 200),
    "dashboard:audit GET": (LOGIN, 404, 200, 404, 200, 200),
    "dashboard:audit-verify POST": (LOGIN, 404, 302, 404, 302, 302),
    "dashboard:overview GET": (LOGIN, 404, 200, 404, 200, 200),
    "dashboard:decisions GET": (LOGIN, 404, 200, 404, 200, 200),
    # The explorer's download of the filtered set: whoever may see the explorer.
    "dashboard:decisions-export GET": (LOGIN, 404, 200, 404, 200, 200),
    # One decision's page: whoever may see the explorer.
    "dashboard:decision GET": (LOGIN, 404, 200, 404, 200, 200),
    "dashboard:overview-panel GET": (LOGIN, 404, 200, 404, 200, 200),
    "policies:teams GET": (LOGIN, 200, 200, 200, 200, 200),
    "policies:page GET": (LOGIN, 404, 200, 404, 200, 200),
    "policies:validate POST": (LOGIN, 404, 200, 404, 200, 200),
    # Members may save a draft version; only admins (and staff) publish one.
    "policies:version-create POST": (LOGIN, 404, 302, 404, 302, 302),
    "policies:version GET": (LOGIN, 404, 200, 404, 200, 200),
    "policies:version-publish POST": (LOGIN, 404, 403, 404, 302, 302),
    "policies:impact GET": (LOGIN, 404, 200, 404, 200, 200),
    "policies:diff GET": (LOGIN, 404, 200, 404, 200, 200),
    "policies:draft-approve POST": (LOGIN, 404, 403, 404, 302, 302),
    "policies:draft-reject POST": (LOGIN, 404, 403, 404, 302, 302),
    "policies:tool-policy-create POST": (LOGIN, 404, 403, 404, 302, 302),
    "policies:tool-policy-replace POST": (LOGIN, 404, 403, 404, 302, 302),
    "policies:tool-policy-activate POST": (LOGIN, 404, 403, 404, 302, 302),
    "policies:tool-policy-deactivate POST": (LOGIN, 404, 403, 404, 302, 302),
    "policies:tool-policy-delete POST": (LOGIN, 404, 403, 404, 302, 302),
    "approvals:queue GET": (LOGIN, 200, 200, 200, 200, 200),
    "approvals:history GET": (LOGIN, 200, 200, 200, 200, 200),
    "approvals:detail GET": (LOGIN, 404, 200, 200, 200, 200),
    # The rule names the compliance group: its members decide; admins only when the team lets them.
    "approvals:decide POST": (LOGIN, 404, 403, 302, 403, 403),
    # The nav badge's live refresh: the link alone, counting what waits for the person.
    "approvals:badge GET": (LOGIN, 200, 200, 200, 200, 200),
    # Team settings: members see the page read-only; only admins (and staff) change anything.
    "team_settings:page GET": (LOGIN, 404, 200, 404, 200, 200),
    "team_settings:member-add POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:member-role POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:member-remove POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:group-create POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:group-rename POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:group-delete POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:group-member-add POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:group-member-remove POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:options POST": (LOGIN, 404, 403, 404, 302, 302),
    "team_settings:key-revoke POST": (LOGIN, 404, 403, 404, 302, 302),
    "tenancy:my-api-keys GET": (LOGIN, 200, 200, 200, 200, 200),
    # A personal key is for a team one is a member of (the form offers no other).
    "tenancy:my-api-keys POST": (LOGIN, 400, 201, 400, 201, 400),
    # The key is the admin's own: nobody else finds it.
    "tenancy:my-api-key-revoke POST": (LOGIN, 404, 404, 404, 302, 404),
    # Webhooks: admins (and staff) only, reads too (an endpoint's URL is a credential); a member
    # is told so (403). Creating and rotating answer with the page showing the new secret.
    "webhooks:page GET": (LOGIN, 404, 403, 404, 200, 200),
    "webhooks:create POST": (LOGIN, 404, 403, 404, 201, 201),
    "webhooks:detail GET": (LOGIN, 404, 403, 404, 200, 200),
    "webhooks:deliveries GET": (LOGIN, 404, 403, 404, 200, 200),
    "webhooks:update POST": (LOGIN, 404, 403, 404, 302, 302),
    "webhooks:delete POST": (LOGIN, 404, 403, 404, 302, 302),
    "webhooks:rotate-secret POST": (LOGIN, 404, 403, 404, 200, 200),
    "webhooks:test POST": (LOGIN, 404, 403, 404, 302, 302),
    "webhooks:resend POST": (LOGIN, 404, 403, 404, 302, 302),
}
# Pages outside a namespace: public, or checked elsewhere (the admin: tests/test_tenant_isolation.py).
PUBLIC_PAGES = {
    "",
    "readyz",
    "favicon.ico",
    "api/schema/",
    "api/docs/",
    "accounts/login/",
    "accounts/logout/",
    # Not a person's page: the operators' scrape, behind its own bearer token (VETO_METRICS_TOKEN;
    # tests/test_metrics.py checks the token: none configured, missing, wrong, right).
    "metrics",
}


def test_browser_matrix__every_page_of_the_url_configuration__has_a_row():
    # Given every page of the URL configuration (outside /v1/ and the admin)

    loose = [
        str(entry.pattern)
        for entry in get_resolver().url_patterns
        if isinstance(entry, URLPattern) and str(entry.pattern) not in PUBLIC_PAGES
    ]
    mounted = {str(e.pattern) for e in get_resolver().url_patterns if isinstance(e, URLResolver)}
    # When it is compared with the table
    # Then each (page, method) has its row, no row names a gone page, and nothing is left outside
    assert set(browser_actions()) - set(PAGES) == set(), "add these pages to PAGES"
    assert set(PAGES) - set(browser_actions()) == set(), "these rows name no page any more"
    assert loose == [], "a page outside a namespace: give it one, or list it in PUBLIC_PAGES"
    assert mounted <= {
        "v1/",
        "dashboard/",
        "dashboard/teams/",
        "dashboard/teams/<slug:slug>/settings/",
        "dashboard/teams/<slug:slug>/settings/webhooks/",
        "dashboard/approvals/",
        "dashboard/api-keys/",
        "admin/",
    }


def _outcome(response: Any) -> str | int:
    if response.status_code == 302 and response["Location"].startswith("/accounts/login/"):
        return LOGIN
    return int(response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(PAGES))
def test_browser_matrix__role_takes_action__answered_as_the_table_says(dashboard, action, role):
    # Given a team with one of everything, and a person in ``role`` (signed in unless anonymous)

    client = Client()
    if role != "anonymous":
        client.force_login(dashboard.users[role])
    pattern, method = browser_actions()[action]
    # When they open the page or send its form
    response = _page_request(client, dashboard, action.split(" ")[0], pattern, method)
    # Then they get what the table says
    assert _outcome(response) == PAGES[action][ROLES.index(role)], response.content[:300]
