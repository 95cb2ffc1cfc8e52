"""The server engine decides Policy IR v1 rules as the published SDK's local engine does.

A hand-picked set of cases here; the property-based differential test over
generated rule sets belongs with the full rule language (issue 3).
"""

import asyncio

import pytest
from veto import Veto

from policies.engine import ToolCall, compile_rule_set, normalize_rule_set

RULES = [
    {"id": "allow-reads", "name": "Reads", "action": "allow", "tools": ["read_file"]},
    {
        "id": "block-etc",
        "name": "No /etc",
        "action": "block",
        "tools": ["read_file", "write_file"],
        "conditions": [{"field": "arguments.path", "operator": "starts_with", "value": "/ETC"}],
    },
    {
        "id": "big-transfer",
        "name": "Big transfer",
        "action": "require_approval",
        "tools": ["transfer"],
        "condition_groups": [
            [{"field": "arguments.amount", "operator": "greater_than", "value": 1000}],
            [{"field": "arguments.currency", "operator": "not_in", "value": ["eur", "usd"]}],
        ],
    },
    {
        "id": "many-recipients",
        "name": "Many recipients",
        "action": "block",
        "tools": ["send_email"],
        "conditions": [{"field": "arguments.to", "operator": "length_greater_than", "value": 2}],
    },
    {
        "id": "secret-words",
        "name": "Secrets",
        "action": "block",
        "conditions": [{"field": "arguments.body", "operator": "matches", "value": "pass(word)?\\s*[:=]"}],
    },
    {"id": "warn-all", "name": "Warn", "action": "warn"},
    # Two allow rules that both match: the first one is the deciding rule.
    {
        "id": "allow-small",
        "name": "Small",
        "action": "allow",
        "tools": ["transfer"],
        "conditions": [{"field": "arguments.amount", "operator": "less_than", "value": 100}],
    },
    {
        "id": "allow-eur",
        "name": "EUR",
        "action": "allow",
        "tools": ["transfer"],
        "conditions": [{"field": "arguments.currency", "operator": "equals", "value": "eur"}],
    },
    {
        "id": "agent-x-only",
        "name": "Agent X",
        "action": "block",
        "tools": ["deploy"],
        "agents": ["agent-x"],
    },
]

CALLS = [
    ("read_file", {"path": "/home/a"}, None),
    ("read_file", {"path": "/etc/passwd"}, None),
    ("write_file", {"path": "/tmp/x"}, None),
    ("transfer", {"amount": 5000, "currency": "EUR"}, None),
    ("transfer", {"amount": 10, "currency": "GBP"}, None),
    ("transfer", {"amount": 10, "currency": "usd"}, None),
    ("transfer", {"amount": 10, "currency": "EUR"}, None),
    ("send_email", {"to": "a@x, b@x, c@x"}, None),
    ("send_email", {"to": ["a", "b"]}, None),
    ("send_email", {"to": "a@x", "body": "my Password: hunter2"}, None),
    ("deploy", {}, "agent-x"),
    ("deploy", {}, "agent-y"),
    ("unknown", {}, None),
]


@pytest.mark.parametrize(("tool", "arguments", "agent_id"), CALLS)
def test_engine__ir_rules__decide_like_the_sdk_local_engine(tool, arguments, agent_id):
    # Given the same Policy IR v1 rules in the SDK and in our engine
    sdk = Veto.from_rules(rules=RULES, agent_id=agent_id, log_level="silent")
    ours = compile_rule_set(normalize_rule_set({"version": "1.0", "rules": RULES}))
    # When both decide the same call
    sdk_result = asyncio.run(sdk.guard(tool, arguments))
    our_result = ours.evaluate(ToolCall(tool, arguments, {"agent_id": agent_id}))
    # Then decision and deciding rule agree
    assert (our_result.decision, our_result.rule_id) == (sdk_result.decision, sdk_result.rule_id)
