"""Resolving approvals through the API takes a person: a team's key is refused (403
``personal_key_required``, kept in the trail); a personal key resolves as its owner and nobody
else. Against the live ASGI server, with the published SDK's VetoAdmin where it applies."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from veto.admin import VetoAdmin, VetoAdminError

from approvals.models import ApprovalEvent
from audit.models import AuditEvent, DecisionRecord
from tenancy.models import ApiKey, Membership
from tests.factories import (
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    api_key_for,
    personal_api_key_for,
)

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team():
    team = TeamFactory()
    group = ApproverGroupFactory(team=team, slug="compliance")
    alice = UserFactory(username="alice")
    group.members.add(alice, UserFactory(username="bob"))
    Membership.objects.create(user=alice, team=team)
    Membership.objects.create(user=UserFactory(username="mallory"), team=team)
    return team


def resolve(server, approval_id: Any, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/approvals/{approval_id}/resolve",
        json={"action": "approve", **body},
        headers={"X-Veto-API-Key": key},
        timeout=10,
    )


def test_resolve__team_key__403_personal_key_required_and_the_refusal_in_the_trail(asgi_server, team):
    # Given a pending approval and the team's key (all scopes), naming an eligible approver
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = api_key_for(team, name="agent key")

    # When the team's key resolves it as alice
    response = resolve(asgi_server, approval.id, key, resolvedBy="alice")

    # Then it is refused as no person, the approval stays pending, and the trail names the key
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "personal_key_required"
    approval.refresh_from_db()
    assert (approval.status, approval.resolved_by) == ("pending", "")
    [event] = approval.events.all()
    assert (event.action, event.actor_user, event.channel) == (ApprovalEvent.Action.REFUSED, None, "api")
    assert event.actor_name.startswith("API key agent key (vk_")
    assert AuditEvent.objects.filter(team_id=team.id, actor_name=event.actor_name).exists()


@pytest.mark.parametrize("resolved_by", [None, "alice", "ALICE", "alice@example.invalid"])
def test_resolve__personal_key__resolves_as_its_user(asgi_server, team, resolved_by):
    # Given alice's personal key
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = personal_api_key_for(UserFactory(username="alice"), team)
    body = {} if resolved_by is None else {"resolvedBy": resolved_by}

    # When she approves, naming herself (by username or e-mail) or nobody
    response = resolve(asgi_server, approval.id, key, **body)

    # Then it is approved by alice, and the trail says so
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["resolvedBy"]) == ("approved", "alice")
    assert list(approval.events.values_list("action", "actor_user__username")) == [
        ("approve", "alice"),
        ("approved", "alice"),
    ]


def test_resolve__personal_key_naming_someone_else__403_and_nothing_decided(asgi_server, team):
    # Given alice's personal key
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = personal_api_key_for(UserFactory(username="alice"), team)

    # When it claims bob resolves
    response = resolve(asgi_server, approval.id, key, resolvedBy="bob")

    # Then it is refused (alice's attempt is in the trail) and the approval waits on
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "resolved_by_mismatch"
    assert "bob" in response.json()["error"]["message"]
    approval.refresh_from_db()
    assert approval.status == "pending"
    assert list(approval.events.values_list("action", "actor_name")) == [("refused", "alice")]


def test_resolve__personal_key_of_an_ineligible_member__403_not_an_approver(asgi_server, team):
    # Given mallory, a member in no approver group, with a key that holds approvals:resolve
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = personal_api_key_for(UserFactory(username="mallory"), team)

    response = resolve(asgi_server, approval.id, key)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_an_approver"
    approval.refresh_from_db()
    assert approval.status == "pending"
    assert list(approval.events.values_list("action", "actor_name")) == [("refused", "mallory")]


def test_resolve__owner_removed_from_the_team__key_invalid_at_once(asgi_server, team):
    # Given alice's key, which the live server has already seen (and cached)
    alice = UserFactory(username="alice")
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = personal_api_key_for(alice, team)
    pending = httpx.get(
        f"{asgi_server.url}/v1/approvals/pending", headers={"X-Veto-API-Key": key}, timeout=10
    )
    assert pending.status_code == 200

    # When her membership is removed (in another process than the server's)
    Membership.objects.filter(user=alice, team=team).delete()

    # Then the key no longer resolves, although the server's key cache may still hold it
    response = resolve(asgi_server, approval.id, key)
    assert response.status_code == 401
    approval.refresh_from_db()
    assert approval.status == "pending"


def test_resolve__owner_deactivated__key_invalid_at_once(asgi_server, team):
    alice = UserFactory(username="alice")
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = personal_api_key_for(alice, team)
    alice.is_active = False
    alice.save()

    response = resolve(asgi_server, approval.id, key)

    assert response.status_code == 401
    approval.refresh_from_db()
    assert approval.status == "pending"


def test_batch_resolve__team_key__403_and_every_approval_found_keeps_the_refusal(asgi_server, team):
    # Given two pending approvals and the team's key
    first, second = (ApprovalFactory(team=team, approver_groups=["compliance"]) for _ in range(2))
    key = api_key_for(team)

    # When it batch-resolves them as alice and bob (and an id that does not exist)
    response = httpx.post(
        f"{asgi_server.url}/v1/approvals/batch-resolve",
        json={
            "approvals": [
                {"id": str(first.id), "action": "approve", "resolvedBy": "alice"},
                {"id": str(second.id), "action": "deny", "resolvedBy": "bob"},
                {"id": str(uuid.uuid4()), "action": "approve", "resolvedBy": "bob"},
            ]
        },
        headers={"X-Veto-API-Key": key},
        timeout=10,
    )

    # Then the batch is refused, nothing is decided, and each trail keeps the refusal
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "personal_key_required"
    for approval in (first, second):
        approval.refresh_from_db()
        assert approval.status == "pending"
        assert list(approval.events.values_list("action", flat=True)) == ["refused"]


def test_batch_resolve__personal_key__each_item_as_its_owner_only(asgi_server, team):
    # Given alice's personal key and three pending approvals
    first, second, third = (ApprovalFactory(team=team, approver_groups=["compliance"]) for _ in range(3))
    key = personal_api_key_for(UserFactory(username="alice"), team)

    async def batch() -> Any:
        async with VetoAdmin(apiKey=key, baseUrl=asgi_server.url) as admin:
            return await admin.batch_resolve_approvals(
                [
                    {"id": str(first.id), "action": "approve", "resolvedBy": "alice"},
                    {"id": str(second.id), "action": "deny", "resolvedBy": "bob"},  # not her
                    {"id": str(third.id), "action": "deny", "resolvedBy": "alice"},
                ]
            )

    # When the SDK batch-resolves, one item naming bob
    result = asyncio.run(batch())

    # Then her own items are decided as her, and the one naming bob is refused alone
    assert [(r.status, r.error is None) for r in result.data] == [
        ("approved", True),
        ("error", False),
        ("denied", True),
    ]
    assert "not this key's owner" in result.data[1].error
    second.refresh_from_db()
    assert second.status == "pending"
    third.refresh_from_db()
    assert third.resolved_by == "alice"


def test_sdk_resolve_approval__team_key__veto_admin_error_403(asgi_server, team):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = api_key_for(team)

    async def scenario() -> Any:
        async with VetoAdmin(apiKey=key, baseUrl=asgi_server.url) as admin:
            return await admin.resolve_approval(str(approval.id), "approve", "alice")

    with pytest.raises(VetoAdminError) as refused:
        asyncio.run(scenario())

    assert refused.value.status_code == 403
    assert "personal API key" in str(refused.value)


def validate(server, key: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/tools/validate",
        json={"tool_name": "anything", "arguments": {}},
        headers={"X-Veto-API-Key": key},
        timeout=10,
    )


def test_gateway__personal_key__validates_and_the_decision_names_the_key(asgi_server, team):
    # Given alice's personal key with the runtime scope
    key = personal_api_key_for(
        UserFactory(username="alice"), team, scopes=("runtime", "decisions:read", "approvals:resolve")
    )
    # When an agent validates with it (the gateway's fast path)
    response = validate(asgi_server, key)
    # Then it is decided and recorded under her key
    assert response.status_code == 200, response.text
    assert (
        DecisionRecord.objects.get(team_id=team.id).api_key_id
        == ApiKey.objects.get(user__username="alice").id
    )


def test_gateway__owner_removed_from_the_team__key_refused_within_the_key_cache_bound(asgi_server, team):
    # Given alice's key, cached by the live server's gateway
    alice = UserFactory(username="alice")
    key = personal_api_key_for(alice, team, scopes=("runtime",))
    assert validate(asgi_server, key).status_code == 200
    # When her membership ends (in another process than the server's)
    Membership.objects.filter(user=alice, team=team).delete()
    removed = time.monotonic()
    # Then the gateway refuses her key within the documented bound (VETO_API_KEY_CACHE_SECONDS, 5 s)
    while validate(asgi_server, key).status_code != 401:
        assert time.monotonic() - removed < 5 + 1.5, "the removed member's key still works"
        time.sleep(0.2)
