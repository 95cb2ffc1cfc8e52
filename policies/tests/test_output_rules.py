"""A per-tool policy's outputRules are checked when written: what is stored is what the SDK's
output validator applies, and every problem is named with its path. Pure: no database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from veto.core.output_validator import OutputValidator, OutputValidatorOptions
from veto.utils.logger import create_logger

from policies.engine.output_rules import MAX_OUTPUT_CONDITIONS, MAX_OUTPUT_RULES, normalize_output_rules


class Collected:
    """Any object with ``add(path, message)`` collects the problems."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.items[path] = message


def check(raw: Any) -> tuple[list[dict[str, Any]] | None, dict[str, str]]:
    problems = Collected()
    stored = normalize_output_rules(raw, "outputRules", problems)
    return stored, problems.items


def sdk_validates(rules: list[dict[str, Any]], tool_name: str, output: Any):
    """What the published SDK does with ``output`` under these rules (as its local rules)."""
    validator = OutputValidator(
        OutputValidatorOptions(logger=create_logger("silent"), get_rules_for_tool=lambda _: rules)
    )
    return validator.validate(tool_name, output)


CARD = {"field": "output.card", "operator": "matches", "value": r"\d{4}-\d{4}"}
REDACT = {"id": "cards", "name": "Card numbers", "action": "redact", "output_conditions": [CARD]}
# A second redact rule, under its own id.
MASK = {**REDACT, "id": "mask"}
# A block rule with no conditions of its own (it would block every output).
BLOCK_ALL = {"id": "all", "name": "All", "action": "block"}
BLOCK = {
    "id": "secrets",
    "name": "Secrets",
    "action": "block",
    "tools": ["send_email"],
    "output_conditions": [{"field": "output", "operator": "contains", "value": "BEGIN PRIVATE KEY"}],
}


def test_normalize__admin_model_rules__stored_as_sent_and_applied_by_the_sdk():
    # Given a redact rule and a block rule in the SDK's admin model shape
    body = [{**REDACT, "redact_with": "####"}, BLOCK]
    # When they are checked
    stored, problems = check(body)
    # Then nothing is wrong, they are stored as sent
    assert problems == {}
    assert stored == body
    # And the SDK's own output validator, given them, redacts and blocks as a user expects
    redacted = sdk_validates(stored, "send_email", {"card": "pay 1234-5678 now"})
    assert redacted.decision == "allow" and redacted.output == {"card": "pay #### now"}
    blocked = sdk_validates(stored, "send_email", "-----BEGIN PRIVATE KEY-----")
    assert blocked.decision == "block"


@pytest.mark.parametrize("raw", [None, []])
def test_normalize__null_or_empty__none_without_problems(raw):
    # Given no output rules, When checked, Then nothing is stored and nothing is wrong
    assert check(raw) == (None, {})


def test_normalize__null_optional_keys__left_out():
    # Given a rule whose optional keys are null (as the SDK's models send them)
    rule = {**BLOCK, "tools": None, "redact_with": None, "description": None, "output_condition_groups": None}
    # When checked, Then they are not stored
    stored, problems = check([rule])
    assert problems == {}
    assert stored == [{key: value for key, value in rule.items() if value is not None}]


def test_normalize__empty_tools__stored_without_them():
    # Given tools: [] (to the SDK: every tool), When checked, Then stored as "every tool"
    stored, _ = check([{**BLOCK, "tools": []}])
    assert stored is not None and "tools" not in stored[0]


def test_normalize__policy_language_keys__accepted_and_honoured_by_the_sdk():
    # Given a rule with the SDK policy language's description, enabled and condition groups
    rule = {
        "id": "big",
        "name": "Big output",
        "description": "outputs over three items are blocked",
        "enabled": True,
        "action": "block",
        "output_condition_groups": [[{"field": "output", "operator": "length_greater_than", "value": 3}]],
    }
    # When checked, Then it is stored
    stored, problems = check([rule])
    assert problems == {} and stored == [rule]
    # And the SDK blocks with its description as the reason
    result = sdk_validates(stored, "list_files", ["a", "b", "c", "d"])
    assert (result.decision, result.reason) == ("block", "outputs over three items are blocked")


@pytest.mark.parametrize(
    ("rule", "path", "words"),
    [
        ("block", "outputRules[1]", "must be an object"),
        ({**BLOCK, "id": ""}, "outputRules[1].id", "non-empty string"),
        ({**BLOCK, "id": "x" * 201}, "outputRules[1].id", "at most 200"),
        ({**BLOCK, "name": 5}, "outputRules[1].name", "non-empty string"),
        ({**BLOCK, "action": "deny"}, "outputRules[1].action", "block, redact"),
        ({**BLOCK, "severity": "high"}, "outputRules[1].severity", "unknown output rule key"),
        ({**BLOCK, "enabled": "yes"}, "outputRules[1].enabled", "true or false"),
        ({**BLOCK, "tools": "send_email"}, "outputRules[1].tools", "list of tool names"),
        ({**BLOCK, "tools": ["ok", " padded "]}, "outputRules[1].tools[1]", "whitespace"),
        ({**BLOCK, "output_conditions": {"field": "output"}}, "outputRules[1].output_conditions", "list"),
        (
            {**BLOCK, "output_conditions": [{"field": "output", "operator": "like", "value": "x"}]},
            "outputRules[1].output_conditions[0].operator",
            "unknown operator",
        ),
        (
            {**BLOCK, "output_conditions": [{"field": "", "operator": "equals", "value": "x"}]},
            "outputRules[1].output_conditions[0].field",
            "dot path",
        ),
        (
            {**BLOCK, "output_conditions": [{"field": "output", "operator": "equals"}]},
            "outputRules[1].output_conditions[0].value",
            "needs a value",
        ),
        (
            {
                **BLOCK,
                "output_conditions": [{"field": "output", "operator": "greater_than", "value": "many"}],
            },
            "outputRules[1].output_conditions[0].value",
            "needs a number",
        ),
        (
            {**BLOCK, "output_conditions": [{"field": "output", "operator": "in", "value": "a"}]},
            "outputRules[1].output_conditions[0].value",
            "list",
        ),
        (
            {
                **BLOCK,
                "output_conditions": [
                    {
                        "field": "context.time",
                        "operator": "within_hours",
                        "value": {"start": "9", "end": "17:00"},
                    }
                ],
            },
            "outputRules[1].output_conditions[0].value.start",
            "HH:MM",
        ),
        (
            {**BLOCK, "output_conditions": [{"field": "output", "operator": "matches", "value": r"(a)\1"}]},
            "outputRules[1].output_conditions[0].value",
            "not supported",
        ),
        (
            {**BLOCK, "output_conditions": [{"field": "output", "operator": "matches", "value": "(a|b)+"}]},
            "outputRules[1].output_conditions[0].value",
            "ReDoS",
        ),
        (
            {**BLOCK, "output_conditions": [{"field": "output", "operator": "matches", "value": r"\pL"}]},
            "outputRules[1].output_conditions[0].value",
            "Python re",
        ),
        (
            {**BLOCK, "output_conditions": [{"field": "output", "operator": "matches", "value": "a" * 257}]},
            "outputRules[1].output_conditions[0].value",
            "256",
        ),
        (
            {**BLOCK, "output_conditions": [{"expression": "output.size > 3"}]},
            "outputRules[1].output_conditions[0].expression",
            "never matches",
        ),
        (
            {**BLOCK, "output_conditions": [{**CARD, "negate": True}]},
            "outputRules[1].output_conditions[0].negate",
            "unknown output condition key",
        ),
        (
            {**BLOCK_ALL, "output_condition_groups": [[CARD], []]},
            "outputRules[1].output_condition_groups[1]",
            "empty",
        ),
        (
            {**BLOCK, "output_condition_groups": [[CARD]]},
            "outputRules[1].output_condition_groups",
            "one or the other",
        ),
        (
            {**BLOCK_ALL, "output_condition_groups": [CARD]},
            "outputRules[1].output_condition_groups[0]",
            "must be a list",
        ),
        ({**BLOCK, "redact_with": "***"}, "outputRules[1].redact_with", "only by action redact"),
        ({**MASK, "redact_with": 5}, "outputRules[1].redact_with", "string"),
        ({**MASK, "redact_with": "x" * 1001}, "outputRules[1].redact_with", "at most 1000"),
        ({**MASK, "output_conditions": None}, "outputRules[1].output_conditions", "redacts nothing"),
        (
            {**MASK, "output_conditions": [{"field": "tool_name", "operator": "matches", "value": "x"}]},
            "outputRules[1].output_conditions",
            "redacts nothing",
        ),
        (
            {**MASK, "output_conditions": [{"field": "output", "operator": "contains", "value": "x"}]},
            "outputRules[1].output_conditions",
            "redacts nothing",
        ),
        ({**BLOCK, "id": "cards"}, "outputRules[1].id", "already used by outputRules[0]"),
    ],
)
def test_normalize__bad_second_rule__refused_naming_its_path(rule, path, words):
    # Given a valid first rule and a bad second one
    _, problems = check([REDACT, rule])
    # When checked, Then exactly that path is named, with a useful message
    assert list(problems) == [path], problems
    assert words in problems[path]


def test_normalize__problems_in_several_rules__all_reported():
    # Given two rules, each wrong in two places
    body = [{"id": "", "name": "a", "action": "mask"}, {"id": "b", "name": "", "action": "log", "x": 1}]
    # When checked, Then all four are reported, each where it is
    _, problems = check(body)
    assert set(problems) == {
        "outputRules[0].id",
        "outputRules[0].action",
        "outputRules[1].name",
        "outputRules[1].x",
    }


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"id": "a"}, "must be a list"),
        ([BLOCK] * (MAX_OUTPUT_RULES + 1), f"at most {MAX_OUTPUT_RULES}"),
    ],
)
def test_normalize__not_a_list_or_too_many__refused_at_the_top(raw, words):
    # Given outputRules that are not a list, or too many rules, When checked
    stored, problems = check(raw)
    # Then the list itself is named
    assert stored is None and list(problems) == ["outputRules"] and words in problems["outputRules"]


def test_normalize__too_many_conditions__refused():
    # Given a rule with one condition too many, When checked, Then its conditions are named
    _, problems = check([{**BLOCK, "output_conditions": [CARD] * (MAX_OUTPUT_CONDITIONS + 1)}])
    assert list(problems) == ["outputRules[0].output_conditions"]


def test_normalize__redaction_on_a_top_level_key__applied_by_the_sdk():
    # Given a redact rule naming a key of a dict output without the output. prefix
    rule = {
        "id": "mail",
        "name": "Mail addresses",
        "action": "redact",
        "output_conditions": [{"field": "email", "operator": "matches", "value": r"@\w+"}],
    }
    stored, problems = check([rule])
    assert problems == {}
    # When the SDK validates such an output, Then it redacts with its default text
    result = sdk_validates(stored, "lookup", {"email": "ann@example.com"})
    assert result.output == {"email": "ann[REDACTED].com"}


# Patterns made of pieces whose combinations hit RE2's, Python's and the SDK heuristic's limits.
_pattern_pieces = st.sampled_from(
    ["a", "b", ".", "*", "+", "?", "(", ")", "|", "[a-z]", "\\d", "\\1", "(?=x)", "{2}", "^", "$", "\\pL"]
)


@settings(max_examples=400, deadline=None)
@given(pattern=st.lists(_pattern_pieces, min_size=1, max_size=8).map("".join))
def test_normalize__accepted_matches_pattern__the_sdk_runs_it(pattern):
    # Given a block rule matching any pattern
    rule = {
        "id": "p",
        "name": "P",
        "action": "block",
        "output_conditions": [{"field": "output", "operator": "matches", "value": pattern}],
    }
    # When it is accepted
    stored, problems = check([rule])
    if problems:
        return
    # Then the SDK compiles it (its heuristic and Python's re accept it): a rule stored here never
    # silently fails open in the SDK
    from veto.rules.condition_evaluator import create_safe_regex

    assert stored is not None
    assert create_safe_regex(pattern) is not None
