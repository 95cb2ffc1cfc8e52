"""policies/explain.py: why a rule fired, from the rule as stored and the call's arguments (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from policies.engine import load_rule_set
from policies.explain import explain_constraints, explain_rule, rule_in_document, rule_not_found


def rule_of(yaml_text: str, rule_id: str) -> dict:
    rule = rule_in_document(load_rule_set(yaml_text), rule_id)
    assert rule is not None
    return dict(rule)


def read(explanation, label: str):
    (found,) = [r for r in explanation.reads if r.label == label]
    return found


IR_RULES = """\
rules:
  - id: big_transfer
    name: Big transfer abroad
    action: require_approval
    severity: high
    tools: [transfer]
    conditions:
      - {field: arguments.amount, operator: greater_than, value: 1000}
      - {field: arguments.beneficiary.country, operator: in, value: [RU, KP]}
  - id: groups
    name: Either way
    action: block
    tools: [send]
    condition_groups:
      - [{field: to, operator: ends_with, value: "@rival.example"}]
      - [{field: arguments.size, operator: greater_than, value: 10}, {field: context.env, operator: equals, value: prod}]
"""


def test_explain__ir_conditions_with_a_nested_path__every_part_held_and_marks_both_arguments():
    # Given an IR rule whose AND reads a top-level and a nested argument
    rule = rule_of(IR_RULES, "big_transfer")

    # When it is explained for a call that fired it
    why = explain_rule(
        rule, tool_name="transfer", arguments={"amount": 5000, "beneficiary": {"country": "ru", "name": "X"}}
    )

    # Then the rule, its condition as field/operator/value text, and each read with its value are given
    assert (why.found, why.rule_id, why.rule_name, why.action, why.severity) == (
        True,
        "big_transfer",
        "Big transfer abroad",
        "require_approval",
        "high",
    )
    assert why.kind == "conditions"
    assert (
        why.condition_text
        == 'arguments.amount greater_than 1000 AND arguments.beneficiary.country in ["RU", "KP"]'
    )
    assert [(p.held, p.contributed) for p in why.parts] == [(True, True), (True, True)]
    assert (read(why, "args.amount").value, read(why, "args.beneficiary.country").value) == (5000, "ru")
    assert why.paths_to_mark("args") == {("amount",), ("beneficiary", "country")}
    assert why.held is True


def test_explain__ir_conditions_not_all_held__nothing_marked():
    # Given the same rule and a call with a small amount (the rule would not fire)
    why = explain_rule(
        rule_of(IR_RULES, "big_transfer"),
        tool_name="transfer",
        arguments={"amount": 5, "beneficiary": {"country": "RU"}},
    )

    # Then the part that failed says so and no argument is marked as why it fired
    assert [p.held for p in why.parts] == [False, True]
    assert why.held is False
    assert why.paths_to_mark("args") == frozenset()


def test_explain__condition_groups__only_the_group_that_held_contributes():
    # Given an OR of two groups, of which the second held (size and the context's env)
    why = explain_rule(
        rule_of(IR_RULES, "groups"),
        tool_name="send",
        arguments={"to": "a@friend.example", "size": 50},
        context={"env": "prod"},
    )

    # Then the text shows the OR of ANDs, and only group 2's reads are marked
    assert why.kind == "condition_groups"
    assert why.condition_text == (
        '(to ends_with "@rival.example") OR (arguments.size greater_than 10 AND context.env equals "prod")'
    )
    assert [(p.group, p.held, p.contributed) for p in why.parts] == [
        (0, False, False),
        (1, True, True),
        (1, True, True),
    ]
    assert why.paths_to_mark("args") == {("size",)}
    assert why.paths_to_mark("context") == {("env",)}
    assert read(why, "args.to").contributed is False


WHEN_RULES = """\
rules:
  - name: pii_exports
    tool: run_data_export
    when: args.include_pii === true && (args.rows > 100000 || args.destination.startsWith("s3://public"))
    action: deny
  - name: not_internal
    tool: upload
    when: "!args.bucket.startsWith('internal-') || has(args.meta.owner)"
    action: require_approval
  - name: bracketed
    tool: tag
    when: args["user name"].length > 3 && context.environment == "prod" && args.tags.exists(t, t == "pii")
    action: deny
"""


def test_explain__when_with_and_or__the_or_branch_that_held_is_marked_the_other_not():
    # Given a when: of an AND with an OR inside, where the destination (not the row count) held
    why = explain_rule(
        rule_of(WHEN_RULES, "pii_exports"),
        tool_name="run_data_export",
        arguments={"include_pii": True, "rows": 10, "destination": "s3://public-bucket/x"},
    )

    # Then the condition is the when: source as written, split into its operands
    assert why.kind == "when"
    assert why.condition_text.startswith("args.include_pii === true && (")
    assert [(p.text, p.held, p.contributed) for p in why.parts] == [
        ("args.include_pii == true", True, True),
        ("args.rows > 100000", False, False),
        ('args.destination.startsWith("s3://public")', True, True),
    ]
    assert why.paths_to_mark("args") == {("include_pii",), ("destination",)}
    assert read(why, "args.rows").value == 10
    assert why.action == "deny" and why.held is True


def test_explain__when_with_negation_and_has__negation_is_one_part_and_absent_paths_say_so():
    # Given "!startsWith || has(...)" and a call without meta
    why = explain_rule(
        rule_of(WHEN_RULES, "not_internal"), tool_name="upload", arguments={"bucket": "public"}
    )

    # Then "!..." is one part that held, has() did not, and the absent path reads as absent
    assert [(p.text, p.held) for p in why.parts] == [
        ("!args.bucket.startsWith('internal-')", True),
        ("has(args.meta.owner)", False),
    ]
    owner = read(why, "args.meta.owner")
    assert (owner.present, owner.value_text, owner.contributed) == (False, "(absent)", False)
    assert why.paths_to_mark("args") == {("bucket",)}


def test_explain__when_with_index_length_context_and_comprehension__paths_resolved():
    # Given bracket access with .length, a context field and a comprehension over a list
    why = explain_rule(
        rule_of(WHEN_RULES, "bracketed"),
        tool_name="tag",
        arguments={"user name": "alice", "tags": ["x", "pii"]},
        context={"custom": {"environment": "prod"}},
    )

    # Then .length reads the string itself, the context is read as rules read it (custom on top),
    # and the comprehension's variable is not taken for an argument
    assert [p.held for p in why.parts] == [True, True, True]
    assert [r.label for r in why.reads] == ["args.user name", "context.custom.environment", "args.tags"]
    assert read(why, "args.user name").value == "alice"
    assert why.paths_to_mark("args") == {("user name",), ("tags",)}
    # environment is only under custom in the call: the mark goes where the value is
    assert why.paths_to_mark("context") == {("custom", "environment")}


def test_explain__rule_without_condition__says_it_applies_to_every_call():
    why = explain_rule(
        rule_of("rules:\n  - {name: no_deletes, tool: delete_all, action: deny}\n", "no_deletes"),
        tool_name="delete_all",
        arguments={"x": 1},
    )
    assert why.found and why.kind == "none" and why.parts == () and why.reads == ()
    assert "every call" in why.message


def test_explain__rate_limit_and_agents__are_noted():
    rules = """\
rules:
  - id: limited
    name: limited
    action: block
    tools: [search]
    agents: [crawler]
    rate_limits: [{scope: agent, window_seconds: 60, max_calls: 5}]
"""
    why = explain_rule(rule_of(rules, "limited"), tool_name="search", arguments={}, now=datetime.now(UTC))
    assert why.notes == (
        "only for agents: crawler",
        "rate limit: more than 5 calls per 60 s (scope: agent)",
    )


def test_explain__tool_policy_constraints__the_failing_constraint_fired_with_its_value():
    # Given a tool policy's constraints, one of which the call fails
    constraints = [
        {"argumentName": "amount", "enabled": True, "maximum": 1000},
        {"argumentName": "currency", "enabled": True, "enum": ["EUR", "USD"]},
        {"argumentName": "memo", "enabled": False, "maxLength": 3},
    ]

    # When explained
    why = explain_constraints(
        constraints,
        rule_id="policy:transfer",
        rule_name="transfer policy v2",
        arguments={"amount": 5000, "currency": "EUR", "memo": "long memo"},
    )

    # Then each enabled constraint is a part, the failing one held (it fired) with the SDK's message
    assert why.kind == "constraints" and why.action == "deny"
    assert [(p.text, p.held) for p in why.parts] == [
        ("amount: maximum 1000 — failed: value 5000 must be <= 1000", True),
        ('currency: enum ["EUR", "USD"]', False),
    ]
    assert why.condition_text == 'amount: maximum 1000; currency: enum ["EUR", "USD"]'
    assert why.paths_to_mark("args") == {("amount",)}
    assert read(why, "args.amount").value == 5000


def test_explain__tool_policy_require_approval_constraint__action_is_require_approval():
    why = explain_constraints(
        [{"argumentName": "amount", "maximum": 10, "action": "require_approval"}],
        rule_id="policy:pay",
        rule_name="pay policy v1",
        arguments={"amount": 11},
    )
    assert why.action == "require_approval"
    assert why.parts[0].text.endswith("— failed: value 11 must be <= 10")


def test_explain__rule_missing_from_its_version__clear_message():
    why = rule_not_found(rule_id="gone_rule", rule_name="Gone rule", where="version 3")
    assert why.found is False
    assert why.message == "Rule 'Gone rule' (gone_rule) not found in version 3."
    assert why.paths_to_mark("args") == frozenset()


def test_rule_in_document__unknown_id__none():
    assert rule_in_document(load_rule_set(IR_RULES), "nope") is None
