"""Deciding calls: precedence, scoping and the demo rule set's behaviour."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies.engine import ToolCall, compile_rule_set, load_rule_set, normalize_rule_set

DEMO = (Path(__file__).resolve().parents[1] / "fixtures" / "demo_rules.yaml").read_text()


@pytest.fixture(scope="module")
def demo():
    return compile_rule_set(load_rule_set(DEMO))


@pytest.mark.parametrize(
    ("tool", "arguments", "context", "decision", "rule_id"),
    [
        (
            "run_data_export",
            {"include_pii": True, "bucket": "internal-x"},
            {},
            "require_approval",
            "block_pii_exports",
        ),
        ("run_data_export", {"bucket": "s3://public"}, {}, "deny", "bucket_allowlist"),
        ("run_data_export", {"bucket": "internal-x"}, {}, "allow", None),
        (
            "deploy_workflow",
            {"definition": "{}"},
            {"environment": "production"},
            "require_approval",
            "workflow_deploy_approval",
        ),
        (
            "deploy_workflow",
            {"definition": "{}"},
            {"custom": {"environment": "production"}},
            "require_approval",
            "workflow_deploy_approval",
        ),
        (
            "deploy_workflow",
            {"definition": "x" * 200001},
            {"environment": "staging"},
            "deny",
            "workflow_definition_size",
        ),
        ("fetch_external_api", {"api_key": "sk"}, {}, "deny", "strip_api_key_in_args"),
        ("fetch_external_api", {"url": "https://x"}, {}, "allow", None),
        ("send_sms", {"to": "+1"}, {}, "allow", None),
    ],
)
def test_evaluate__demo_rules__decide_as_the_integration_pages_say(
    demo, tool, arguments, context, decision, rule_id
):
    result = demo.evaluate(ToolCall(tool, arguments, context))
    assert (result.decision, result.rule_id) == (decision, rule_id)


def test_evaluate__require_approval__carries_approvers_and_timeout(demo):
    result = demo.evaluate(ToolCall("run_data_export", {"include_pii": True}))
    assert result.approvers == ("compliance", "privacy-office")
    assert result.approval_timeout_seconds == 86400
    assert result.matched_condition == "args.include_pii == true"


def rules(*specs):
    return compile_rule_set(normalize_rule_set({"rules": list(specs)}))


def test_evaluate__block_before_allow__first_blocking_rule_wins_over_earlier_allow():
    rule_set = rules(
        {"id": "allow-all", "name": "allow", "action": "allow"},
        {
            "id": "block-big",
            "name": "block",
            "action": "block",
            "conditions": [{"field": "arguments.n", "operator": "greater_than", "value": 5}],
        },
    )
    assert rule_set.evaluate(ToolCall("t", {"n": 9})).rule_id == "block-big"
    assert rule_set.evaluate(ToolCall("t", {"n": 1})).rule_id == "allow-all"


def test_evaluate__global_rules_come_before_tool_rules__as_in_the_sdk():
    rule_set = rules(
        {"id": "tool-approval", "name": "a", "action": "require_approval", "tools": ["t"]},
        {"id": "global-block", "name": "b", "action": "block"},
    )
    assert rule_set.evaluate(ToolCall("t", {})).rule_id == "global-block"


def test_evaluate__warn_and_log__never_decide_but_are_noted():
    rule_set = rules({"id": "w", "name": "w", "action": "warn"}, {"id": "l", "name": "l", "action": "log"})
    result = rule_set.evaluate(ToolCall("t", {}))
    assert result.decision == "allow"
    assert result.noted_rule_ids == ("w", "l")


def test_evaluate__disabled_rule__is_ignored():
    rule_set = rules({"id": "off", "name": "off", "action": "block", "enabled": False})
    assert rule_set.evaluate(ToolCall("t", {})).decision == "allow"


def test_evaluate__agent_scope__limits_rules_to_named_agents():
    rule_set = rules(
        {"id": "only-a", "name": "a", "action": "block", "agents": ["agent-a"]},
        {"id": "not-b", "name": "b", "action": "require_approval", "agents": {"not": ["agent-b"]}},
    )
    assert rule_set.evaluate(ToolCall("t", {}, {"agent_id": "agent-a"})).rule_id == "only-a"
    assert rule_set.evaluate(ToolCall("t", {}, {"agent_id": "agent-c"})).rule_id == "not-b"
    assert rule_set.evaluate(ToolCall("t", {}, {"agent_id": "agent-b"})).decision == "allow"


def test_evaluate__condition_groups__are_or_of_ands():
    rule_set = rules(
        {
            "id": "g",
            "name": "g",
            "action": "block",
            "condition_groups": [
                [
                    {"field": "arguments.a", "operator": "equals", "value": 1},
                    {"field": "arguments.b", "operator": "equals", "value": 2},
                ],
                [{"field": "arguments.c", "operator": "equals", "value": 3}],
            ],
        }
    )
    assert rule_set.evaluate(ToolCall("t", {"a": 1, "b": 2})).decision == "deny"
    assert rule_set.evaluate(ToolCall("t", {"c": 3})).decision == "deny"
    assert rule_set.evaluate(ToolCall("t", {"a": 1})).decision == "allow"


def test_evaluate__time_window__uses_the_servers_clock_not_the_client_timestamp():
    rule_set = rules(
        {
            "id": "night",
            "name": "night",
            "action": "block",
            "conditions": [
                {
                    "field": "context.time",
                    "operator": "outside_hours",
                    "value": {"start": "09:00", "end": "17:00", "timezone": "UTC"},
                }
            ],
        }
    )
    night = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    noon = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    forged = {"time": "2026-11-22T12:00:00+00:00", "timestamp": "2026-11-22T12:00:00+00:00"}
    assert rule_set.evaluate(ToolCall("t", {}, forged, now=night)).decision == "deny"
    assert rule_set.evaluate(ToolCall("t", {}, {}, now=noon)).decision == "allow"


def test_evaluate__default_action_deny__applies_when_nothing_matches():
    rule_set = compile_rule_set(
        load_rule_set("settings: {default_action: deny}\nrules:\n  - {name: ok, tool: safe, action: allow}\n")
    )
    assert rule_set.evaluate(ToolCall("safe", {})).decision == "allow"
    assert rule_set.evaluate(ToolCall("other", {})).decision == "deny"
