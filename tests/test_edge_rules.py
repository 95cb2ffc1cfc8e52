"""The gateway and Django/DRF answer the shared edge rules alike (common/edge.py, tenancy/scopes.py):
``?wait=``, the body limit, NUL, scopes and JSON-or-YAML, seen through the gateway in front of Django."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.test import override_settings

from approvals.forms import MAX_COMMENT_CHARS, DecisionForm
from policies.models import RuleSetVersion
from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from tenancy.models import ApiKey
from tests.factories import ApprovalFactory, TeamFactory, api_key_for, publish_rules

pytestmark = pytest.mark.django_db(transaction=True)

RULES = "rules:\n  - {name: no_rm, tool: rm, action: block}\n"


@pytest.fixture(scope="module")
def app():
    return Gateway(get_asgi_application(), runtime_routes)


@pytest.fixture
def team():
    team = TeamFactory()
    publish_rules(team, RULES)
    return team


def send(app, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {**kwargs.pop("headers", {}), **({"X-Veto-API-Key": key} if key else {})}

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.30", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(call())


@pytest.mark.parametrize("wait", ["soon", "61", "-1", "nan"])
def test_long_polls__the_same_bad_wait__the_same_400_from_both(app, team, wait):
    # Given a key, and an approval to poll
    key = api_key_for(team)
    approval = ApprovalFactory(team=team)
    # When both long-polls get the same unusable ?wait= (they used to word it differently)
    rule_set = send(app, "GET", f"/v1/rule-sets/active?wait={wait}", key)
    poll = send(app, "GET", f"/v1/approvals/{approval.id}?wait={wait}", key)
    # Then both refuse it with the same 400, naming wait and its range
    assert (rule_set.status_code, poll.status_code) == (400, 400)
    assert (
        rule_set.json()
        == poll.json()
        == {
            "error": {
                "code": "invalid_request",
                "message": f"wait: must be a number of seconds from 0 to 60, got {wait!r}",
                "details": {"field": "wait", "maximum": 60},
            }
        }
    )


def test_long_polls__empty_wait__answer_at_once_on_both(app, team):
    key = api_key_for(team)
    approval = ApprovalFactory(team=team)
    rule_set = send(app, "GET", "/v1/rule-sets/active?wait=", key)
    poll = send(app, "GET", f"/v1/approvals/{approval.id}?wait=", key)
    assert (rule_set.status_code, poll.status_code, poll.json()["status"]) == (200, 200, "pending")


async def _chunks(size: int) -> AsyncIterator[bytes]:
    # No Content-Length: the gateway cannot refuse it up front, Django's middleware reads it.
    for _ in range(size // 1024):
        yield b"x" * 1024


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=64 * 1024)
def test_body_over_the_limit__gateway_and_django__the_same_413(app, team):
    key = api_key_for(team)
    # When a body over the limit goes to a gateway endpoint, to a Django one with a Content-Length
    # (refused by the gateway up front) and to a Django one without (refused by the middleware)
    answers = [
        send(app, "POST", "/v1/tools/validate", key, content=b"x" * 100_000),
        send(app, "POST", "/v1/tools/register", key, content=b"x" * 100_000),
        send(app, "POST", "/v1/tools/register", key, content=_chunks(100_000)),
    ]
    # Then each is the same 413, naming the limit
    assert [a.status_code for a in answers] == [413, 413, 413]
    assert [a.json() for a in answers] == [
        {
            "error": {
                "code": "payload_too_large",
                "message": "request body is larger than the 65536-byte limit",
            }
        }
    ] * 3


def test_nul_escape__gateway_and_drf__the_same_400(app, team):
    key = api_key_for(team)
    headers = {"Content-Type": "application/json"}
    gateway = send(
        app, "POST", "/v1/tools/validate", key, headers=headers, content=b'{"tool_name": "a\\u0000"}'
    )
    drf = send(
        app, "POST", "/v1/tools/register", key, headers=headers, content=b'{"tools": [{"name": "a\\u0000"}]}'
    )
    assert (gateway.status_code, drf.status_code) == (400, 400)
    assert gateway.json() == drf.json()
    assert "NUL character" in gateway.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"tools": ', "Expecting value (line 1, column 11)"),
        (b'{"tools": [}', "Expecting value (line 1, column 12)"),
        (b'{"tools": NaN}', "NaN is not a JSON number"),
        (b'{"tool_name": "ls", "arguments": {"x": Infinity}}', "Infinity is not a JSON number"),
        (b"[" * 50_000 + b"]" * 50_000, "the document is nested too deeply"),
    ],
)
def test_malformed_json__gateway_and_drf__the_same_400(app, team, body, message):
    key = api_key_for(team)
    headers = {"Content-Type": "application/json"}
    gateway = send(app, "POST", "/v1/tools/validate", key, headers=headers, content=body)
    drf = send(app, "POST", "/v1/tools/register", key, headers=headers, content=body)
    assert (gateway.status_code, drf.status_code) == (400, 400)
    assert (
        gateway.json()
        == drf.json()
        == {"error": {"code": "malformed_json", "message": f"request body is not valid JSON: {message}"}}
    )


def test_key_lacking_a_scope__gateway_and_drf__the_same_403_naming_it(app, team):
    # Given a key that may read decisions but not use the runtime
    key = api_key_for(team, scopes=(ApiKey.Scope.DECISIONS_READ,))
    # When it asks the gateway (the active rule set) and DRF (the rule-set history), both runtime's
    gateway = send(app, "GET", "/v1/rule-sets/active", key)
    drf = send(app, "GET", "/v1/rule-sets", key)
    # Then both refuse it alike, naming the scope it lacks
    assert (gateway.status_code, drf.status_code) == (403, 403)
    assert (
        gateway.json()
        == drf.json()
        == {
            "error": {
                "code": "forbidden",
                "message": "This API key lacks the scope(s): runtime.",
                "details": {"missing_scopes": ["runtime"]},
            }
        }
    )


def test_inline_rules_without_their_scope__403_in_the_same_words_saying_why(app, team):
    key = api_key_for(team, scopes=(ApiKey.Scope.RUNTIME,))
    rules = [{"id": "ok", "name": "ok", "action": "allow", "tools": ["rm"]}]
    response = send(app, "POST", "/v1/validate", key, json={"context": {"tool_name": "rm"}, "rules": rules})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["message"].startswith(
        "This API key lacks the scope(s): rules:inline (deciding with the rules"
    )
    assert error["details"] == {"missing_scopes": ["rules:inline"]}


@pytest.mark.parametrize(
    ("content_type", "stored_as"),
    [
        ("application/json; charset=utf-8", RuleSetVersion.SourceFormat.JSON),
        ("application/vnd.veto+json", RuleSetVersion.SourceFormat.JSON),
        ("application/x-yaml", RuleSetVersion.SourceFormat.YAML),
        ("text/plain", RuleSetVersion.SourceFormat.YAML),
    ],
)
def test_rule_set_upload__content_type__read_as_the_gateway_serves_by_accept(app, content_type, stored_as):
    team = TeamFactory()
    key = api_key_for(team)
    source = '{"rules": [{"name": "no_rm", "tool": "rm", "action": "block"}]}'
    response = send(app, "POST", "/v1/rule-sets", key, headers={"Content-Type": content_type}, content=source)
    assert response.status_code == 201, response.content
    assert response.json()["format"] == stored_as


@pytest.mark.parametrize(
    ("accept", "served_as"),
    [
        ("application/yaml;q=0.5, application/json", "application/json"),
        ("application/json, application/yaml", "application/yaml; charset=utf-8"),
        ("application/json;q=0, */*", "application/yaml; charset=utf-8"),  # as uploaded
    ],
)
def test_active_rule_set__accept__the_preferred_format(app, team, accept, served_as):
    response = send(app, "GET", "/v1/rule-sets/active", api_key_for(team), headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == served_as


def test_resolve_comment__one_over_the_limit__refused_by_the_api_and_the_form_alike(app, team):
    # The approve/deny comment has one limit (approvals.forms.MAX_COMMENT_CHARS) for both.
    approval = ApprovalFactory(team=team)
    key = api_key_for(team, scopes=(ApiKey.Scope.APPROVALS_RESOLVE,))
    too_long = "c" * (MAX_COMMENT_CHARS + 1)
    api = send(
        app, "POST", f"/v1/approvals/{approval.id}/resolve", key, json={"action": "deny", "comment": too_long}
    )
    assert api.status_code == 400
    assert api.json()["error"]["message"].startswith("comment:")
    assert f"no more than {MAX_COMMENT_CHARS}" in api.json()["error"]["message"]
    form = DecisionForm(data={"action": "deny", "comment": too_long})
    assert not form.is_valid() and "comment" in form.errors
    assert DecisionForm(data={"action": "deny", "comment": too_long[:-1]}).is_valid()
