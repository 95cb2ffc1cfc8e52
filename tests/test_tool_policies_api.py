"""Per-tool policies through the published SDK (veto==0.15.2) against the live ASGI server:
``VetoAdmin`` manages them, ``VetoCloudClient.validate`` is refused by their constraints, and
the SDK's own ``PolicyCache`` decides locally only what nothing but the constraints governs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from veto import Veto, VetoOptions
from veto.admin import VetoAdmin, VetoAdminError
from veto.cloud.client import VetoCloudClient, VetoCloudConfig
from veto.cloud.policy_cache import PolicyCache

from audit.models import DecisionRecord
from common.database import run_in_db_thread
from policies.models import ToolPolicy
from tenancy.models import Team
from tests.factories import TeamFactory, api_key_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

TRANSFER = {
    "toolName": "transfer_funds",
    "mode": "deterministic",
    "constraints": [
        {"argumentName": "amount", "enabled": True, "greaterThan": 0, "maximum": 1000},
        {"argumentName": "currency", "enabled": True, "required": True, "enum": ["EUR", "USD"]},
    ],
}
SMS_RULES = """\
rules:
  - name: no_premium_numbers
    tool: send_sms
    when: "args.to.startsWith('+1900')"
    action: deny
    message: Premium-rate numbers are blocked
"""


@dataclass
class Project:
    id: uuid.UUID
    key: str
    base_url: str

    def admin(self, key: str | None = None) -> VetoAdmin:
        return VetoAdmin(apiKey=key or self.key, baseUrl=self.base_url)

    def client(self) -> VetoCloudClient:
        return VetoCloudClient(VetoCloudConfig(api_key=self.key, base_url=self.base_url, retries=0))


@pytest.fixture
def team(asgi_server) -> Project:
    made = TeamFactory()
    return Project(made.id, api_key_for(made), asgi_server.url)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def status_of(call: Any) -> int:
    try:
        await call
    except VetoAdminError as exc:
        return exc.status_code
    return 200


def test_sdk_admin_policy__create_get_list_update_delete__versions_and_shapes(team):
    async def scenario() -> dict[str, Any]:
        async with team.admin() as admin:
            created = await admin.create_policy(TRANSFER)
            fetched = await admin.get_policy("transfer_funds")
            listed = await admin.list_policies()
            only_inactive = await admin.list_policies({"isActive": "false"})
            by_tool = await admin.list_policies({"toolName": "transfer_funds", "projectId": str(team.id)})
            updated = await admin.update_policy(
                "transfer_funds",
                {
                    "mode": "deterministic",
                    "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 50}],
                },
            )
            # A fetched policy sent back as it came (the SDK's own model, dumped) is accepted.
            round_trip = await admin.update_policy("transfer_funds", updated.model_dump())
            deleted = await admin.delete_policy("transfer_funds")
            after_delete = await status_of(admin.get_policy("transfer_funds"))
        return locals()

    found = run(scenario())
    created = found["created"]
    assert (created.toolName, created.mode, created.version, created.isActive) == (
        "transfer_funds",
        "deterministic",
        1,
        True,
    )
    assert created.projectId == str(team.id)
    assert [(c.argumentName, c.maximum, c.enum) for c in created.constraints] == [
        ("amount", 1000.0, None),
        ("currency", None, ["EUR", "USD"]),
    ]
    assert created.sessionConstraints is None  # nothing but its constraints governs this tool
    assert found["fetched"].model_dump() == created.model_dump()
    assert [p.id for p in found["listed"]] == [created.id]
    assert found["only_inactive"] == []
    assert [p.id for p in found["by_tool"]] == [created.id]
    assert found["updated"].version == 2
    assert [c.maximum for c in found["updated"].constraints] == [50.0]
    assert found["round_trip"].version == 3
    assert found["round_trip"].constraints == found["updated"].constraints
    assert found["deleted"] is None and found["after_delete"] == 404
    assert not ToolPolicy.objects.exists()


def test_sdk_admin_policy__second_policy_for_the_same_tool__409_and_the_first_unchanged(team):
    async def scenario() -> tuple[int, Any]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
            second = await status_of(admin.create_policy({**TRANSFER, "constraints": []}))
            return second, await admin.get_policy("transfer_funds")

    second, kept = run(scenario())
    assert second == 409
    assert len(kept.constraints) == 2


def test_sdk_validate__constraints_fail__deny_with_the_sdks_failed_constraints(team):
    async def scenario() -> list[Any]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
        client = team.client()
        try:
            return [
                await client.validate("transfer_funds", {"amount": 5000, "currency": "GBP"}),
                await client.validate("transfer_funds", {"amount": 10}),
                await client.validate("transfer_funds", {"amount": 10, "currency": "EUR"}),
            ]
        finally:
            await client.close()

    too_much, missing, fine = run(scenario())
    # Then every failing constraint is listed, and the reason is the SDK's own wording
    assert too_much.decision == "deny"
    assert too_much.reason == "Argument 'amount' failed: value 5000 must be <= 1000.0"
    assert [(f.parameter, f.constraint_type, f.expected, f.actual) for f in too_much.failed_constraints] == [
        ("amount", "maximum", 1000.0, 5000),
        ("currency", "enum", ["EUR", "USD"], "GBP"),
    ]
    assert too_much.failed_constraints[1].message == 'value "GBP" is not in allowed values: EUR, USD'
    assert too_much.metadata["rule_id"] == "policy:transfer_funds"
    assert too_much.denial is not None and too_much.denial.policy_name == "transfer_funds policy v1"
    assert (missing.decision, missing.reason) == ("deny", "Required argument 'currency' is missing")
    assert (fine.decision, fine.failed_constraints) == ("allow", [])
    records = DecisionRecord.objects.filter(team_id=team.id).order_by("created_at")
    assert [(r.decision, r.rule_id, r.source) for r in records] == [
        ("deny", "policy:transfer_funds", "server"),
        ("deny", "policy:transfer_funds", "server"),
        ("allow", "", "server"),
    ]


def test_sdk_validate__constraints_are_checked_before_the_rule_set(team):
    # Given a rule set that asks for approval of every transfer, and a policy capping the amount
    publish_rules(
        Team.objects.get(pk=team.id),
        "rules:\n  - {name: four_eyes, tool: transfer_funds, action: require_approval}\n",
    )

    async def scenario() -> list[Any]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
        client = team.client()
        try:
            return [
                await client.validate("transfer_funds", {"amount": 5000, "currency": "EUR"}),
                await client.validate("transfer_funds", {"amount": 5, "currency": "EUR"}),
            ]
        finally:
            await client.close()

    refused, gated = run(scenario())
    # Then a call the constraints refuse is denied outright (no approval is raised for it) ...
    assert (refused.decision, refused.approval_id) == ("deny", None)
    # ... and a call they allow goes on to the rule set
    assert (gated.decision, gated.metadata["rule_id"]) == ("require_approval", "four_eyes")


def test_sdk_admin_policy__deactivate_and_activate__enforcement_follows_version_stays(team):
    async def scenario() -> list[Any]:
        client = team.client()
        outcomes = []
        try:
            async with team.admin() as admin:
                await admin.create_policy(TRANSFER)
                await admin.deactivate_policy("transfer_funds")
                inactive = await admin.get_policy("transfer_funds")
                outcomes.append(await client.validate("transfer_funds", {"amount": 5000, "currency": "EUR"}))
                await admin.activate_policy("transfer_funds")
                active = await admin.get_policy("transfer_funds")
                outcomes.append(await client.validate("transfer_funds", {"amount": 5000, "currency": "EUR"}))
        finally:
            await client.close()
        return [inactive, active, *outcomes]

    inactive, active, while_inactive, while_active = run(scenario())
    assert (inactive.isActive, inactive.version) == (False, 1)
    # An inactive policy must not be applied by the SDK either: the server tells it to ask.
    assert inactive.model_dump(exclude_none=True)["sessionConstraints"] == {
        "evaluatedBy": "server",
        "policyActive": False,
    }
    assert while_inactive.decision == "allow"
    assert (active.isActive, active.version, active.sessionConstraints) == (True, 1, None)
    assert while_active.decision == "deny"


def test_sdk_admin_policy__export__text_that_creates_the_same_policies_again(team):
    other_key = api_key_for(TeamFactory())

    async def scenario() -> tuple[str, str, list[Any]]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
            await admin.create_policy({"toolName": "ns/send", "mode": "deterministic", "constraints": []})
            await admin.deactivate_policy("ns/send")
            as_json = await admin.export_policies()
            as_yaml = await admin.export_policies({"format": "yaml", "isActive": "true"})
        # Import into another project, with its own key
        async with team.admin(other_key) as admin:
            for entry in json.loads(as_json)["policies"]:
                await admin.create_policy(entry)
            imported = await admin.list_policies()
        return as_json, as_yaml, imported

    as_json, as_yaml, imported = run(scenario())
    exported = json.loads(as_json)
    assert exported["projectId"] == str(team.id)
    assert [(p["toolName"], p["isActive"], p["version"]) for p in exported["policies"]] == [
        ("ns/send", False, 1),
        ("transfer_funds", True, 1),
    ]
    assert [p["toolName"] for p in yaml.safe_load(as_yaml)["policies"]] == ["transfer_funds"]
    assert sorted((p.toolName, len(p.constraints or [])) for p in imported) == [
        ("ns/send", 0),
        ("transfer_funds", 2),
    ]


def test_sdk_admin_policy__tool_name_with_a_slash__addressable_everywhere(team):
    async def scenario() -> list[Any]:
        async with team.admin() as admin:
            await admin.create_policy({**TRANSFER, "toolName": "bank/transfer"})
            fetched = await admin.get_policy("bank/transfer")
            await admin.deactivate_policy("bank/transfer")
            updated = await admin.update_policy("bank/transfer", {"mode": "deterministic", "constraints": []})
            await admin.delete_policy("bank/transfer")
            return [fetched, updated, await status_of(admin.get_policy("bank/transfer"))]

    fetched, updated, gone = run(scenario())
    assert fetched.toolName == "bank/transfer"
    assert (updated.isActive, updated.version, updated.constraints) == (False, 2, [])
    assert gone == 404


def test_sdk_admin_policy__scopes__runtime_reads_write_writes_publish_activates(team):
    team_row = Team.objects.get(pk=team.id)
    runtime_only = api_key_for(team_row, scopes=("runtime",))
    writer = api_key_for(team_row, scopes=("runtime", "policies:write"))

    async def scenario() -> list[int]:
        statuses = []
        async with team.admin(runtime_only) as admin:
            statuses.append(await status_of(admin.create_policy(TRANSFER)))
        async with team.admin(writer) as admin:
            statuses.append(await status_of(admin.create_policy(TRANSFER)))
            statuses.append(await status_of(admin.deactivate_policy("transfer_funds")))
        async with team.admin(runtime_only) as admin:
            statuses.append(await status_of(admin.get_policy("transfer_funds")))
            statuses.append(await status_of(admin.delete_policy("transfer_funds")))
        return statuses

    assert run(scenario()) == [403, 200, 403, 200, 403]
    assert ToolPolicy.objects.get().is_active is True


def test_sdk_admin_policy__another_teams_policy__404_everywhere(team):
    stranger_key = api_key_for(TeamFactory())

    async def scenario() -> list[int]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
        async with team.admin(stranger_key) as admin:
            return [
                await status_of(admin.get_policy("transfer_funds")),
                await status_of(admin.update_policy("transfer_funds", {"mode": "deterministic"})),
                await status_of(admin.activate_policy("transfer_funds")),
                await status_of(admin.delete_policy("transfer_funds")),
                await status_of(admin.list_policies({"projectId": str(team.id)})),
                len(await admin.list_policies()),
            ]

    assert run(scenario()) == [404, 404, 404, 404, 404, 0]


async def _cached(cache: PolicyCache, tool: str, timeout: float = 10.0) -> Any:
    cache.get(tool)  # a miss starts the SDK's background fetch
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        policy = cache.get(tool)
        if policy is not None:
            return policy
        await asyncio.sleep(0.05)
    return None


def test_sdk_policy_cache__only_a_tool_governed_by_constraints_alone_may_be_decided_locally(team):
    # Given a rule for send_sms, and policies for send_sms and transfer_funds
    publish_rules(Team.objects.get(pk=team.id), SMS_RULES)

    async def scenario() -> dict[str, Any]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
            sms = await admin.create_policy(
                {
                    "toolName": "send_sms",
                    "mode": "deterministic",
                    "constraints": [{"argumentName": "body", "enabled": True, "maxLength": 10}],
                }
            )
        client = team.client()
        try:
            cache = PolicyCache(client)
            transfer_policy = await _cached(cache, "transfer_funds")
            sms_policy = await _cached(cache, "send_sms")
            unknown = await _cached(cache, "no_policy_tool", timeout=1.0)
        finally:
            await client.close()
        return locals()

    found = run(scenario())
    # Then the SDK reads transfer_funds as decidable on its own, with the server's constraints ...
    transfer = found["transfer_policy"]
    assert (transfer.mode, transfer.version, transfer.has_session_constraints, transfer.has_rate_limits) == (
        "deterministic",
        1,
        False,
        False,
    )
    assert [(c.argument_name, c.maximum, c.enum, c.required) for c in transfer.constraints] == [
        ("amount", 1000.0, None, None),
        ("currency", None, ["EUR", "USD"], True),
    ]
    # ... and send_sms as needing the server, which says why
    assert found["sms_policy"].has_session_constraints is True
    marker = found["sms"].model_dump()["sessionConstraints"]
    assert marker["evaluatedBy"] == "server"
    assert marker["ruleSet"]["ruleIds"] == ["no_premium_numbers"]
    assert found["unknown"] is None


RATE_LIMITED_SMS = """\
rules:
  - id: sms_burst
    tool: send_sms
    action: deny
    rate_limits: [{scope: agent, window_seconds: 60, max_calls: 5}, {scope: global, window_seconds: 3600, max_calls: 100}]
"""


def test_sdk_policy_cache__tool_under_a_rate_limit__rate_limits_served_and_sdk_asks_the_server(team):
    # Given a rule set that rate-limits send_sms, and policies for send_sms and transfer_funds
    publish_rules(Team.objects.get(pk=team.id), RATE_LIMITED_SMS)

    async def scenario() -> dict[str, Any]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
            await admin.create_policy({"toolName": "send_sms", "mode": "deterministic", "constraints": []})
        client = team.client()
        try:
            cache = PolicyCache(client)
            sms_policy = await _cached(cache, "send_sms")
            transfer_policy = await _cached(cache, "transfer_funds")
            sms_served = await client.fetch_policy("send_sms")
            transfer_served = await client.fetch_policy("transfer_funds")
        finally:
            await client.close()
        return locals()

    found = run(scenario())
    # Then send_sms is served with the limits that govern it, and the SDK reads it as "ask the server"
    assert found["sms_served"]["rateLimits"] == [
        {"ruleId": "sms_burst", "scope": "agent", "windowSeconds": 60, "maxCalls": 5},
        {"ruleId": "sms_burst", "scope": "global", "windowSeconds": 3600, "maxCalls": 100},
    ]
    assert found["sms_policy"].has_rate_limits is True
    # And transfer_funds, which no rate limit governs, says so
    assert found["transfer_served"]["rateLimits"] is None
    assert found["transfer_policy"].has_rate_limits is False


def test_sdk_cloud_mode__constraints_only_tool_decided_locally__ruled_tool_sent_to_the_server(team):
    # Given a rule for send_sms only, and a constraint policy for each tool
    publish_rules(Team.objects.get(pk=team.id), SMS_RULES)

    async def scenario() -> dict[str, Any]:
        async with team.admin() as admin:
            await admin.create_policy(TRANSFER)
            await admin.create_policy(
                {
                    "toolName": "send_sms",
                    "mode": "deterministic",
                    "constraints": [{"argumentName": "body", "enabled": True, "maxLength": 10}],
                }
            )
        veto = await Veto.init(VetoOptions(api_key=team.key, base_url=team.base_url, log_level="silent"))
        try:
            # The first calls miss the SDK's policy cache and start its fetches; wait for them.
            await veto.guard("transfer_funds", {"amount": 1, "currency": "EUR"})
            await veto.guard("send_sms", {"to": "+1555", "body": "hi"})
            for tool in ("transfer_funds", "send_sms"):
                assert await _cached(veto._policy_cache, tool) is not None
            before = await run_in_db_thread(lambda: set(DecisionRecord.objects.values_list("id", flat=True)))
            # When the agent calls both tools with the SDK's caches warm
            local_deny = await veto.guard("transfer_funds", {"amount": 5000, "currency": "EUR"})
            ruled = await veto.guard("send_sms", {"to": "+19005550100", "body": "hi"})
            too_long = await veto.guard("send_sms", {"to": "+1555", "body": "a much longer body"})
            for _ in range(100):  # the SDK logs its local decision fire-and-forget
                rows = await run_in_db_thread(
                    lambda: list(
                        DecisionRecord.objects.exclude(id__in=before)
                        .order_by("created_at")
                        .values_list("tool_name", "decision", "source", "reason")
                    )
                )
                if len(rows) == 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            await veto.close()
        return locals()

    found = run(scenario())
    # Then transfer_funds was decided by the SDK itself (and logged as a client decision) ...
    assert found["local_deny"].decision == "deny"
    assert found["local_deny"].reason == "Argument 'amount' failed: value 5000 must be <= 1000.0"
    # ... while send_sms went to the server, which applied the rule the SDK knows nothing of,
    # and the constraint too
    assert (found["ruled"].decision, found["ruled"].reason) == ("deny", "Premium-rate numbers are blocked")
    assert found["too_long"].decision == "deny"
    assert sorted(found["rows"]) == sorted(
        [
            ("transfer_funds", "deny", "client", "Argument 'amount' failed: value 5000 must be <= 1000.0"),
            ("send_sms", "deny", "server", "Premium-rate numbers are blocked"),
            ("send_sms", "deny", "server", "Argument 'body' failed: length 18 exceeds maximum 10"),
        ]
    )
