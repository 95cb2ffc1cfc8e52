"""Per-tool policy bodies are checked when written: every problem, each with its path."""

from __future__ import annotations

from typing import Any

import pytest

from policies.engine import RuleSetError
from policies.engine.constraints import compile_constraints, normalize_constraints, normalize_tool_policy


def problems(data: Any, *, creating: bool = True) -> dict[str, str]:
    with pytest.raises(RuleSetError) as caught:
        normalize_tool_policy(data, creating=creating, tool_name="transfer")
    return {p.path: p.message for p in caught.value.problems}


@pytest.mark.parametrize(
    ("constraint", "path", "words"),
    [
        ({"enabled": True}, "constraints[1].argumentName", "non-empty string"),
        ({"argumentName": "x", "regex": "(a)\\1"}, "constraints[1].regex", "not supported"),
        ({"argumentName": "x", "regex": "(?=a)b"}, "constraints[1].regex", "not supported"),
        ({"argumentName": "x", "regex": "(a|b)+"}, "constraints[1].regex", "ReDoS"),
        ({"argumentName": "x", "regex": "a" * 257}, "constraints[1].regex", "256"),
        ({"argumentName": "x", "regex": "\\pL"}, "constraints[1].regex", "Python re"),
        ({"argumentName": "x", "regex": "[[:alpha:]]"}, "constraints[1].regex", "Python re"),
        ({"argumentName": "x", "regex": 5}, "constraints[1].regex", "string"),
        ({"argumentName": "x", "maximum": "10"}, "constraints[1].maximum", "finite number"),
        ({"argumentName": "x", "maximum": True}, "constraints[1].maximum", "finite number"),
        ({"argumentName": "x", "minLength": -1}, "constraints[1].minLength", "whole number"),
        ({"argumentName": "x", "maxItems": 1.5}, "constraints[1].maxItems", "whole number"),
        ({"argumentName": "x", "enum": "eur"}, "constraints[1].enum", "list of strings"),
        ({"argumentName": "x", "enum": [1, 2]}, "constraints[1].enum", "list of strings"),
        ({"argumentName": "x", "enum": []}, "constraints[1].enum", "at least one"),
        ({"argumentName": "x", "required": "yes"}, "constraints[1].required", "true or false"),
        ({"argumentName": "x", "enabled": "yes"}, "constraints[1].enabled", "true or false"),
        ({"argumentName": "x", "minimum": 5, "maximum": 1}, "constraints[1].minimum", "nothing can pass"),
        ({"argumentName": "x", "greaterThan": 5, "lessThan": 5}, "constraints[1].greaterThan", "nothing"),
        (
            {"argumentName": "x", "dynamicMaximum": "x"},
            "constraints[1].dynamicMaximum",
            "names the argument itself",
        ),
        (
            {"argumentName": "x", "action": "escalate"},
            "constraints[1].action",
            "deny (the default) or require_approval",
        ),
        ({"argumentName": "x", "regexx": "a"}, "constraints[1].regexx", "unknown constraint key"),
        ("amount", "constraints[1]", "must be an object"),
    ],
)
def test_constraints__bad_second_constraint__refused_naming_its_path(constraint, path, words):
    # Given a valid first constraint and a bad second one
    body = {
        "toolName": "transfer",
        "mode": "deterministic",
        "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 10}, constraint],
    }
    # When the body is checked, Then exactly that path is named, with a useful message
    found = problems(body)
    assert list(found) == [path]
    assert words in found[path]


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"mode": "deterministic"}, "toolName", "non-empty"),
        ({"toolName": " x", "mode": "deterministic"}, "toolName", "whitespace"),
        ({"toolName": "x" * 191, "mode": "deterministic"}, "toolName", "190"),
        ({"toolName": "export", "mode": "deterministic"}, "toolName", "export"),
        ({"toolName": "t"}, "mode", "required"),
        ({"toolName": "t", "mode": "fuzzy"}, "mode", "deterministic or llm"),
        ({"toolName": "t", "mode": "llm"}, "llmConfig", "needs an llmConfig"),
        ({"toolName": "t", "mode": "deterministic", "constraints": {}}, "constraints", "list"),
        (
            {"toolName": "t", "mode": "deterministic", "llmConfig": {"description": "x"}},
            "llmConfig.exceptions",
            "exceptions is required",
        ),
        (
            {"toolName": "t", "mode": "deterministic", "outputRules": 3},
            "outputRules",
            "list",
        ),
        ({"toolName": "t", "mode": "deterministic", "rateLimits": 3}, "rateLimits", "list"),
        (
            {"toolName": "t", "mode": "deterministic", "sessionConstraints": {"maxCalls": 0}},
            "sessionConstraints.maxCalls",
            "whole number",
        ),
        (
            {"toolName": "t", "mode": "deterministic", "sessionConstraints": {"budget": 5}},
            "sessionConstraints.budget",
            "needs spendArgument",
        ),
        (
            {"toolName": "t", "mode": "deterministic", "sessionConstraints": {"whatever": 1}},
            "sessionConstraints.whatever",
            "unknown",
        ),
        ({"toolName": "t", "mode": "deterministic", "sessionConstraints": 3}, "sessionConstraints", "object"),
        ({"toolName": "t", "mode": "deterministic", "colour": "red"}, "colour", "unknown policy key"),
        (["toolName"], "", "JSON object"),
    ],
)
def test_policy__bad_create_body__refused_naming_the_field(body, path, words):
    found = problems(body)
    assert list(found) == [path]
    assert words in found[path]


def test_policy__update_renaming_the_tool__refused():
    assert "cannot be renamed" in problems({"toolName": "other"}, creating=False)["toolName"]


def test_policy__fetched_policy_sent_back__server_keys_and_marker_ignored():
    # Given a policy as GET returns it, with the server's marker in sessionConstraints
    fetched = {
        "_id": "5",
        "id": "5",
        "toolName": "transfer",
        "mode": "deterministic",
        "version": 3,
        "isActive": True,
        "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 10.0}],
        "sessionConstraints": {"evaluatedBy": "server", "ruleSet": {"version": 2, "ruleIds": ["a"]}},
        "rateLimits": None,
        "projectId": "p",
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }
    # When it is sent back as an update, Then it is accepted, constraints as they were
    assert normalize_tool_policy(fetched, creating=False, tool_name="transfer") == {
        "mode": "deterministic",
        "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 10.0}],
        "session_constraints": None,
        "rate_limits": None,
    }


def test_constraints__nulls_mean_unset_and_enabled_defaults_to_true():
    assert normalize_constraints(
        [{"argumentName": "a", "maximum": None, "regex": None, "enabled": None}]
    ) == [{"argumentName": "a", "enabled": True}]


def test_constraints__many_problems__all_reported_at_once():
    with pytest.raises(RuleSetError) as caught:
        normalize_constraints([{"argumentName": ""}, {"argumentName": "b", "maximum": "x", "enum": []}])
    assert [p.path for p in caught.value.problems] == [
        "constraints[0].argumentName",
        "constraints[1].maximum",
        "constraints[1].enum",
    ]


# --- notRegex and notEnum: the server's own checks (the SDK's admin model has them; its local
# validator does not, so a policy with one is always decided by the server) ------------------


def test_not_regex_and_not_enum__stored_and_checked_after_the_sdks_checks():
    # Given a constraint refusing strings that look like card numbers, and two refused values
    stored = normalize_constraints(
        [{"argumentName": "note", "notRegex": r"\d{4}-\d{4}-\d{4}-\d{4}", "notEnum": ["root", "admin"]}]
    )
    checker = compile_constraints(stored)

    # When calls are checked, Then only the forbidden ones fail, with their own words
    assert checker.check({"note": "thanks for the order"}) == []
    [card] = checker.check({"note": "card 1234-5678-9012-3456"})
    assert (card.constraint_type, card.reason) == (
        "notRegex",
        r"Argument 'note' failed: value matches forbidden pattern \d{4}-\d{4}-\d{4}-\d{4}",
    )
    [root] = checker.check({"note": "root"})
    assert root.constraint_type == "notEnum" and "refused values: root, admin" in root.reason
    assert checker.check({"note": 5}) == []  # not a string: as regex and enum, not checked


@pytest.mark.parametrize(
    ("constraint", "path", "words"),
    [
        ({"argumentName": "a", "notRegex": "(unclosed"}, "constraints[0].notRegex", ""),
        ({"argumentName": "a", "notRegex": 5}, "constraints[0].notRegex", "string"),
        ({"argumentName": "a", "notEnum": []}, "constraints[0].notEnum", "non-empty"),
        ({"argumentName": "a", "notEnum": [1]}, "constraints[0].notEnum", "strings"),
        ({"argumentName": "a", "dynamicMinimum": ""}, "constraints[0].dynamicMinimum", "another argument"),
        ({"argumentName": "a", "dynamicMaximum": 5}, "constraints[0].dynamicMaximum", "another argument"),
    ],
)
def test_not_regex_and_not_enum__bad_values__refused_at_their_path(constraint, path, words):
    found = problems({"toolName": "t", "mode": "deterministic", "constraints": [constraint]})
    assert list(found) == [path]
    assert words in found[path]


def test_dynamic_bounds__another_arguments_number__missing_bound_fails_closed():
    # Given an amount that must lie between two other arguments of the same call
    checker = compile_constraints(
        normalize_constraints(
            [{"argumentName": "amount", "dynamicMinimum": "floor", "dynamicMaximum": "balance"}]
        )
    )

    # When calls are checked, Then the bounds are read from the call itself
    assert checker.check({"amount": 50, "floor": 10, "balance": 100}) == []
    [over] = checker.check({"amount": 150, "floor": 10, "balance": 100})
    assert (over.constraint_type, over.expected, over.reason) == (
        "dynamicMaximum",
        100,
        "Argument 'amount' failed: value 150 must be <= balance (100)",
    )
    [under] = checker.check({"amount": 5, "floor": 10, "balance": 100})
    assert under.constraint_type == "dynamicMinimum"
    # ... and a bound that is absent or not a number cannot be verified: the check fails
    [missing] = checker.check({"amount": 50, "floor": 10})
    assert "argument 'balance', is missing or not a number" in missing.reason
    [text] = checker.check({"amount": 50, "floor": "ten", "balance": 100})
    assert text.constraint_type == "dynamicMinimum"
