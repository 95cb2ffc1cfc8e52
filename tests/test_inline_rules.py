"""API mode with rules sent inline: a scope of its own, and decisions recorded as what they are."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
import pytest
from django.core.asgi import get_asgi_application
from veto.audit.chain import compute_chain_hash

from audit.models import DecisionRecord
from audit.services import chain_verify
from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from tenancy.models import ApiKey
from tests.factories import TeamFactory, api_key_for, publish_rules

pytestmark = pytest.mark.django_db(transaction=True)

TEAM_RULES = """\
rules:
  - name: no_big_transfers
    tool: transfer
    when: args.amount > 1000
    action: deny
"""
ALLOW_EVERYTHING = [
    {"id": "anything-goes", "name": "anything goes", "action": "allow", "tools": ["transfer"]}
]
CALL = {"tool_name": "transfer", "arguments": {"amount": 5000}}


@pytest.fixture(scope="module")
def app():
    return Gateway(get_asgi_application(), runtime_routes)


@pytest.fixture
def team():
    team = TeamFactory()
    publish_rules(team, TEAM_RULES)
    return team


def validate(app, key: str, body: dict) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post("/v1/validate", json=body, headers={"X-Veto-API-Key": key})

    return asyncio.run(call())


def test_inline_rules__runtime_only_key__403_and_nothing_recorded(app, team):
    # Given a runtime-only key of a team whose rules deny big transfers
    key = api_key_for(team, scopes=(ApiKey.Scope.RUNTIME,))
    # When it sends rules that allow everything with a big transfer
    response = validate(app, key, {"context": CALL, "rules": ALLOW_EVERYTHING})
    # Then it is refused, naming the scope it lacks, and no decision is recorded
    assert response.status_code == 403
    assert "rules:inline" in response.json()["error"]["message"]
    assert DecisionRecord.objects.count() == 0
    # And without rules the team's rules decide, recorded as the server's
    by_team = validate(app, key, {"context": CALL})
    assert by_team.json()["decision"] == "deny"
    assert DecisionRecord.objects.get().source == DecisionRecord.Source.SERVER


def test_inline_rules__key_with_the_scope__recorded_as_inline_rules_with_their_hash(app, team):
    # Given a key holding runtime and rules:inline
    key = api_key_for(team, scopes=(ApiKey.Scope.RUNTIME, ApiKey.Scope.INLINE_RULES))
    # When it decides a big transfer with its own rules, then once with the team's
    inline = validate(app, key, {"context": CALL, "rules": ALLOW_EVERYTHING})
    by_team = validate(app, key, {"context": CALL})
    # Then its rules decided the first call, and the record says so: source and rules' hash
    assert (inline.status_code, inline.json()["decision"]) == (200, "allow")
    assert by_team.json()["decision"] == "deny"
    first, second = DecisionRecord.objects.order_by("sequence")
    expected_hash = hashlib.sha256(
        json.dumps(ALLOW_EVERYTHING, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert (first.source, first.rules_hash) == ("inline_rules", expected_hash)
    assert (second.source, second.rules_hash) == ("server", "")
    # And both are in the chain: the hash is attested, and the chain verifies (server and SDK)
    assert json.loads(first.record)["source"] == "inline_rules"
    assert json.loads(first.record)["rules_hash"] == expected_hash
    assert "rules_hash" not in json.loads(second.record)
    assert chain_verify(team_id=team.id).ok
    for entry in (first, second):
        assert compute_chain_hash(entry.prev_hash, json.loads(entry.record)) == entry.hash


def test_inline_rules__same_rules_in_another_key_order__same_hash(app, team):
    # Given the same rules with their keys in another order
    key = api_key_for(team, scopes=(ApiKey.Scope.RUNTIME, ApiKey.Scope.INLINE_RULES))
    reordered = [dict(reversed(list(rule.items()))) for rule in ALLOW_EVERYTHING]
    # When each decides a call
    validate(app, key, {"context": CALL, "rules": ALLOW_EVERYTHING})
    validate(app, key, {"context": CALL, "rules": reordered})
    # Then both records carry one hash (of the canonical form)
    assert len(set(DecisionRecord.objects.values_list("rules_hash", flat=True))) == 1
