"""Which per-tool policy changes loosen enforcement (and so take what deactivating takes).
Pure: no database."""

from __future__ import annotations

from typing import Any

import pytest

from policies.engine.loosening import constraints_loosened, tool_policy_loosened


def policy(*constraints: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "is_active": True,
        "mode": "deterministic",
        "constraints": [{"argumentName": "amount", "enabled": True, **c} for c in constraints],
        "output_rules": None,
        "llm_config": None,
        "session_constraints": None,
        **fields,
    }


BASE = policy({"greaterThan": 0, "maximum": 1000, "required": True})


@pytest.mark.parametrize(
    ("after", "words"),
    [
        (None, "deleted"),
        ({**BASE, "is_active": False}, "deactivated"),
        ({**BASE, "mode": "llm"}, "mode changes"),
        (policy(), "removed or disabled"),
        (policy({"greaterThan": 0, "maximum": 1000, "required": True, "enabled": False}), "removed"),
        (policy({"greaterThan": 0, "maximum": 100000, "required": True}), "maximum 1000"),
        (policy({"greaterThanOrEqual": 0, "maximum": 1000, "required": True}), "greaterThan 0"),
        (policy({"greaterThan": -5, "maximum": 1000, "required": True}), "greaterThan 0"),
        (policy({"greaterThan": 0, "maximum": 1000}), "required"),
        (policy({"greaterThan": 0, "lessThan": 1001, "required": True}), "maximum 1000"),
        (
            policy({"greaterThan": 0, "maximum": 1000, "required": True, "action": "require_approval"}),
            "now holds calls for approval",
        ),
    ],
)
def test_tool_policy_loosened__change_that_lets_more_through__named(after, words):
    # Given the stored policy BASE, When it would become ``after``
    reasons = tool_policy_loosened(BASE, after)
    # Then the change loosens, and the reason says how
    assert reasons and any(words in reason for reason in reasons), reasons


@pytest.mark.parametrize(
    ("before", "after", "words"),
    [
        ({"enum": ["EUR", "USD"]}, {"enum": ["EUR", "USD", "GBP"]}, "enum"),
        ({"enum": ["EUR", "USD"]}, {}, "enum"),
        ({"regex": "^[a-z]+$"}, {}, "regex"),
        ({"regex": "^[a-z]+$"}, {"regex": "^[a-z0-9]+$"}, "regex"),
        ({"maxLength": 10}, {"maxLength": 11}, "maxLength"),
        ({"minLength": 2}, {"minLength": 1}, "minLength"),
        ({"maxItems": 3}, {}, "maxItems"),
        ({"minItems": 1}, {"minItems": 0}, "minItems"),
        ({"notNull": True}, {"notNull": False}, "notNull"),
        ({"lessThan": 10}, {"lessThanOrEqual": 10}, "lessThan"),
    ],
)
def test_constraints_loosened__check_widened_or_removed__named(before, after, words):
    # Given a constraint, When one of its checks is widened or dropped
    reasons = constraints_loosened(
        [{"argumentName": "x", "enabled": True, **before}], [{"argumentName": "x", "enabled": True, **after}]
    )
    # Then that check is named
    assert any(words in reason for reason in reasons), reasons


def test_constraints_loosened__require_approval_constraint_removed__loosens():
    # Given a constraint that holds big amounts for approval, When it is removed
    held = [{"argumentName": "amount", "enabled": True, "maximum": 100, "action": "require_approval"}]
    # Then calls it held would be allowed: a loosening
    assert constraints_loosened(held, []) == ["'amount': its constraint is removed or disabled"]


def test_constraints_loosened__constraint_on_another_argument__does_not_cover():
    # Given a maximum on amount, When the same maximum moves to another argument
    reasons = constraints_loosened(
        [{"argumentName": "amount", "enabled": True, "maximum": 10}],
        [{"argumentName": "fee", "enabled": True, "maximum": 10}],
    )
    # Then amount is unchecked: a loosening
    assert reasons


@pytest.mark.parametrize(
    "after",
    [
        BASE,
        policy({"greaterThan": 0, "maximum": 500, "required": True}),
        policy({"greaterThan": 10, "maximum": 1000, "required": True, "notNull": True}),
        policy({"minimum": 1, "lessThan": 1000, "required": True}),  # other keys, narrower ranges
        policy({"greaterThan": 0}, {"maximum": 1000, "required": True}),  # split across two constraints
        policy({"greaterThan": 0, "maximum": 1000, "required": True}, {"regex": "^x$", "enabled": False}),
        policy(
            {"greaterThan": 0, "maximum": 1000, "required": True},
            {"maximum": 5, "action": "require_approval"},
        ),
        {**BASE, "is_active": True, "constraints": list(reversed(BASE["constraints"]))},
    ],
)
def test_tool_policy_loosened__same_or_stricter__not_loosened(after):
    # Given BASE, When it becomes the same or a stricter policy
    # Then nothing is loosened
    assert tool_policy_loosened(BASE, after) == []


def test_tool_policy_loosened__inactive_policy_activated_or_enum_narrowed__not_loosened():
    # Given an inactive policy with an enum, When it is activated with fewer allowed values
    before = policy({"enum": ["EUR", "USD"]}, is_active=False)
    after = policy({"enum": ["EUR"]}, is_active=True)
    # Then it enforces more, not less
    assert tool_policy_loosened(before, after) == []


def test_tool_policy_loosened__output_rules_removed__loosens():
    # Given a policy with output rules (stored before this server refused them), When they go
    before = policy(output_rules=[{"pattern": "secret", "action": "redact"}])
    # Then that is a loosening
    assert tool_policy_loosened(before, policy(output_rules=None)) == ["output rules are removed or changed"]
