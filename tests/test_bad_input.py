"""Bad input gets a 4xx with a JSON body that says what and where, and nothing is recorded."""

from __future__ import annotations

import time

import httpx
import pytest

from approvals.models import Approval
from audit.models import DecisionRecord
from tenancy.models import ApiKey
from tenancy.services import api_key_revoke
from tests.factories import TeamFactory, api_key_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

ONE_MIB = 1024 * 1024


@pytest.fixture
def key():
    return api_key_for(TeamFactory())


def post(server, path: str, *, key: str | None, content: bytes | str, content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["X-Veto-API-Key"] = key
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("body", "status", "code", "where"),
    [
        ('{"tool_name": "x", "arguments": {', 400, "malformed_json", "not valid JSON"),
        ("", 400, "malformed_json", "empty"),
        ('{"arguments": {}}', 400, "invalid_request", "tool_name"),
        ('{"tool_name": "x", "arguments": [1, 2]}', 400, "invalid_request", "arguments"),
        ('{"tool_name": "x", "arguments": "text"}', 400, "invalid_request", "arguments"),
        ('{"tool_name": "x", "context": 5}', 400, "invalid_request", "context"),
        ('{"tool_name": ""}', 400, "invalid_request", "tool_name"),
        ('["tool_name"]', 400, "invalid_request", "(body)"),
    ],
)
def test_validate__malformed_request__4xx_json_error_and_nothing_recorded(
    asgi_server, key, body, status, code, where
):
    response = post(asgi_server, "/v1/tools/validate", key=key, content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert where in error["message"]
    assert DecisionRecord.objects.count() == 0


@pytest.mark.parametrize(("padding", "status", "rows"), [(ONE_MIB + 10, 413, 0), (ONE_MIB - 200, 200, 1)])
def test_validate__one_mib_body_limit__413_above_and_nothing_recorded(
    asgi_server, key, padding, status, rows
):
    body = f'{{"tool_name": "t", "arguments": {{"p": "{"x" * padding}"}}}}'
    response = post(asgi_server, "/v1/tools/validate", key=key, content=body)
    assert response.status_code == status
    if status == 413:
        assert response.json()["error"]["code"] == "payload_too_large"
    assert DecisionRecord.objects.count() == rows


@pytest.mark.parametrize("path", ["/v1/tools/validate", "/v1/decisions", "/v1/tools/register"])
def test_api__no_key_or_wrong_key__401(asgi_server, path):
    body = '{"tool_name": "t", "arguments": {}, "decision": "allow", "tools": [{"name": "t"}]}'
    missing = post(asgi_server, path, key=None, content=body)
    wrong = post(asgi_server, path, key="vk_wrong-wrong-wrong-wrong-wrong-wrong", content=body)
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.json()["error"]["code"] == wrong.json()["error"]["code"] == "unauthenticated"
    assert DecisionRecord.objects.count() == 0


def test_api__revoked_key__401(asgi_server):
    team = TeamFactory()
    token = api_key_for(team)
    assert post(asgi_server, "/v1/tools/validate", key=token, content='{"tool_name": "t"}').status_code == 200
    # revoked in this process: the server process notices within API_KEY_CACHE_SECONDS
    api_key_revoke(api_key=ApiKey.objects.get(team=team))
    response = httpx.get(f"{asgi_server.url}/v1/decisions", headers={"X-Veto-API-Key": token}, timeout=10)
    deadline = time.monotonic() + 8
    while response.status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.25)
        response = httpx.get(f"{asgi_server.url}/v1/decisions", headers={"X-Veto-API-Key": token}, timeout=10)
    assert response.status_code == 401


def test_validate__key_without_runtime_scope__403(asgi_server):
    token = api_key_for(TeamFactory(), scopes=("decisions:read",))
    response = post(asgi_server, "/v1/tools/validate", key=token, content='{"tool_name": "t"}')
    assert response.status_code == 403
    assert "runtime" in response.json()["error"]["message"]


def test_client_decision__invalid_decision_value__400_naming_the_field(asgi_server, key):
    response = post(asgi_server, "/v1/decisions", key=key, content='{"tool_name": "t", "decision": "maybe"}')
    assert response.status_code == 400
    assert response.json()["error"]["details"]["errors"][0]["path"] == "decision"
    assert DecisionRecord.objects.count() == 0


def test_validate__require_approval__decision_and_its_approval_are_written_together(asgi_server, key):
    publish_rules(ApiKey.objects.get().team, "rules:\n  - {name: gate, tool: t, action: require_approval}\n")
    time.sleep(1.2)  # a new team's first lookup may predate the publish; the server re-checks every second
    response = post(asgi_server, "/v1/tools/validate", key=key, content='{"tool_name": "t"}')
    assert response.json()["decision"] == "require_approval"
    assert DecisionRecord.objects.get().approval_id == Approval.objects.get().id


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/tools/validate", '{"tool_name": "t", "arguments": {"note": "a\\u0000b"}}'),
        ("/v1/tools/validate", '{"tool_name": "t", "context": {"k\\u0000": 1}}'),
        ("/v1/decisions", '{"tool_name": "t", "decision": "allow", "reason": "\\u0000"}'),
        ("/v1/tools/register", '{"tools": [{"name": "bad\\u0000name"}]}'),
    ],
)
def test_api__nul_character__400_on_every_backend_and_nothing_stored(asgi_server, key, path, body):
    # PostgreSQL cannot store U+0000 in text or jsonb; SQLite could. Both answer the same.
    response = post(asgi_server, path, key=key, content=body)
    assert response.status_code == 400
    assert "NUL character" in response.json()["error"]["message"]
    assert DecisionRecord.objects.count() == 0


def test_validate__escaped_backslash_before_u0000__is_ordinary_text(asgi_server, key):
    response = post(
        asgi_server,
        "/v1/tools/validate",
        key=key,
        content='{"tool_name": "t", "arguments": {"p": "C:\\\\u0000"}}',
    )
    assert response.status_code == 200
    assert DecisionRecord.objects.get().arguments == {"p": "C:\\u0000"}
