"""A ``policies:write`` key creates and tightens per-tool policies; a change that loosens one
(delete, a wider range, a constraint removed or disabled, an enum value added, deny → require
approval, ...) takes what deactivating takes: the ``policies:publish`` scope. Refused: 403
``loosening_not_allowed``, nothing written, nothing audited, validate still enforces the old
policy."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from policies.models import ToolPolicy
from tests.factories import TeamFactory, ToolPolicyFactory, api_key_for

pytestmark = pytest.mark.django_db

WRITER = ("runtime", "policies:write")
LIMIT = [
    {"argumentName": "amount", "enabled": True, "greaterThan": 0, "maximum": 1000},
    {"argumentName": "currency", "enabled": True, "required": True, "enum": ["EUR", "USD"]},
    {"argumentName": "memo", "enabled": True, "regex": "^[a-z ]*$", "action": "require_approval"},
]


def body(*changes: tuple[int, dict]) -> dict:
    constraints = [dict(c) for c in LIMIT]
    for index, change in changes:
        constraints[index].update(change)
    return {"mode": "deterministic", "constraints": [c for c in constraints if c.get("argumentName")]}


LOOSENINGS = {
    "raise_maximum": body((0, {"maximum": 1_000_000})),
    "drop_lower_bound": body((0, {"greaterThan": None})),
    "disable_constraint": body((0, {"enabled": False})),
    "remove_constraint": {"mode": "deterministic", "constraints": LIMIT[1:]},
    "add_enum_value": body((1, {"enum": ["EUR", "USD", "GBP"]})),
    "drop_required": body((1, {"required": False})),
    "remove_regex": body((2, {"regex": None})),
    "approval_to_allow": {"mode": "deterministic", "constraints": LIMIT[:2]},
    "deny_to_approval": body((0, {"action": "require_approval"})),
    "empty_constraints": {"mode": "deterministic", "constraints": []},
}
TIGHTENINGS = {
    "same_again": body(),
    "lower_maximum": body((0, {"maximum": 500})),
    "remove_enum_value": body((1, {"enum": ["EUR"]})),
    "approval_to_deny": body((2, {"action": "deny"})),
    "add_constraint": {
        "mode": "deterministic",
        "constraints": [*LIMIT, {"argumentName": "fee", "enabled": True, "maximum": 5}],
    },
    "mode_only": {"mode": "deterministic"},
}


def state(team) -> list[tuple]:
    return list(ToolPolicy.objects.filter(team=team).values_list("version", "is_active", "constraints"))


def changes(team) -> int:
    return AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TOOL_POLICY_CHANGED).count()


def client(team, scopes) -> APIClient:
    return APIClient(HTTP_X_VETO_API_KEY=api_key_for(team, scopes=scopes))


def put(api: APIClient, data: dict):
    return api.put("/v1/policies/transfer_funds", data=json.dumps(data), content_type="application/json")


@pytest.fixture
def team():
    team = TeamFactory()
    ToolPolicyFactory(team=team, tool_name="transfer_funds", constraints=LIMIT)
    return team


@pytest.mark.parametrize("change", list(LOOSENINGS))
def test_tool_policy_put__write_key_loosens__403_loosening_not_allowed_and_nothing_changes(team, change):
    # Given a transfer_funds policy and a key with policies:write but not policies:publish
    api = client(team, WRITER)
    before = state(team)

    # When the key replaces it with a looser policy
    response = put(api, LOOSENINGS[change])

    # Then it is refused, saying what loosens and what it takes, and nothing changed
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "loosening_not_allowed"
    assert "policies:publish" in error["message"] and error["details"]["reasons"]
    assert state(team) == before
    assert changes(team) == 0


@pytest.mark.parametrize("change", list(LOOSENINGS))
def test_tool_policy_put__publish_key_loosens__applied_and_audited(team, change):
    # Given a key that may deactivate policies (policies:write and policies:publish)
    api = client(team, (*WRITER, "policies:publish"))

    # When it loosens the policy
    response = put(api, LOOSENINGS[change])

    # Then the change is made, as deactivating would be
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    assert changes(team) == 1


@pytest.mark.parametrize("change", list(TIGHTENINGS))
def test_tool_policy_put__write_key_tightens_or_keeps__applied(team, change):
    # Given a key with policies:write only
    api = client(team, WRITER)

    # When it replaces the policy with one at least as strict
    response = put(api, TIGHTENINGS[change])

    # Then that is its to do
    assert response.status_code == 200, response.content
    assert changes(team) == 1


def test_tool_policy_delete__write_key__403_and_the_policy_still_enforced(team):
    # Given a key with policies:write only
    api = client(team, WRITER)

    # When it deletes the policy
    response = api.delete("/v1/policies/transfer_funds")

    # Then it is refused as deactivate is, and the policy stays, unchanged and active
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "loosening_not_allowed"
    assert api.post("/v1/policies/transfer_funds/deactivate").status_code == 403
    assert state(team) == [(1, True, LIMIT)]
    assert changes(team) == 0


def test_tool_policy_delete__publish_key__204(team):
    # Given a key with policies:write and policies:publish
    api = client(team, (*WRITER, "policies:publish"))
    # When it deletes the policy, Then it is gone
    assert api.delete("/v1/policies/transfer_funds").status_code == 204
    assert not ToolPolicy.objects.filter(team=team).exists()


def test_tool_policy_create__write_key_for_an_existing_tool__409_not_a_replacement(team):
    # Given a key with policies:write only
    api = client(team, WRITER)
    before = state(team)
    # When it creates a looser policy for a tool that has one
    response = api.post(
        "/v1/policies",
        data=json.dumps({"toolName": "transfer_funds", "mode": "deterministic", "constraints": []}),
        content_type="application/json",
    )
    # Then create does not replace: 409, nothing changed
    assert response.status_code == 409
    assert state(team) == before
