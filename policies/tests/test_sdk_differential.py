"""Differential property test: for generated Policy IR v1 rule sets and calls, the server
engine's decision and deciding rule equal what the published SDK's local engine decides
(``Veto.from_rules(rules=...).guard(...)``, veto==0.15.2).

Generated within what both engines define the same way: argument fields (the SDK reads
``context.*`` from its own clock only), every IR operator, conditions and groups, tool and
agent scoping, ``enabled``, all actions. ``matches`` patterns are ones Python's ``re`` and
RE2 read identically and that pass the SDK's safety heuristic (where they differ, the
server refuses the pattern at upload instead: see the README).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from veto import Veto

from policies.engine import HistoryEntry, ToolCall, compile_rule_set, normalize_rule_set

TOOLS = ["export", "deploy", "send_sms"]
# A small shared vocabulary, so that conditions are often true and often false.
KEYS = ["amount", "bucket", "tags"]
AGENTS = ["agent-a", "agent-b"]
PATTERNS = ["^internal", "secret", r"\d{3}", "^[a-z]+$", "(foo|bar)baz", "x.y"]
TIMESTAMPS = ["2026-11-22T08:30:00+00:00", "2026-11-22T23:15:00+01:00", "2026-11-23T12:00:00Z", "yesterday"]

# Pairs that differ only in case: the IR's string operators are case-insensitive.
# "a,b;c" and friends: length_greater_than counts the items of a comma/semicolon list in a string.
words = st.sampled_from(
    ["internal-a", "INTERNAL-A", "public", "Public", "secret123", "foobaz", "", "a,b;c", "x,y"]
)
scalars = st.one_of(
    words,
    st.integers(min_value=0, max_value=12),
    st.sampled_from([0.5, 10.0, 1e3]),
    st.booleans(),
    st.none(),
)
# Call arguments lean on the rules' own vocabulary so that conditions decide often.
values = st.one_of(words, words, scalars, st.lists(words, max_size=4), st.sampled_from(TIMESTAMPS))


def condition() -> st.SearchStrategy[dict[str, Any]]:
    field = st.builds(
        lambda prefix, key: f"{prefix}{key}", st.sampled_from(["arguments.", ""]), st.sampled_from(KEYS)
    )
    comparable = st.one_of(
        st.builds(
            dict,
            operator=st.sampled_from(["equals", "not_equals", "contains", "not_contains"]),
            value=scalars,
        ),
        st.builds(dict, operator=st.sampled_from(["starts_with", "ends_with"]), value=words),
        st.builds(dict, operator=st.just("matches"), value=st.sampled_from(PATTERNS)),
        st.builds(dict, operator=st.sampled_from(["greater_than", "less_than"]), value=st.integers(0, 12)),
        st.builds(dict, operator=st.just("length_greater_than"), value=st.integers(0, 5)),
        st.builds(dict, operator=st.sampled_from(["in", "not_in"]), value=st.lists(scalars, max_size=4)),
        st.builds(
            dict,
            operator=st.sampled_from(["within_hours", "outside_hours"]),
            value=st.fixed_dictionaries(
                {"start": st.sampled_from(["09:00", "22:00"]), "end": st.sampled_from(["17:00", "06:00"])},
                optional={"days": st.lists(st.sampled_from(["mon", "sat", "sun"]), min_size=1, max_size=2)},
            ).map(lambda window: {**window, "timezone": "Europe/Berlin"}),
        ),
    )
    return st.builds(lambda f, spec: {"field": f, **spec}, field, comparable)


@st.composite
def rule(draw: st.DrawFn, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": f"r{index}",
        "name": f"rule {index}",
        "action": draw(st.sampled_from(["block", "warn", "log", "allow", "require_approval"])),
    }
    if draw(st.booleans()):
        spec["tools"] = draw(st.lists(st.sampled_from(TOOLS), min_size=1, max_size=2, unique=True))
    # Unconditional rules are rare: they would decide most calls and hide the operators.
    shape = draw(st.sampled_from(["conditions"] * 4 + ["groups"] * 3 + ["none"]))
    if shape == "conditions":
        spec["conditions"] = draw(st.lists(condition(), min_size=1, max_size=3))
    elif shape == "groups":
        spec["condition_groups"] = draw(
            st.lists(st.lists(condition(), min_size=1, max_size=2), min_size=1, max_size=3)
        )
    if draw(st.integers(0, 5)) == 0:
        spec["enabled"] = False
    agents = draw(st.sampled_from([None, None, ["agent-a"], {"not": ["agent-b"]}]))
    if agents is not None:
        spec["agents"] = agents
    return spec


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=0, max_value=6))
    return [draw(rule(i)) for i in range(count)]


random_calls = st.tuples(
    st.sampled_from(TOOLS),
    st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=3),
    st.sampled_from([None, *AGENTS]),
)


def values_near(condition: dict[str, Any]) -> list[Any]:
    """Argument values at the edges of one condition: where a wrong operator would show."""
    expected = condition["value"]
    operator = condition["operator"]
    if operator in ("greater_than", "less_than"):
        return [expected - 1, expected, expected + 1, str(expected + 1), True, None]
    if operator == "length_greater_than":
        return ["a,b;c", "x,y", "a", "", ["a"] * expected, ["a"] * (expected + 1), "q" * (expected + 1)]
    if operator in ("within_hours", "outside_hours"):
        return TIMESTAMPS
    if operator == "matches":
        return ["internal-x", "INTERNAL-1", "has secret", "abc123", "foobaz", "xzy", "x.y"]
    if isinstance(expected, list):
        return [*expected, *(v.swapcase() for v in expected if isinstance(v, str)), "other", 3]
    if isinstance(expected, str):
        return [expected, expected.swapcase(), f"{expected}-tail", f"head-{expected}", [expected], ""]
    return [expected, str(expected), [expected], None, 1, True]


@st.composite
def calls_for(draw: st.DrawFn, rules: list[dict[str, Any]]) -> tuple[str, dict[str, Any], str | None]:
    """Mostly calls aimed at one rule: every condition of it (or of one of its groups) gets a
    value at its edge, so whether that rule fires is what the two engines must agree on."""
    conditional = [r for r in rules if r.get("conditions") or r.get("condition_groups")]
    if not conditional or draw(st.integers(0, 4)) == 0:
        return draw(random_calls)
    target = draw(st.sampled_from(conditional))
    conditions = target.get("conditions") or draw(st.sampled_from(target["condition_groups"]))
    arguments = {
        c["field"].removeprefix("arguments."): draw(st.sampled_from(values_near(c))) for c in conditions
    }
    tool = draw(st.sampled_from(target.get("tools") or TOOLS))
    return tool, arguments, draw(st.sampled_from([None, *AGENTS]))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any], str | None]]]:
    rules = draw(rule_sets())
    return rules, draw(st.lists(calls_for(rules), min_size=1, max_size=4))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_engine__generated_rule_sets__decide_exactly_like_the_sdk(scenario):
    rules, call_list = scenario
    ours = compile_rule_set(normalize_rule_set({"version": "1.0", "rules": rules}))
    for tool, arguments, agent_id in call_list:
        sdk = Veto.from_rules(rules=rules, agent_id=agent_id, log_level="silent")
        expected = asyncio.run(sdk.guard(tool, arguments))
        actual = ours.evaluate(ToolCall(tool, arguments, {"agent_id": agent_id}))
        deciding = next((r for r in rules if r["id"] == expected.rule_id), None)
        conditional = deciding is not None and ("conditions" in deciding or "condition_groups" in deciding)
        event(f"decision: {expected.decision}{' by a conditional rule' if conditional else ''}")
        assert (actual.decision, actual.rule_id) == (expected.decision, expected.rule_id), (
            f"tool={tool} arguments={arguments} agent={agent_id}"
        )


# Sequence constraints: one SDK instance per scenario keeps its call history, as one session
# on the server does. ``within`` is absent or an hour, so wall-clock jitter cannot decide.
def history_condition() -> st.SearchStrategy[dict[str, Any]]:
    on_decision = st.builds(
        lambda operator, value: {"field": "decision", "operator": operator, "value": value},
        st.sampled_from(["equals", "not_equals"]),
        st.sampled_from(["allow", "require_approval"]),
    )
    return st.one_of(condition(), condition(), on_decision)


def sequence_constraint() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"tool": st.sampled_from(TOOLS)},
        optional={
            "conditions": st.lists(history_condition(), min_size=1, max_size=2),
            "within": st.just(3600),
        },
    )


@st.composite
def sequence_rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    rules = [draw(rule(i)) for i in range(draw(st.integers(min_value=1, max_value=4)))]
    for spec in rules:
        if draw(st.booleans()):
            # Sequence rules usually stand on history alone; sometimes they also have conditions.
            if draw(st.integers(0, 2)):
                spec.pop("conditions", None)
                spec.pop("condition_groups", None)
            for key in draw(st.sampled_from([["blocked_by"], ["requires"], ["blocked_by", "requires"]])):
                spec[key] = draw(st.lists(sequence_constraint(), min_size=1, max_size=2))
    return rules


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=sequence_rule_sets(), call_list=st.lists(random_calls, min_size=2, max_size=6))
def test_engine__sequence_constraints_over_a_session__decide_exactly_like_the_sdk(rules, call_list):
    ours = compile_rule_set(normalize_rule_set({"version": "1.0", "rules": rules}))
    sdk = Veto.from_rules(rules=rules, log_level="silent")
    history: list[HistoryEntry] = []
    for position, (tool, arguments, agent_id) in enumerate(call_list):
        expected = asyncio.run(sdk.guard(tool, arguments, agent_id=agent_id))
        now = datetime.now(UTC)
        actual = ours.evaluate(ToolCall(tool, arguments, {"agent_id": agent_id}, now=now, history=history))
        deciding = next((r for r in rules if r["id"] == expected.rule_id), None)
        event(
            f"decision: {expected.decision}"
            f"{' by a sequence rule' if deciding and ('blocked_by' in deciding or 'requires' in deciding) else ''}"
        )
        assert (actual.decision, actual.rule_id) == (expected.decision, expected.rule_id), (
            f"call {position}: tool={tool} arguments={arguments} agent={agent_id} history={history}"
        )
        # The server remembers what the SDK's history matches on: calls that were not denied.
        if actual.decision != "deny":
            history.append(HistoryEntry(tool, dict(arguments), actual.decision, now))
