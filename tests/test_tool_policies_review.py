"""On a team that requires policy review, an API key may not create, change, (de)activate or
delete a per-tool policy (they take effect at once): 403 ``human_review_required``, nothing
written, nothing audited. Teams without review manage them through the API as before."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from policies.models import ToolPolicy
from tests.factories import TeamFactory, ToolPolicyFactory, api_key_for

pytestmark = pytest.mark.django_db

LIMIT = [{"argumentName": "amount", "enabled": True, "maximum": 1000}]
RAISED = {
    "toolName": "transfer_funds",
    "mode": "deterministic",
    "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 1_000_000}],
}
# (method, path, body, the status a team without review answers)
WRITES = [
    ("post", "/v1/policies", {**RAISED, "toolName": "send_sms"}, 201),
    ("put", "/v1/policies/transfer_funds", RAISED, 200),
    ("delete", "/v1/policies/transfer_funds", None, 204),
    ("post", "/v1/policies/transfer_funds/deactivate", None, 200),
    ("post", "/v1/policies/transfer_funds/activate", None, 200),
]
WRITE_IDS = ["create", "replace", "delete", "deactivate", "activate"]


def send(api: APIClient, method: str, path: str, body: object | None):
    return getattr(api, method)(
        path, data=json.dumps(body) if body is not None else "", content_type="application/json"
    )


def snapshot(team) -> list[tuple]:
    return list(
        ToolPolicy.objects.filter(team=team)
        .order_by("tool_name")
        .values_list("tool_name", "version", "is_active", "constraints", "updated_by_name", "updated_at")
    )


def policy_changes(team) -> int:
    return AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TOOL_POLICY_CHANGED).count()


@pytest.mark.parametrize(("method", "path", "body", "_"), WRITES, ids=WRITE_IDS)
def test_tool_policy_api_write__team_requires_review__403_human_review_required_and_nothing_changes(
    method, path, body, _, django_capture_on_commit_callbacks
):
    # Given a review team with a transfer_funds limit (an inactive one, so activate would change it)
    team = TeamFactory(require_policy_review=True)
    ToolPolicyFactory(
        team=team, tool_name="transfer_funds", constraints=LIMIT, is_active=not path.endswith("/activate")
    )
    api = APIClient(HTTP_X_VETO_API_KEY=api_key_for(team))
    before = snapshot(team)

    # When an API key with every scope writes it
    with django_capture_on_commit_callbacks() as after_commit:
        response = send(api, method, path, body)

    # Then it is refused, naming the tool and who does it instead, and nothing changed
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "human_review_required"
    assert "policies page" in error["message"]
    assert ("send_sms" if method == "post" and path == "/v1/policies" else "transfer_funds") in error[
        "message"
    ]
    assert snapshot(team) == before
    assert policy_changes(team) == 0
    assert after_commit == []  # no cache drop, no change event


@pytest.mark.parametrize(("method", "path", "body", "expected"), WRITES, ids=WRITE_IDS)
def test_tool_policy_api_write__team_without_review__applied_and_audited(method, path, body, expected):
    # Given a team that does not require review, with a transfer_funds limit
    team = TeamFactory(require_policy_review=False)
    ToolPolicyFactory(
        team=team, tool_name="transfer_funds", constraints=LIMIT, is_active=not path.endswith("/activate")
    )
    api = APIClient(HTTP_X_VETO_API_KEY=api_key_for(team))
    before = snapshot(team)

    # When an API key writes it
    response = send(api, method, path, body)

    # Then the change is made and chained in the team's trail
    assert response.status_code == expected, response.content
    assert snapshot(team) != before
    assert policy_changes(team) == 1
