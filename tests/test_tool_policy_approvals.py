"""Per-tool constraints with ``action: require_approval``: a failing call is held for a person
instead of denied, and the SDK is told to ask the server (its local validator can only deny)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from veto.admin import VetoAdmin
from veto.cloud.client import VetoCloudClient, VetoCloudConfig

from approvals.models import Approval
from tests.factories import TeamFactory, api_key_for

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

POLICY = {
    "toolName": "transfer_funds",
    "mode": "deterministic",
    "constraints": [
        {"argumentName": "currency", "enabled": True, "enum": ["EUR", "USD"]},
        {"argumentName": "amount", "enabled": True, "maximum": 1000, "action": "require_approval"},
    ],
}


def test_constraint_require_approval__large_amount_held_wrong_currency_denied(asgi_server):
    team = TeamFactory()
    key = api_key_for(team)

    async def scenario() -> dict[str, Any]:
        async with VetoAdmin(apiKey=key, baseUrl=asgi_server.url) as admin:
            await admin.create_policy(POLICY)
            served = await admin.get_policy("transfer_funds")
        client = VetoCloudClient(VetoCloudConfig(api_key=key, base_url=asgi_server.url, retries=0))
        try:
            small = await client.validate("transfer_funds", {"amount": 10, "currency": "EUR"})
            large = await client.validate("transfer_funds", {"amount": 5000, "currency": "EUR"})
            both = await client.validate("transfer_funds", {"amount": 5000, "currency": "GBP"})
        finally:
            await client.close()
        return locals()

    result = asyncio.run(scenario())

    # The served policy makes the SDK ask the server instead of denying locally
    marker = result["served"].model_dump()["sessionConstraints"]
    assert (marker["evaluatedBy"], marker["approvalConstraints"]) == ("server", True)
    assert result["small"].decision == "allow"
    # Over the limit: held for a person, with the constraint that failed
    large = result["large"]
    assert large.decision == "require_approval"
    assert [f.parameter for f in large.failed_constraints] == ["amount"]
    approval = Approval.objects.get(pk=large.approval_id)
    assert (approval.status, approval.rule_id) == ("pending", "policy:transfer_funds")
    # A failing deny constraint wins over a hold
    assert result["both"].decision == "deny"
    assert Approval.objects.filter(team_id=team.id).count() == 1
