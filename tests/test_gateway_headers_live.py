"""The runtime gateway's answers carry the headers Django's pages do: ``nosniff`` on every one, and
``no-store`` unless the endpoint has its own caching (the rule set's ETag). On the live server."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import ApprovalFactory, TeamFactory, api_key_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = "rules:\n  - {name: no_rm, tool: rm, action: block}\n"


def test_gateway_answers__every_endpoint_success_and_error__nosniff_and_not_stored(asgi_server):
    # Given a team with an active rule set, a pending approval and a key
    team = TeamFactory()
    publish_rules(team, RULES)
    approval = ApprovalFactory(team=team)
    key = {"X-Veto-API-Key": api_key_for(team)}
    call = {"tool_name": "rm", "arguments": {"path": "/"}}
    with httpx.Client(base_url=asgi_server.url, timeout=10) as client:
        # When each gateway endpoint answers, successfully and with an error
        answers = {
            "healthz": (200, client.get("/healthz")),
            "validate": (200, client.post("/v1/tools/validate", json=call, headers=key)),
            "validate unauthenticated": (401, client.post("/v1/tools/validate", json=call)),
            "validate malformed": (400, client.post("/v1/tools/validate", content=b"{", headers=key)),
            "api mode": (200, client.post("/v1/validate", json={"context": call}, headers=key)),
            "decision": (
                201,
                client.post("/v1/decisions", json={**call, "decision": "deny"}, headers=key),
            ),
            "approval poll": (200, client.get(f"/v1/approvals/{approval.id}", headers=key)),
            "too large": (
                413,
                client.post("/v1/tools/validate", content=b"x" * 3_000_000, headers=key),
            ),
        }
        rule_set = client.get("/v1/rule-sets/active", headers=key)
    # Then each is as expected, says nosniff and is not to be stored
    for name, (status, response) in answers.items():
        assert response.status_code == status, (name, response.text[:200])
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], name
        assert response.headers.get_list("cache-control") == ["no-store"], name
    # And the rule set keeps its own revalidation (the SDK sends If-None-Match), once
    assert rule_set.status_code == 200
    assert rule_set.headers.get_list("x-content-type-options") == ["nosniff"]
    assert rule_set.headers.get_list("cache-control") == ["no-cache"]
