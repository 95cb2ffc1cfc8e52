"""The argument index (issue 14): a call visits only the rules it could match, and decides
exactly as visiting every rule of its tool does (``compile_rule_set(..., indexed=False)``, the
evaluation before the index).

Differential: seeded random rule sets (every IR operator over argument, nested, bare and context
fields; groups; agent scopes; disabled, global and multi-tool rules; ``when:`` expressions that
the index can and cannot read; rate limits) and calls (present, absent, null and non-string
arguments), compared decision by decision and rate-limit question by question. Then the edge
cases one by one. Pure: no database.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from policies.engine import (
    CompiledRuleSet,
    Decision,
    RateLimitCheck,
    ToolCall,
    compile_rule_set,
    normalize_rule_set,
)
from policies.engine.expressions import compile_when

TOOLS = ["export", "deploy", "send"]
KEYS = ["a", "b", "c", "d"]
WORDS = ["x", "X", "internal-a", "secret", "", "a,b", "/etc/passwd"]
VALUES: list[Any] = [*WORDS, None, 0, 5, 12.5, True, ["x", "secret"], {"a": "x"}, "2026-12-14T10:00:00Z"]
OPERATORS: list[tuple[str, Any]] = [
    ("equals", "x"),
    ("equals", 5),
    ("equals", None),
    ("not_equals", "x"),
    ("contains", "secret"),
    ("contains", "x"),
    ("not_contains", "x"),
    ("starts_with", "internal"),
    ("ends_with", "passwd"),
    ("matches", "^[a-z]+$"),
    ("greater_than", 3),
    ("less_than", 10),
    ("length_greater_than", 1),
    ("in", ["x", 5, "secret"]),
    ("in", ["x", None]),
    ("not_in", ["x", "secret"]),
    ("within_hours", {"start": "09:00", "end": "17:00", "timezone": "UTC"}),
    ("outside_hours", {"start": "22:00", "end": "06:00", "timezone": "UTC"}),
]
# Operands the index reads (one argument, false without it) and ones it must leave alone.
OPERANDS = [
    "args.{k} == 'x'",
    "args.{k} > 3",
    "args.{k}.startsWith('internal')",
    "has(args.{k})",
    "!has(args.{k})",
    "args.{k} == null",
    "!args.{k}.startsWith('x')",
    "size(args.{k}) > 1",
    "args.{k}.b == 'x'",
    "args.{k} in ['x', 'secret']",
    "(args.{k} == 'x' || args.{j} == 'secret')",
    "args.{k} == args.{j}",
    "args['{k}'] == 'x'",
    "args.{k}.exists(v, v == 'x')",
    "args.{k} ? true : false",
    "!(args.{k} > 3)",
    "context.role == 'admin'",
    "tool_name == 'deploy'",
    "true",
]


def random_condition(rng: random.Random) -> dict[str, Any]:
    key = rng.choice(KEYS)
    field = rng.choice(
        [
            f"arguments.{key}",
            key,
            f"arguments.{key}.a",
            f"{key}.a",
            "context.role",
            "context.time",
            "agent_id",
        ]
    )
    operator, value = rng.choice(OPERATORS)
    return {"field": field, "operator": operator, "value": value}


def random_rule(index: int, rng: random.Random) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": f"r{index}",
        "name": f"rule {index}",
        "action": rng.choice(["block", "require_approval", "allow", "allow", "warn", "log"]),
    }
    if rng.random() < 0.7:
        rule["tools"] = rng.sample(TOOLS, rng.choice([1, 1, 2]))
    if rng.random() < 0.1:
        rule["enabled"] = False
    if rng.random() < 0.15:
        rule["agents"] = ["agent-a"] if rng.random() < 0.5 else {"not": ["agent-a"]}
    shape = rng.random()
    if shape < 0.4:
        rule["conditions"] = [random_condition(rng) for _ in range(rng.randint(1, 3))]
    elif shape < 0.6:
        rule["condition_groups"] = [
            [random_condition(rng) for _ in range(rng.randint(0, 2))] for _ in range(rng.randint(1, 3))
        ]
    elif shape < 0.95:
        operands = [
            rng.choice(OPERANDS).format(k=rng.choice(KEYS), j=rng.choice(KEYS))
            for _ in range(rng.randint(1, 3))
        ]
        rule["when"] = " && ".join(operands)
        if rng.random() < 0.3:
            rule["conditions"] = [random_condition(rng)]
    if rule["action"] != "allow" and rng.random() < 0.1:
        rule["rate_limits"] = [{"scope": "agent", "window_seconds": 60, "max_calls": 3}]
    return rule


def random_call(rng: random.Random) -> ToolCall:
    arguments = {key: rng.choice(VALUES) for key in rng.sample(KEYS, rng.randint(0, len(KEYS)))}
    context: dict[str, Any] = {}
    if rng.random() < 0.6:
        context["agent_id"] = rng.choice(["agent-a", "agent-b"])
    if rng.random() < 0.5:
        context["role"] = rng.choice(["admin", "viewer"])
    now = datetime(2026, 12, 14, rng.randrange(24), 30, tzinfo=UTC)
    return ToolCall(rng.choice([*TOOLS, "unknown_tool"]), arguments, context, now)


def decide_recording(
    rule_set: CompiledRuleSet, call: ToolCall, exceeded_every: int
) -> tuple[Decision, list[str]]:
    """The decision and the rate-limit questions asked on the way (every n-th one exceeded)."""
    asked: list[str] = []

    def limiter(check: RateLimitCheck):
        asked.append(check.rule_id)
        return check.buckets[0][0] if len(asked) % exceeded_every == 0 else None

    return rule_set.evaluate(call, limiter), asked


def both(rules: list[dict[str, Any]], **settings: Any) -> tuple[CompiledRuleSet, CompiledRuleSet]:
    document = normalize_rule_set({"version": "1.0", "rules": rules, "settings": settings})
    return compile_rule_set(document), compile_rule_set(document, indexed=False)


def test_index__random_rule_sets_and_calls__decide_as_visiting_every_rule():
    # Given 300 seeded rule sets of 1-40 rules and 40 calls each
    rng = random.Random(20261214)
    skipped = 0
    for _ in range(300):
        rules = [random_rule(i, rng) for i in range(rng.randint(1, 40))]
        indexed, reference = both(rules, default_action=rng.choice(["allow", "block", "require_approval"]))
        for _ in range(40):
            call = random_call(rng)
            exceeded_every = rng.choice([1, 2, 1000])
            # When both decide it
            # Then the decision (every field) and the rate-limit questions are the same
            assert decide_recording(indexed, call, exceeded_every) == decide_recording(
                reference, call, exceeded_every
            ), (rules, call)
            skipped += len(reference.rules_to_visit(call)) - len(indexed.rules_to_visit(call))
    # And the index did skip rules (a test of an index that never skips would prove nothing)
    assert skipped > 10_000


def test_index__rule_needing_an_absent_argument__is_not_visited():
    # Given a tool rule that needs `bucket` and one that reads no argument
    rules = [
        {"id": "needs", "name": "n", "action": "block", "tools": ["t"],
         "conditions": [{"field": "arguments.bucket", "operator": "starts_with", "value": "s3"}]},
        {"id": "any", "name": "a", "action": "warn", "tools": ["t"],
         "conditions": [{"field": "context.role", "operator": "equals", "value": "admin"}]},
    ]  # fmt: skip
    indexed, _ = both(rules)
    # When a call without `bucket` is decided
    # Then only the rule that reads no argument is visited
    assert [r.id for r in indexed.rules_to_visit(ToolCall("t", {"path": "/x"}))] == ["any"]
    # And a call with it visits both, in document order
    assert [r.id for r in indexed.rules_to_visit(ToolCall("t", {"bucket": None}))] == ["needs", "any"]
    assert [r.id for r in indexed.rules_for("t")] == ["needs", "any"]


@pytest.mark.parametrize(
    ("condition", "indexed_on"),
    [
        ({"field": "arguments.x", "operator": "equals", "value": "v"}, ("x",)),
        ({"field": "x", "operator": "greater_than", "value": 1}, ("x",)),
        ({"field": "arguments.x.y", "operator": "contains", "value": "v"}, ("x",)),
        ({"field": "x.y", "operator": "in", "value": ["v"]}, ("x",)),
        # These hold for a missing field: the rule must be visited for every call
        ({"field": "arguments.x", "operator": "not_equals", "value": "v"}, ()),
        ({"field": "arguments.x", "operator": "not_in", "value": ["v"]}, ()),
        ({"field": "arguments.x", "operator": "equals", "value": None}, ()),
        ({"field": "arguments.x", "operator": "in", "value": ["v", None]}, ()),
        # Not arguments
        ({"field": "context.x", "operator": "equals", "value": "v"}, ()),
        ({"field": "agent_id", "operator": "equals", "value": "v"}, ()),
        ({"field": "arguments", "operator": "contains", "value": "v"}, ()),
    ],
)
def test_index__condition__indexed_only_when_false_without_its_argument(condition, indexed_on):
    # Given a rule with one condition
    indexed, _ = both([{"id": "r", "name": "r", "action": "block", "conditions": [condition]}])
    # Then the rule needs the argument exactly when the condition cannot hold without it
    assert indexed.rules_for("t")[0].needs_any_of == indexed_on


@pytest.mark.parametrize(
    ("expression", "needs"),
    [
        ("args.amount > 100", "amount"),
        ("arguments.amount > 100", "amount"),
        ("context.role == 'admin' && args.bucket.startsWith('s3')", "bucket"),
        ("has(args.x)", "x"),
        ("args.x.y.z == 1", "x"),
        ("(args.x == 'a' || args.x == 'b') && context.role == 'r'", "x"),
        ("size(args.items) > 2", "items"),
        ("args.x.length > 2", "x"),
        # These can hold without the argument, or read more than one name
        ("!has(args.x)", None),
        ("args.x == null", None),
        ("!args.x.startsWith('internal-')", None),
        ("args.x > 1 || args.y > 1", None),
        ("args.x == args.y", None),
        ("args['x'] == 'a'", None),
        ("args.x.exists(v, v == 'a')", None),
        ("args.x.exists(args, args.y == 'a')", None),
        ("context.role == 'admin'", None),
        ("args.x ? false : true", None),
        ("!(args.x > 3)", None),
    ],
)
def test_index__when_expression__needs_an_argument_only_when_false_without_it(expression, needs):
    # When the expression is compiled
    compiled = compile_when(expression)
    # Then the argument it needs is the one without which it is false
    assert compiled.needs_argument == needs
    if needs is not None:
        assert compiled.test({"args": {}, "context": {"role": "admin"}, "tool_name": "t"}) is False


def test_index__first_block_in_document_order__decides_across_indexed_and_unindexed_rules():
    # Given a global unindexed block after an indexed tool block, and an indexed allow before both
    rules = [
        {"id": "allow-a", "name": "allow", "action": "allow", "when": "args.a == 'x'"},
        {"id": "global-block", "name": "g", "action": "block", "when": "args.a != 'nope'"},
        {"id": "tool-block", "name": "t", "action": "block", "tools": ["t"], "when": "has(args.b)"},
        {"id": "log-b", "name": "l", "action": "log", "tools": ["t"], "when": "args.b == 1"},
    ]
    indexed, reference = both(rules)
    call = ToolCall("t", {"a": "x", "b": 1})
    # When it is decided
    decision = indexed.evaluate(call)
    # Then the global rule (tried before the tool's own) decides, as without the index
    assert (decision.decision, decision.rule_id) == ("deny", "global-block")
    assert decision == reference.evaluate(call)
    # And the index visits the same rules in the same order for it
    assert [r.id for r in indexed.rules_to_visit(call)] == ["allow-a", "global-block", "tool-block", "log-b"]


def test_index__condition_groups__visited_when_any_group_can_hold():
    # Given an OR of a group needing `a` and a group needing `b`
    rules = [
        {"id": "r", "name": "r", "action": "block", "condition_groups": [
            [{"field": "arguments.a", "operator": "equals", "value": "x"}],
            [{"field": "arguments.b", "operator": "equals", "value": "y"}],
        ]},
    ]  # fmt: skip
    indexed, _ = both(rules)
    # Then a call with only `b` still meets the rule, once
    assert [r.id for r in indexed.rules_to_visit(ToolCall("t", {"a": "x", "b": "y"}))] == ["r"]
    assert indexed.evaluate(ToolCall("t", {"b": "y"})).rule_id == "r"
    # And a call with neither does not visit it
    assert indexed.rules_to_visit(ToolCall("t", {"c": 1})) == ()


def test_index__group_without_an_argument__makes_the_rule_always_visited():
    # Given an OR whose second group reads only the context
    rules = [
        {"id": "r", "name": "r", "action": "block", "condition_groups": [
            [{"field": "arguments.a", "operator": "equals", "value": "x"}],
            [{"field": "context.role", "operator": "equals", "value": "admin"}],
        ]},
    ]  # fmt: skip
    indexed, _ = both(rules)
    # Then a call without `a` is still decided by it
    assert indexed.evaluate(ToolCall("t", {}, {"role": "admin"})).rule_id == "r"


def test_index__disabled_rule__never_visited():
    # Given a disabled rule that would match
    rules = [{"id": "off", "name": "o", "action": "block", "enabled": False, "when": "has(args.a)"}]
    indexed, _ = both(rules)
    # Then it is not a candidate and the default decides
    call = ToolCall("t", {"a": 1})
    assert indexed.rules_to_visit(call) == ()
    assert indexed.evaluate(call).rule_id is None


def test_index__rate_limited_rules__asked_in_rule_order_only_for_rules_that_match():
    # Given two rate-limited rules on different arguments and one unindexed
    limit = [{"scope": "global", "window_seconds": 60, "max_calls": 1}]
    rules = [
        {"id": "on-b", "name": "b", "action": "block", "when": "has(args.b)", "rate_limits": limit},
        {"id": "on-a", "name": "a", "action": "block", "when": "has(args.a)", "rate_limits": limit},
        {"id": "always", "name": "c", "action": "warn", "rate_limits": limit},
    ]
    indexed, reference = both(rules)
    for arguments in ({"a": 1}, {"a": 1, "b": 2}, {}):
        call = ToolCall("t", arguments)
        # Then the questions (never exceeded) come in the same order as without the index
        assert decide_recording(indexed, call, 1000) == decide_recording(reference, call, 1000)
    assert decide_recording(indexed, ToolCall("t", {"a": 1, "b": 2}), 1000)[1] == ["on-b", "on-a", "always"]


def test_index__unknown_tool__uses_the_global_rules_index():
    # Given a global rule needing `a` and a tool rule
    rules = [
        {"id": "g", "name": "g", "action": "block", "when": "args.a > 1"},
        {"id": "t", "name": "t", "action": "block", "tools": ["t"]},
    ]
    indexed, _ = both(rules)
    # Then a call of another tool is decided by the global rule only when it has `a`
    assert indexed.evaluate(ToolCall("other", {"a": 2})).rule_id == "g"
    assert indexed.evaluate(ToolCall("other", {"b": 2})).rule_id is None
