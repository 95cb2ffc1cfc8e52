"""GET /v1/approvals/{id}/trail against the live server: how an approval got to its state, in
order (raised, refusals, votes, escalation, outcome), as the gateway's GET /v1/approvals/{id}
(the current state only) cannot say. A real HTTP client: the published SDK has no trail call."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from approvals.models import Approval
from tenancy.models import ApiKey
from tests.factories import (
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    api_key_for,
    personal_api_key_for,
    publish_rules,
)

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = """\
rules:
  - name: pii_export_review
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
    approvers: [compliance]
    min_approvals: 2
    timeout: 10m
    escalate_to: [leads]
    message: PII exports need two reviewers
"""
RESOLVER = ("decisions:read", "approvals:resolve")


def get(url: str, key: str) -> httpx.Response:
    return httpx.get(url, headers={"X-Veto-API-Key": key}, timeout=30)


def resolve(server_url: str, approval_id: str, key: str, action: str, comment: str = "") -> httpx.Response:
    return httpx.post(
        f"{server_url}/v1/approvals/{approval_id}/resolve",
        json={"action": action, "comment": comment},
        headers={"X-Veto-API-Key": key},
        timeout=30,
    )


def test_trail__raised_refused_voted_escalated_approved__in_order_with_who_and_why(asgi_server):
    # Given a rule needing two approvals from compliance, handed to leads at its deadline
    team = TeamFactory()
    publish_rules(team, RULES)
    alice, lena, mallory = (UserFactory(username=name) for name in ("alice", "lena", "mallory"))
    ApproverGroupFactory(team=team, slug="compliance").members.add(alice)
    ApproverGroupFactory(team=team, slug="leads").members.add(lena)
    keys = {
        user.username: personal_api_key_for(user, team, scopes=RESOLVER) for user in (alice, lena, mallory)
    }
    agent = api_key_for(team, name="export agent", scopes=("runtime",))
    reader = api_key_for(team, name="auditor", scopes=("decisions:read",))

    # When the agent's call raises the approval
    validated = httpx.post(
        f"{asgi_server.url}/v1/tools/validate",
        json={"tool_name": "run_data_export", "arguments": {"include_pii": True}},
        headers={"X-Veto-API-Key": agent},
        timeout=30,
    )
    assert validated.status_code == 200, validated.text
    approval_id = validated.json()["approval_id"]
    # mallory, a member but no approver, tries; alice approves (one of two)
    assert resolve(asgi_server.url, approval_id, keys["mallory"], "approve").status_code == 403
    assert resolve(asgi_server.url, approval_id, keys["alice"], "approve", "fine by me").status_code == 200
    # the deadline passes with nobody else deciding (no sweep runs: the trail's read settles it)
    Approval.objects.filter(pk=approval_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    escalated = get(f"{asgi_server.url}/v1/approvals/{approval_id}/trail", reader)
    # and lena, a lead, approves: two approvals, the quorum
    assert (
        resolve(asgi_server.url, approval_id, keys["lena"], "approve", "ok for the audit").status_code == 200
    )
    response = get(f"{asgi_server.url}/v1/approvals/{approval_id}/trail", reader)

    # Then the trail tells all of it, in order, with who, through what, and why
    assert response.status_code == 200, response.text
    entries = response.json()["data"]
    assert [(e["action"], e["actor"], e["channel"]) for e in entries] == [
        ("raised", f"API key export agent ({ApiKey.objects.get(name='export agent').prefix}…)", "api"),
        ("refused", "mallory", "api"),
        ("approve", "alice", "api"),
        ("escalated", "system:timeout", "system"),
        ("approve", "lena", "api"),
        ("approved", "lena", "api"),
    ]
    comments = [e["comment"] for e in entries]
    assert comments[0] == "PII exports need two reviewers"
    assert comments[1] == "not a member of this approval's approver groups"
    assert comments[2] == "fine by me" and comments[4] == "ok for the audit"
    assert "handed to leads" in comments[3]
    assert comments[5] is None
    times = [e["createdAt"] for e in entries]
    assert times == sorted(times) and all(t.endswith("Z") for t in times)
    # the read past the deadline had already shown the escalation, and nothing after it
    assert [e["action"] for e in escalated.json()["data"]][-1] == "escalated"
    # and the current state (the gateway's) agrees with the trail's end
    state = get(f"{asgi_server.url}/v1/approvals/{approval_id}", agent).json()
    assert (state["status"], state["resolvedBy"]) == ("approved", "alice, lena")


def test_trail__unknown_other_teams_or_malformed_id__json_404(asgi_server):
    # Given a reader of one team, and an approval of another
    team = TeamFactory()
    reader = api_key_for(team, scopes=("decisions:read",))
    elsewhere = ApprovalFactory()

    for approval_id in (uuid.uuid4(), elsewhere.id, "not-a-uuid"):
        # When the reader asks for its trail
        response = get(f"{asgi_server.url}/v1/approvals/{approval_id}/trail", reader)
        # Then it does not exist for them, answered in JSON
        assert response.status_code == 404, approval_id
        assert response.json()["error"]["message"] == "approval not found"


def test_trail__key_without_decisions_read__403_missing_scope(asgi_server):
    # Given an approval and a key of its team holding every scope but decisions:read
    approval = ApprovalFactory()
    scopes = tuple(s for s in ApiKey.Scope.values if s != ApiKey.Scope.DECISIONS_READ)
    key = api_key_for(approval.team, scopes=scopes)

    # When it asks for the trail
    response = get(f"{asgi_server.url}/v1/approvals/{approval.id}/trail", key)

    # Then it is refused for the scope, as the other approval reads of this API are
    assert response.status_code == 403
    assert response.json()["error"]["details"]["missing_scopes"] == ["decisions:read"]


def test_trail__in_the_openapi_schema__with_its_entries(asgi_server):
    # Given the served OpenAPI document
    document = httpx.get(f"{asgi_server.url}/api/schema/", params={"format": "json"}, timeout=30).json()

    # Then the trail is there, authenticated, its id a UUID, its entries described
    operation = document["paths"]["/v1/approvals/{approval_id}/trail"]["get"]
    assert operation["operationId"] == "v1_approvals_trail_retrieve"
    assert operation["security"]
    [parameter] = [p for p in operation["parameters"] if p["in"] == "path"]
    assert parameter["schema"] == {"type": "string", "format": "uuid"}
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    entry_ref = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["data"]["items"][
        "$ref"
    ]
    entry = document["components"]["schemas"][entry_ref.rsplit("/", 1)[1]]
    assert set(entry["properties"]) == {"action", "actor", "comment", "channel", "createdAt"}
