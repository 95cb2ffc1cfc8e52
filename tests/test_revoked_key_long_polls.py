"""A long-poll that outlives its key's revocation answers 401, as a new request would: the
revocation bound holds for requests already waiting too."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.core.asgi import get_asgi_application

from common.database import run_in_db_thread
from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from tenancy.models import ApiKey
from tenancy.services import api_key_revoke
from tests.factories import ApprovalFactory, TeamFactory, api_key_for, publish_rules

pytestmark = pytest.mark.django_db(transaction=True)

RULES = "rules:\n  - name: no_sms\n    tool: send_sms\n    action: deny\n"


@pytest.fixture(scope="module")
def app():
    return Gateway(get_asgi_application(), runtime_routes)


def poll_while_revoking(app, key: str, path: str, headers: dict[str, str], team) -> httpx.Response:
    async def revoke_soon() -> None:
        await asyncio.sleep(0.5)
        await run_in_db_thread(lambda: api_key_revoke(api_key=ApiKey.objects.get(team=team)))

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.40", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            poll = client.get(path, headers={"X-Veto-API-Key": key, **headers})
            response, _ = await asyncio.gather(poll, revoke_soon())
            return response

    return asyncio.run(scenario())


def test_rule_set_long_poll__key_revoked_while_waiting__401(app):
    # Given a long-poll for a newer rule set than the one the agent has
    team = TeamFactory()
    publish_rules(team, RULES)
    key = api_key_for(team)
    current = asyncio.run(_get(app, key, "/v1/rule-sets/active")).headers["etag"]
    # When the key is revoked while it waits
    response = poll_while_revoking(app, key, "/v1/rule-sets/active?wait=2", {"If-None-Match": current}, team)
    # Then the poll's answer is a 401, not the rule set's 304
    assert response.status_code == 401


def test_approval_long_poll__key_revoked_while_waiting__401(app):
    # Given an agent long-polling a pending approval
    team = TeamFactory()
    key = api_key_for(team)
    approval = ApprovalFactory(team=team)
    # When the key is revoked while it waits
    response = poll_while_revoking(app, key, f"/v1/approvals/{approval.id}?wait=2", {}, team)
    # Then the poll's answer is a 401, not the still-pending approval
    assert response.status_code == 401


async def _get(app, key: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.40", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path, headers={"X-Veto-API-Key": key})
