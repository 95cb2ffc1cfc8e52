"""One limit on a tool's name (policies.engine.constraints.TOOL_NAME_MAX) wherever one is accepted:
the longest name that can be registered can get a policy, be validated and be logged; one more
character is refused everywhere alike."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.core.asgi import get_asgi_application

from approvals.models import Approval
from audit.models import DecisionRecord
from policies.engine.constraints import TOOL_NAME_MAX
from policies.engine.document import RULE_ID_MAX, RULE_NAME_MAX
from policies.models import RegisteredTool, ToolPolicy
from policies.selectors import TOOL_POLICY_RULE_PREFIX
from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from tests.factories import TeamFactory, api_key_for

LONGEST = "t" * TOOL_NAME_MAX
TOO_LONG = "t" * (TOOL_NAME_MAX + 1)


def test_tool_name_max__a_policys_rule_id_and_every_stored_name__fit():
    # A policy's decisions are recorded with rule id "policy:<name>", in decisions and approvals,
    # whose columns are the engine's limits on a rule set's rule ids and names.
    for model in (DecisionRecord, Approval):
        assert model._meta.get_field("rule_id").max_length == RULE_ID_MAX
        assert model._meta.get_field("rule_name").max_length == RULE_NAME_MAX
        assert len(TOOL_POLICY_RULE_PREFIX) + TOOL_NAME_MAX <= RULE_ID_MAX
        assert model._meta.get_field("tool_name").max_length >= TOOL_NAME_MAX
    assert ToolPolicy._meta.get_field("tool_name").max_length == TOOL_NAME_MAX
    assert RegisteredTool._meta.get_field("name").max_length >= TOOL_NAME_MAX


@pytest.fixture(scope="module")
def app():
    return Gateway(get_asgi_application(), runtime_routes)


def send(app, key: str, method: str, path: str, body: dict) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.40", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, json=body, headers={"X-Veto-API-Key": key})

    return asyncio.run(call())


def _calls(name: str) -> dict[str, tuple[str, dict]]:
    return {
        "register": ("/v1/tools/register", {"tools": [{"name": name}]}),
        "policy": (
            "/v1/policies",
            {
                "toolName": name,
                "mode": "deterministic",
                "constraints": [{"argumentName": "amount", "maximum": 10}],
            },
        ),
        "validate": ("/v1/tools/validate", {"tool_name": name, "arguments": {"amount": 50}}),
        "api mode": ("/v1/validate", {"context": {"tool_name": name, "arguments": {"amount": 50}}}),
        "client decision": ("/v1/decisions", {"tool_name": name, "decision": "allow"}),
    }


@pytest.mark.django_db(transaction=True)
def test_longest_registrable_name__gets_a_policy_that_decides_and_is_recorded(app):
    # Given a team and a key
    team = TeamFactory()
    key = api_key_for(team)
    # When a tool with the longest name allowed is registered, given a policy, validated and logged
    answers = {what: send(app, key, "POST", path, body) for what, (path, body) in _calls(LONGEST).items()}
    # Then every step takes it
    assert {what: a.status_code for what, a in answers.items()} == {
        "register": 200,
        "policy": 201,
        "validate": 200,
        "api mode": 200,
        "client decision": 201,
    }, {what: a.text[:200] for what, a in answers.items()}
    # And the policy decides, recorded under its full rule id (a width PostgreSQL enforces)
    assert answers["validate"].json()["decision"] == "deny"
    assert answers["validate"].json()["metadata"]["rule_id"] == TOOL_POLICY_RULE_PREFIX + LONGEST
    recorded = DecisionRecord.objects.filter(source=DecisionRecord.Source.SERVER).values_list(
        "rule_id", flat=True
    )
    assert list(recorded) == [TOOL_POLICY_RULE_PREFIX + LONGEST] * 2


@pytest.mark.django_db(transaction=True)
def test_one_character_longer__refused_everywhere_naming_the_limit(app):
    team = TeamFactory()
    key = api_key_for(team)
    answers = {what: send(app, key, "POST", path, body) for what, (path, body) in _calls(TOO_LONG).items()}
    assert {what: a.status_code for what, a in answers.items()} == dict.fromkeys(answers, 400)
    for what, answer in answers.items():
        assert str(TOOL_NAME_MAX) in answer.json()["error"]["message"], (what, answer.json())
    assert not RegisteredTool.objects.exists()
    assert not ToolPolicy.objects.exists()
    assert not DecisionRecord.objects.exists()
