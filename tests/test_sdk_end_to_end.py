"""The published SDK (veto==0.15.2), unmodified, against the live ASGI server.

Nobody here wrote this client: if it works against us, real agents will.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from veto import Veto, VetoOptions
from veto.admin import VetoAdmin, VetoAdminError
from veto.cloud.client import VetoCloudClient, VetoCloudConfig
from veto.cloud.types import ToolParameter, ToolRegistration

from approvals.models import Approval
from audit.models import DecisionRecord
from common.database import run_in_db_thread
from policies.models import RegisteredTool
from tenancy.models import Team
from tests.factories import (
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    api_key_for,
    personal_api_key_for,
    publish_rules,
)

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

DEMO_RULES = (Path(__file__).resolve().parents[1] / "policies" / "fixtures" / "demo_rules.yaml").read_text()


@dataclass
class Agent:
    team_id: uuid.UUID
    organization_id: uuid.UUID
    key: str
    base_url: str

    def client(self, key: str | None = None) -> VetoCloudClient:
        # retries=0: a failure should show at once, not after the SDK's back-off.
        return VetoCloudClient(VetoCloudConfig(api_key=key or self.key, base_url=self.base_url, retries=0))

    def admin(self, key: str | None = None) -> VetoAdmin:
        return VetoAdmin(apiKey=key or self.key, baseUrl=self.base_url)


@pytest.fixture
def agent(asgi_server) -> Agent:
    team = TeamFactory(slug=f"demo-{uuid.uuid4().hex[:8]}")
    publish_rules(team, DEMO_RULES)
    return Agent(team.id, team.organization_id, api_key_for(team), asgi_server.url)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _with_client(client: VetoCloudClient, work: Any) -> Any:
    try:
        return await work(client)
    finally:
        await client.close()


def test_sdk_register_tools__signatures_are_stored_for_the_team(agent):
    # Given two tool signatures as the SDK extracts them
    tools = [
        ToolRegistration(
            name="run_data_export",
            description="Export a dataset",
            parameters=[ToolParameter(name="bucket", type="string", required=True)],
        ),
        ToolRegistration(name="send_sms", description="Text a customer"),
    ]
    # When the SDK registers them
    result = run(_with_client(agent.client(), lambda c: c.register_tools(tools)))
    # Then the server stored both for this team
    assert result.success is True
    assert set(RegisteredTool.objects.filter(team_id=agent.team_id).values_list("name", flat=True)) == {
        "run_data_export",
        "send_sms",
    }


def test_sdk_validate__allow_deny_and_require_approval__decided_by_the_published_rules(agent):
    async def calls(client: VetoCloudClient) -> list[Any]:
        return [
            await client.validate("run_data_export", {"bucket": "internal-reports"}),
            await client.validate("run_data_export", {"bucket": "s3://public-dump"}),
            await client.validate("run_data_export", {"bucket": "internal-x", "include_pii": True}),
            await client.validate(
                "deploy_workflow", {"definition": "{}"}, {"custom": {"environment": "production"}}
            ),
        ]

    allow, deny, approval, deploy = run(_with_client(agent.client(), calls))

    assert allow.decision == "allow"
    assert deny.decision == "deny"
    assert deny.reason == "Exports restricted to internal-* S3 buckets"
    assert deny.metadata["rule_id"] == "bucket_allowlist"
    assert deny.denial is not None and deny.denial.policy_id == "bucket_allowlist"
    assert approval.decision == "require_approval"
    assert approval.metadata["rule_id"] == "block_pii_exports"
    assert deploy.decision == "require_approval"
    assert deploy.metadata["rule_id"] == "workflow_deploy_approval"

    # Every decision was recorded before its answer, the approvals with pending approvals.
    records = {str(r.id): r for r in DecisionRecord.objects.filter(team_id=agent.team_id)}
    assert {r.decision for r in records.values()} == {"allow", "deny", "require_approval"}
    assert len(records) == 4
    pending = Approval.objects.get(pk=approval.approval_id)
    assert pending.status == Approval.Status.PENDING
    assert pending.approver_groups == ["compliance", "privacy-office"]
    assert 86390 < (pending.expires_at - pending.created_at).total_seconds() <= 86400
    assert records[approval.metadata["decision_id"]].approval_id == pending.id


def test_sdk_log_decision__client_side_decision_is_recorded_like_any_other(agent):
    async def log_and_wait(client: VetoCloudClient) -> DecisionRecord | None:
        client.log_decision(
            {
                "tool_name": "send_sms",
                "arguments": {"to": "+15550100"},
                "decision": "deny",
                "reason": "number not allowed",
                "mode": "deterministic",
                "latency_ms": 0.4,
                "source": "client",
                "context": {"session_id": "s-1"},
            }
        )
        for _ in range(100):  # the SDK fires and forgets; wait for the row
            record = await run_in_db_thread(
                lambda: DecisionRecord.objects.filter(team_id=agent.team_id, source="client").first()
            )
            if record is not None:
                return record
            await asyncio.sleep(0.05)
        return None

    record = run(_with_client(agent.client(), log_and_wait))
    assert record is not None
    assert (record.tool_name, record.decision, record.reason) == ("send_sms", "deny", "number not allowed")
    assert record.context == {"session_id": "s-1"}


def test_sdk_validate__wrong_key__fails_closed_and_records_nothing(agent):
    result = run(
        _with_client(
            agent.client(key="vk_this-key-does-not-exist-0000000000000"), lambda c: c.validate("send_sms", {})
        )
    )
    assert result.decision == "deny"
    assert result.metadata == {"api_error": True}
    assert "401" in (result.reason or "")
    assert not DecisionRecord.objects.filter(team_id=agent.team_id).exists()


@dataclass
class ExportTool:
    """A tool in the shape veto.wrap() expects (LangChain style: .name and async .func(dict))."""

    name: str = "run_data_export"
    description: str = "Export a customer dataset"
    ran_with: list[dict[str, Any]] | None = None

    async def func(self, arguments: dict[str, Any]) -> str:
        assert self.ran_with is not None
        self.ran_with.append(arguments)
        return "exported"


async def _resolve_pending_approval(agent: Agent, action: str, resolved_by: str, personal_key: str) -> str:
    """The human's decision, through the approvals API as VetoAdmin sends it, with their own key."""
    async with agent.admin(personal_key) as admin:
        for _ in range(200):
            pending = await admin.list_pending_approvals()
            if pending:
                await admin.resolve_approval(pending[0].id, action, resolved_by)
                return pending[0].id
            await asyncio.sleep(0.05)
    raise AssertionError("the SDK never raised an approval")


@pytest.mark.parametrize(
    ("action", "resolution", "tool_runs"), [("approve", "approved", True), ("deny", "denied", False)]
)
def test_sdk_cloud_mode__wrapped_tool_waits_for_the_human_decision(agent, action, resolution, tool_runs):
    # Given an approver in the group the PII rule names, a member of the team with a personal key
    alice = UserFactory(username="alice")
    ApproverGroupFactory(team_id=agent.team_id, slug="compliance").members.add(alice)
    alice_key = personal_api_key_for(alice, Team.objects.get(pk=agent.team_id))

    async def scenario() -> tuple[Any, list[dict[str, Any]], str]:
        veto = await Veto.init(
            VetoOptions(
                api_key=agent.key,
                base_url=agent.base_url,
                approval_poll_interval=0.1,
                approval_timeout=20,
                log_level="silent",
            )
        )
        tool = ExportTool(ran_with=[])
        wrapped = veto.wrap([tool])[0]
        try:
            call = asyncio.ensure_future(wrapped.func({"bucket": "internal-reports", "include_pii": True}))
            approval_id = await _resolve_pending_approval(agent, action, "alice", alice_key)
            try:
                outcome: Any = await call
            except Exception as exc:  # noqa: BLE001 - the SDK raises ToolCallDeniedError on deny
                outcome = exc
            return outcome, tool.ran_with or [], approval_id
        finally:
            await veto.close()

    outcome, ran_with, approval_id = run(scenario())
    if tool_runs:
        assert outcome == "exported"
        assert ran_with == [{"bucket": "internal-reports", "include_pii": True}]
    else:
        assert type(outcome).__name__ == "ToolCallDeniedError"
        assert ran_with == []
    approval = Approval.objects.get(pk=approval_id)
    assert (approval.status, approval.resolved_by) == (resolution, "alice")


def test_sdk_admin__organizations_projects_and_api_keys(agent):
    async def scenario() -> dict[str, Any]:
        async with agent.admin() as admin:
            organizations = (await admin.list_organizations()).data
            acme = await admin.create_organization("Acme Agents")
            project = await admin.create_project(acme.id, "prod agents")
            projects = (await admin.list_projects(acme.id)).data
            created = await admin.create_api_key(project.id, "ci")
            keys_before = await admin.list_api_keys()
            await admin.revoke_api_key(created.id)
            keys_after = await admin.list_api_keys()
        # The new project's first key works at once (no rules yet: allow) ...
        new_project = agent.client(key=project.apiKey)
        fresh = await new_project.validate("anything", {"x": 1})
        await new_project.close()
        # ... and the revoked one fails closed.
        revoked = agent.client(key=created.key)
        refused = await revoked.validate("anything", {})
        await revoked.close()
        return locals()

    found = run(scenario())
    assert [o.id for o in found["organizations"]] == [str(agent.organization_id)]
    assert found["acme"].slug == "acme-agents"
    assert found["project"].organizationId == found["acme"].id
    assert found["project"].apiKey.startswith("vk_")
    assert [p.id for p in found["projects"]] == [found["project"].id]
    assert found["created"].key.startswith(found["created"].keyPrefix)
    by_id_before = {k.id: k for k in found["keys_before"]}
    assert by_id_before[found["created"].id].isRevoked is False
    assert {k.id: k for k in found["keys_after"]}[found["created"].id].isRevoked is True
    assert found["fresh"].decision == "allow"
    assert DecisionRecord.objects.filter(team_id=found["project"].id, tool_name="anything").count() == 1
    assert found["refused"].decision == "deny" and found["refused"].metadata == {"api_error": True}


def test_sdk_admin__decisions_list_filter_stats_and_detail(agent):
    async def scenario() -> dict[str, Any]:
        client = agent.client()
        for bucket in ("internal-a", "internal-b", "s3://x"):
            await client.validate("run_data_export", {"bucket": bucket})
        await client.close()
        async with agent.admin() as admin:
            everything = await admin.list_decisions({"limit": 2})
            denied = await admin.list_decisions({"decision": "deny", "toolName": "run_data_export"})
            stats = await admin.get_decision_stats()
            one = await admin.get_decision(denied.data[0].id)
        return locals()

    found = run(scenario())
    assert found["everything"].pagination.total == 3
    assert found["everything"].pagination.hasMore is True
    assert len(found["everything"].data) == 2
    assert [d.decision for d in found["denied"].data] == ["deny"]
    assert found["stats"].model_dump() == {"total": 3, "allowed": 2, "denied": 1, "requireApproval": 0}
    assert found["one"].toolName == "run_data_export"
    assert found["one"].arguments == {"bucket": "s3://x"}


def test_sdk_admin__another_teams_objects__are_not_found(agent, asgi_server):
    # Given a decision and an approval of the agent's team
    async def raise_approval(client: VetoCloudClient) -> Any:
        return await client.validate("run_data_export", {"include_pii": True, "bucket": "internal-x"})

    answer = run(_with_client(agent.client(), raise_approval))
    # When another team's key asks for them
    stranger = TeamFactory()
    other = Agent(stranger.id, stranger.organization_id, api_key_for(stranger), asgi_server.url)

    async def peek() -> list[int]:
        statuses = []
        async with other.admin() as admin:
            for call in (
                admin.get_decision(answer.metadata["decision_id"]),
                admin.get_approval(answer.approval_id),
            ):
                try:
                    await call
                    statuses.append(200)
                except VetoAdminError as exc:
                    statuses.append(exc.status_code)
        return statuses

    # Then both are 404 (not 403: ids are not a side channel)
    assert run(peek()) == [404, 404]
