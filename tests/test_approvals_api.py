"""The approvals API against the live server: the published SDK's VetoAdmin, long-polls, and an
approval that times out under a real Celery worker and beat."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from veto import Veto, VetoOptions
from veto.admin import VetoAdmin, VetoAdminError

from approvals.models import Approval, ApprovalEvent
from conftest import start_asgi_server, start_celery_worker_and_beat, stop_processes, subprocess_environment
from tenancy.models import ApiKey, Membership
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


@pytest.fixture
def team():
    team = TeamFactory()
    group = ApproverGroupFactory(team=team, slug="compliance")
    group.members.add(UserFactory(username="alice"), UserFactory(username="bob"))
    Membership.objects.create(user=UserFactory(username="mallory"), team=team)
    return team


def key_of(team, username: str) -> str:
    """``username``'s personal key (the only kind that resolves approvals, as its owner)."""
    return personal_api_key_for(
        UserFactory(username=username), team, scopes=("runtime", "decisions:read", "approvals:resolve")
    )


def admin_for(url: str, key: str) -> VetoAdmin:
    return VetoAdmin(apiKey=key, baseUrl=url)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_admin__list_get_resolve_and_batch_resolve__as_veto_admin_calls_them(asgi_server, team):
    first, second, third = (ApprovalFactory(team=team, approver_groups=["compliance"]) for _ in range(3))
    ApprovalFactory(approver_groups=["compliance"])  # another team's: never listed
    alice, bob, mallory = key_of(team, "alice"), key_of(team, "bob"), key_of(team, "mallory")

    async def scenario() -> dict[str, Any]:
        async with admin_for(asgi_server.url, alice) as admin:
            pending = await admin.list_pending_approvals()
            fetched = await admin.get_approval(str(first.id))
            approved = await admin.resolve_approval(str(first.id), "approve", "alice")
        async with admin_for(asgi_server.url, bob) as admin:
            batch = await admin.batch_resolve_approvals(
                [
                    {"id": str(second.id), "action": "deny", "resolvedBy": "bob"},
                    {"id": str(first.id), "action": "deny", "resolvedBy": "bob"},  # already approved
                    {"id": str(uuid.uuid4()), "action": "approve", "resolvedBy": "bob"},
                ]
            )
            everything = await admin.list_approvals()
            denied = await admin.list_approvals({"status": "denied"})
        async with admin_for(asgi_server.url, mallory) as admin:
            not_an_approver = await admin.batch_resolve_approvals(
                [{"id": str(third.id), "action": "approve", "resolvedBy": "mallory"}]
            )
        return locals()

    result = run(scenario())

    assert [a.id for a in result["pending"]] == [str(first.id), str(second.id), str(third.id)]
    assert (result["fetched"].toolName, result["fetched"].status) == ("run_data_export", "pending")
    assert (result["approved"].status, result["approved"].resolvedBy) == ("approved", "alice")
    assert [(r.status, r.error is None) for r in result["batch"].data] == [
        ("denied", True),
        ("error", False),
        ("not_found", False),
    ]
    assert [(r.status, r.error is None) for r in result["not_an_approver"].data] == [("error", False)]
    assert "already approved" in result["batch"].data[1].error
    assert len(result["everything"]) == 3
    assert [a.id for a in result["denied"]] == [str(second.id)]
    third.refresh_from_db()
    assert third.status == "pending"


@pytest.mark.parametrize(
    ("who", "body", "status", "fragment"),
    [
        ("mallory", {"action": "approve", "resolvedBy": "mallory"}, 403, "may not decide"),
        ("alice", {"action": "approve", "resolvedBy": "nobody-here"}, 403, "not this key's owner"),
        ("alice", {"action": "maybe", "resolvedBy": "alice"}, 400, "action"),
        ("alice", {"action": "approve", "resolvedBy": ""}, 400, "resolvedBy"),
        ("alice", {"action": "approve", "resolvedBy": None}, 400, "resolvedBy"),
    ],
)
def test_resolve__refused_requests__clear_4xx_and_the_approval_stays_pending(
    asgi_server, team, who, body, status, fragment
):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])

    response = httpx.post(
        f"{asgi_server.url}/v1/approvals/{approval.id}/resolve",
        json=body,
        headers={"X-Veto-API-Key": key_of(team, who)},
        timeout=10,
    )

    assert response.status_code == status
    assert fragment in response.text
    approval.refresh_from_db()
    assert approval.status == "pending"


def test_resolve__key_without_the_resolve_scope__403(asgi_server, team):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    runtime_only = personal_api_key_for(
        UserFactory(username="alice"), team, scopes=(ApiKey.Scope.RUNTIME, ApiKey.Scope.DECISIONS_READ)
    )

    with pytest.raises(VetoAdminError) as refused:
        run(admin_for(asgi_server.url, runtime_only).resolve_approval(str(approval.id), "approve", "alice"))

    assert refused.value.status_code == 403
    assert "approvals:resolve" in str(refused.value)


def test_resolve__refusal__is_kept_in_the_trail(asgi_server, team):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])

    httpx.post(
        f"{asgi_server.url}/v1/approvals/{approval.id}/resolve",
        json={"action": "approve", "resolvedBy": "mallory"},
        headers={"X-Veto-API-Key": key_of(team, "mallory")},
        timeout=10,
    )

    assert list(approval.events.values_list("action", "actor_name", "channel")) == [
        (ApprovalEvent.Action.REFUSED, "mallory", "api")
    ]


def test_long_poll__answers_as_soon_as_the_approval_is_resolved(asgi_server, team):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = api_key_for(team)
    bob = key_of(team, "bob")
    resolved_at: list[float] = []

    def resolve_soon() -> None:
        time.sleep(0.5)
        resolved_at.append(time.monotonic())
        httpx.post(
            f"{asgi_server.url}/v1/approvals/{approval.id}/resolve",
            json={"action": "approve", "resolvedBy": "bob"},
            headers={"X-Veto-API-Key": bob},
            timeout=10,
        ).raise_for_status()

    resolver = threading.Thread(target=resolve_soon)
    resolver.start()
    answer = httpx.get(
        f"{asgi_server.url}/v1/approvals/{approval.id}?wait=20", headers={"X-Veto-API-Key": key}, timeout=30
    )
    answered_at = time.monotonic()
    resolver.join()

    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["resolvedBy"]) == ("approved", "bob")
    assert answered_at - resolved_at[0] < 1.0


def test_long_poll__nothing_happens__answers_pending_after_the_wait(asgi_server, team):
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    started = time.monotonic()

    answer = httpx.get(
        f"{asgi_server.url}/v1/approvals/{approval.id}?wait=0.5",
        headers={"X-Veto-API-Key": api_key_for(team)},
        timeout=10,
    )

    assert (answer.status_code, answer.json()["status"]) == (200, "pending")
    assert 0.5 <= time.monotonic() - started < 3


@pytest.mark.parametrize("wait", ["abc", "-1", "61"])
def test_long_poll__bad_wait__400_naming_it(asgi_server, team, wait):
    approval = ApprovalFactory(team=team)

    answer = httpx.get(
        f"{asgi_server.url}/v1/approvals/{approval.id}?wait={wait}",
        headers={"X-Veto-API-Key": api_key_for(team)},
        timeout=10,
    )

    assert answer.status_code == 400
    assert "wait" in answer.json()["error"]["message"]


def test_sdk__approval_times_out_under_celery__the_sdk_denies(team, tmp_path):
    # Given a rule with a 2-second approval deadline, a web server, and a real worker and beat
    publish_rules(
        team,
        "rules:\n  - {name: pii, tool: run_data_export, when: 'args.include_pii', action: require_approval,"
        " approvers: [compliance], timeout: 2s}\n",
    )
    env = subprocess_environment(VETO_APPROVAL_SWEEP_SECONDS="0.5", VETO_VAR_DIR=str(tmp_path))
    web, server = start_asgi_server(tmp_path / "web.log", VETO_APPROVAL_SWEEP_SECONDS="0.5")
    celery = start_celery_worker_and_beat(tmp_path, env)
    key = api_key_for(team)
    ran: list[dict[str, Any]] = []

    class ExportTool:
        name = "run_data_export"
        description = "Export a customer dataset"

        async def func(self, arguments: dict[str, Any]) -> str:
            ran.append(arguments)
            return "exported"

    async def scenario() -> Any:
        veto = await Veto.init(
            VetoOptions(
                api_key=key,
                base_url=server.url,
                approval_poll_interval=0.2,
                approval_timeout=60,
                log_level="silent",
            )
        )
        try:
            wrapped = veto.wrap([ExportTool()])[0]
            return await wrapped.func({"include_pii": True})
        except Exception as exc:  # noqa: BLE001 - the SDK raises ToolCallDeniedError
            return exc
        finally:
            await veto.close()

    started = time.monotonic()
    try:
        # When nobody decides
        outcome = run(scenario())
    finally:
        stop_processes(web, *celery)

    # Then the sweep expires it and the SDK denies, without running the tool
    assert type(outcome).__name__ == "ToolCallDeniedError", outcome
    assert ran == []
    assert time.monotonic() - started < 30
    approval = Approval.objects.get(team=team)
    assert (approval.status, approval.resolved_by) == ("expired", "system:timeout")


def test_resolve__approve_and_deny_through_the_api_at_once__one_wins_the_rest_409(asgi_server, team):
    # Given one approval and six concurrent resolves from two eligible people
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    keys = {"alice": key_of(team, "alice"), "bob": key_of(team, "bob")}
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def resolve(action: str, who: str) -> None:
        barrier.wait()
        response = httpx.post(
            f"{asgi_server.url}/v1/approvals/{approval.id}/resolve",
            json={"action": action, "resolvedBy": who},
            headers={"X-Veto-API-Key": keys[who]},
            timeout=30,
        )
        statuses.append(response.status_code)

    threads = [
        threading.Thread(target=resolve, args=(action, who))
        for action, who in [("approve", "alice"), ("deny", "bob")] * 3
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # Then exactly one decided, every other answer is 409, and the trail holds one outcome
    assert sorted(statuses) == [200, 409, 409, 409, 409, 409]
    approval.refresh_from_db()
    assert approval.status in ("approved", "denied")
    outcomes = approval.events.filter(action__in=["approved", "deny"]).count()
    assert outcomes == 1
