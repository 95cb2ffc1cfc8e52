"""Every server decision records the mode that decided it (``Decision.mode``): the rule set's for a
decision of the team's rules or of rules sent inline, the tool policy's for one of its
constraints, the SDK's for a decision it made itself. The enforcement (strict/log/shadow) is
recorded beside it, not in it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.core.asgi import get_asgi_application

from audit.models import DecisionRecord
from policies.engine import CompiledRuleSet
from policies.engine.constraints import CompiledConstraints
from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from tests.factories import TeamFactory, ToolPolicyFactory, api_key_for, publish_rules

pytestmark = pytest.mark.django_db(transaction=True)

RULES = "mode: shadow\nrules:\n  - {name: no_rm, tool: rm, action: block}\n"
INLINE = [{"id": "inline-no-rm", "name": "inline no rm", "action": "block", "tools": ["rm"]}]


@pytest.fixture(scope="module")
def app():
    return Gateway(get_asgi_application(), runtime_routes)


def send(app, key: str, path: str, body: dict) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.50", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post(path, json=body, headers={"X-Veto-API-Key": key})

    return asyncio.run(call())


def _decide_by_each_source(app) -> dict[str, tuple[str, str]]:
    """One decision by each source; (mode, enforcement) recorded for each, by its rule id."""
    team = TeamFactory()
    publish_rules(team, RULES)
    ToolPolicyFactory(team=team, tool_name="transfer")
    key = api_key_for(team)
    answers = [
        send(app, key, "/v1/tools/validate", {"tool_name": "rm"}),
        send(app, key, "/v1/tools/validate", {"tool_name": "transfer", "arguments": {"amount": 5000}}),
        send(app, key, "/v1/validate", {"context": {"tool_name": "rm"}, "rules": INLINE}),
        send(app, key, "/v1/decisions", {"tool_name": "ls", "decision": "allow", "mode": "llm"}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 201], [a.text[:200] for a in answers]
    return {
        rule_id or tool: (mode, enforcement)
        for rule_id, tool, mode, enforcement in DecisionRecord.objects.filter(team=team).values_list(
            "rule_id", "tool_name", "mode", "enforcement"
        )
    }


def test_each_source__records_the_mode_that_decided(app):
    recorded = _decide_by_each_source(app)
    assert recorded == {
        "no_rm": ("deterministic", "shadow"),  # the team's rules; their version's enforcement beside it
        "policy:transfer": ("deterministic", "strict"),
        "inline-no-rm": ("deterministic", "strict"),
        "ls": ("llm", "strict"),  # the SDK's own decision, as it says
    }


def test_mode__follows_the_evaluator_that_decided__not_a_fixed_answer(app, monkeypatch):
    # Given tool policies evaluated in another mode (as an LLM-evaluated policy would be)
    monkeypatch.setattr(CompiledConstraints, "evaluation_mode", "llm")
    recorded = _decide_by_each_source(app)
    # Then only the policy's decision records it; the rule sets' decisions keep theirs
    assert {rule: mode for rule, (mode, _) in recorded.items()} == {
        "no_rm": "deterministic",
        "policy:transfer": "llm",
        "inline-no-rm": "deterministic",
        "ls": "llm",
    }
    # And the other way round: rule sets (the team's and inline ones) in another mode
    monkeypatch.setattr(CompiledConstraints, "evaluation_mode", "deterministic")
    monkeypatch.setattr(CompiledRuleSet, "evaluation_mode", "llm")
    recorded = _decide_by_each_source(app)
    assert {rule: mode for rule, (mode, _) in recorded.items()} == {
        "no_rm": "llm",
        "policy:transfer": "deterministic",
        "inline-no-rm": "llm",
        "ls": "llm",
    }
