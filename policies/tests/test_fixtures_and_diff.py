"""Fixture suites decide with the real engine; diffs are rule by rule, field by field."""

from datetime import UTC, datetime

import pytest

from policies.engine import RuleSetError, compile_rule_set, diff_documents, load_rule_set, run_fixtures

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

SOURCE = """
rules:
  - name: block_pii_exports
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
    approvers: [compliance]
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: deny
fixtures:
  - suite: exports
    tests:
      - id: pii
        tool: run_data_export
        arguments: {include_pii: true, bucket: internal-a}
        expect: {decision: require_approval, rule_id: block_pii_exports}
      - id: public-bucket
        tool: run_data_export
        arguments: {bucket: s3://public}
        expect: {decision: block}
      - id: wrong-on-purpose
        tool: run_data_export
        arguments: {bucket: internal-a}
        expect: {decision: deny, rule_id: bucket_allowlist}
      - id: wrong-rule
        tool: run_data_export
        arguments: {bucket: s3://x}
        expect: {decision: deny, rule_id: block_pii_exports}
"""


def test_run_fixtures__reports_each_test_with_expected_and_actual():
    document = load_rule_set(SOURCE)
    results = {r.test_id: r for r in run_fixtures(compile_rule_set(document), document["fixtures"], now=NOW)}
    assert results["pii"].passed
    assert results["public-bucket"].passed  # "block" expects deny, as in the SDK
    assert not results["wrong-on-purpose"].passed
    assert results["wrong-on-purpose"].error == "expected decision 'deny' but got 'allow'"
    assert not results["wrong-rule"].passed
    assert results["wrong-rule"].error == "expected rule_id 'block_pii_exports' but got 'bucket_allowlist'"


def test_load__malformed_fixtures__reported_with_paths():
    source = """
rules: [{name: r, tool: t, action: deny}]
fixtures:
  - suite: s
    tests:
      - {id: a, tool: t, expect: {decision: maybe}}
      - {id: a, tool: t, expect: {decision: deny}, colour: red}
      - {tool: t, arguments: [1], expect: {decision: allow}}
"""
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(source)
    paths = {p.path for p in caught.value.problems}
    assert {
        "fixtures[0].tests[0].expect.decision",
        "fixtures[0].tests[1].id",
        "fixtures[0].tests[1].colour",
        "fixtures[0].tests[2].id",
        "fixtures[0].tests[2].arguments",
    } <= paths


def rules_doc(*rules):
    return {"rules": list(rules), "settings": {"default_action": "allow"}}


def test_diff__added_removed_changed_field_by_field():
    before = rules_doc(
        {"id": "a", "name": "a", "action": "block", "tools": ["t"]},
        {"id": "b", "name": "b", "action": "allow", "tools": []},
    )
    after = rules_doc(
        {"id": "a", "name": "a", "action": "require_approval", "tools": ["t"], "approvers": ["x"]},
        {"id": "c", "name": "c", "action": "block", "tools": []},
    )
    diff = diff_documents(before, after)
    assert [r["id"] for r in diff["added"]] == ["c"]
    assert [r["id"] for r in diff["removed"]] == ["b"]
    assert diff["changed"] == [
        {
            "id": "a",
            "changes": [
                {"field": "action", "from": "block", "to": "require_approval"},
                {"field": "approvers", "from": None, "to": ["x"]},
            ],
        }
    ]
    assert diff["moved"] == []


def test_diff__insertion_shifts_nothing_but_a_swap_is_a_move():
    a, b, c = ({"id": x, "name": x, "action": "block"} for x in "abc")
    new = {"id": "new", "name": "new", "action": "allow"}
    assert diff_documents(rules_doc(a, b, c), rules_doc(new, a, b, c))["moved"] == []
    moved = diff_documents(rules_doc(a, b, c), rules_doc(a, c, b))["moved"]
    assert len(moved) == 1 and moved[0]["id"] in {"b", "c"}


def test_diff__settings_changes():
    before = rules_doc()
    after = {"rules": [], "settings": {"default_action": "block"}}
    assert diff_documents(before, after)["settings"] == [
        {"field": "default_action", "from": "allow", "to": "block"}
    ]
