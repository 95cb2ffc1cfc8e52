"""Loading rule sets: both forms, normalization, and every problem at once with path and line."""

from pathlib import Path

import pytest

from policies.engine import RuleSetError, load_rule_set

DEMO = (Path(__file__).resolve().parents[1] / "fixtures" / "demo_rules.yaml").read_text()


def test_load__demo_rule_set__loads_as_written_and_normalizes():
    document = load_rule_set(DEMO)
    first, second = document["rules"][0], document["rules"][1]
    assert [r["id"] for r in document["rules"]] == [
        "block_pii_exports",
        "bucket_allowlist",
        "workflow_deploy_approval",
        "workflow_definition_size",
        "strip_api_key_in_args",
    ]
    assert first["tools"] == ["run_data_export"]
    assert first["approvers"] == ["compliance", "privacy-office"]
    assert first["timeout_seconds"] == 24 * 3600
    assert second["action"] == "block"  # "deny" is spelled block internally, as in the IR
    assert second["message"] == "Exports restricted to internal-* S3 buckets"


def test_load__policy_ir_and_short_form_mixed__both_accepted():
    document = load_rule_set(
        """
version: "1.0"
name: mixed
rules:
  - id: big-transfers
    name: Big transfers
    action: require_approval
    severity: high
    tools: [transfer_funds]
    conditions:
      - {field: arguments.amount, operator: greater_than, value: 1000}
  - name: no_prod_deletes
    tool: delete_records
    when: context.environment == "production"
    action: deny
settings:
  default_action: allow
"""
    )
    assert [r["action"] for r in document["rules"]] == ["require_approval", "block"]
    assert document["rules"][0]["severity"] == "high"


def test_load__many_mistakes__reports_all_of_them_with_paths_and_lines():
    source = """rules:
  - name: a
    action: nope
    when: "args.x =="
  - tool: t
    action: deny
    timeout: 3x
    conditions:
      - {field: arguments.a, operator: frobnicates, value: 1}
  - name: c
    action: block
    conditions:
      - {field: arguments.s, operator: matches, value: "(a)\\\\1"}
    colour: blue
"""
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(source)
    found = {(p.path, p.line) for p in caught.value.problems}
    assert ("rules[0].action", 3) in found
    assert ("rules[0].when", 4) in found
    assert ("rules[1].name", 5) in found
    assert ("rules[1].timeout", 7) in found
    assert ("rules[1].conditions[0].operator", 9) in found
    assert ("rules[2].conditions[0].value", 13) in found
    assert ("rules[2].colour", 14) in found


@pytest.mark.parametrize(
    ("source", "path", "fragment"),
    [
        ("rules: {}", "rules", "must be a list"),
        ("just text", "", "mapping"),
        (
            "rules:\n  - name: x\n    action: deny\n  - name: x\n    action: allow\n",
            "rules[1].id",
            "duplicate",
        ),
        ("rules:\n  - name: x\n    action: allow\n    approvers: [a]\n", "rules[0].action", "only apply"),
        (
            "rules:\n  - name: x\n    action: deny\n    blocked_by: [{within: 5}]\n",
            "rules[0].blocked_by[0].tool",
            "earlier tool call",
        ),
        (
            "rules:\n  - name: x\n    action: deny\n    requires: [{tool: a, within: -1}]\n",
            "rules[0].requires[0].within",
            "seconds",
        ),
        (
            "rules:\n  - name: x\n    action: deny\n    rate_limits: [{scope: tenant, window_seconds: 60, max_calls: 5}]\n",
            "rules[0].rate_limits[0].scope",
            "agent, user, session, global",
        ),
        (
            "rules:\n  - name: x\n    action: deny\n    rate_limits: [{window_seconds: 0, max_calls: 5}]\n",
            "rules[0].rate_limits[0].window_seconds",
            "whole number",
        ),
        (
            "rules:\n  - name: x\n    action: allow\n    rate_limits: [{window_seconds: 60, max_calls: 5}]\n",
            "rules[0].action",
            "exceeded",
        ),
        ("mode: loud\nrules: []\n", "mode", "strict, log or shadow"),
        ("{{{}}}:\n", "", "plain value"),
        ("a: &x [*x]\n", "", "aliases"),
        ("[" * 5000, "", "nested deeper"),
        ("extends: '@veto/coding-agent'\nrules: []\n", "extends", "not supported"),
        ("rules: [\n", "", "invalid YAML"),
    ],
)
def test_load__invalid_document__names_where(source, path, fragment):
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(source)
    assert any(p.path == path and fragment in p.message for p in caught.value.problems), caught.value.problems


def test_load__json_document__is_accepted():
    document = load_rule_set(
        '{"rules": [{"name": "x", "tool": "t", "action": "deny"}]}', content_type="application/json"
    )
    assert document["rules"][0]["tools"] == ["t"]
