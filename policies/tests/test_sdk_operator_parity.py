"""Every IR operator, over a grid of expected values × field values, against the published
SDK's own ``evaluate_legacy_condition``: exhaustive where the property test
(test_sdk_differential.py) samples, so a subtle operator difference cannot hide behind
rule precedence."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from veto.rules.condition_evaluator import evaluate_legacy_condition

from policies.engine.conditions import OPERATORS, compile_operator

WORDS = [
    "internal-a",
    "INTERNAL-A",
    "Internal-A-tail",
    "head-internal-a",
    "public",
    "",
    " ",
    "a,b;c",
    "x,y",
    ";",
]
# Strings float() reads too: Unicode digits, underscores, surrounding (Unicode) space, inf/nan.
NUMBERS = [
    -1,
    0,
    1,
    2,
    2.5,
    3,
    10,
    1e3,
    "3",
    "2.5",
    "abc",
    "٣",
    "1_000",
    " 2 ",
    "\u20033",
    "inf",
    "nan",
    "-.5",
]
TIMESTAMPS = [
    "2026-11-22T08:30:00+00:00",
    "2026-11-22T16:59:00+01:00",
    "2026-11-22T23:15:00+01:00",
    "2026-11-23T00:30:00Z",
    "2026-11-21T12:00:00",
    1795339800,
    "not a time",
]
FIELD_VALUES: list[Any] = [
    *WORDS,
    *NUMBERS,
    *TIMESTAMPS,
    True,
    False,
    None,
    [],
    ["internal-a"],
    ["INTERNAL-A", "b"],
    ["a"] * 3,
    {"k": 1},
    {},
]
WINDOWS = [
    {"start": "09:00", "end": "17:00", "timezone": "Europe/Berlin"},
    {"start": "22:00", "end": "06:00", "timezone": "UTC"},
    {"start": "09:00", "end": "09:00", "timezone": "America/New_York"},
    {"start": "00:00", "end": "23:59", "timezone": "UTC", "days": ["sat", "sun"]},
    {"start": "22:00", "end": "06:00", "timezone": "Asia/Tokyo", "days": ["mon"]},
]
EXPECTED: dict[str, list[Any]] = {
    "equals": [*WORDS, *NUMBERS, True, None, ["internal-a"]],
    "not_equals": [*WORDS, *NUMBERS, True, None],
    "contains": [*WORDS, 1, "internal-a"],
    "not_contains": [*WORDS, 1],
    "starts_with": WORDS,
    "ends_with": WORDS,
    "matches": ["^internal", "INTERNAL", r"\d{3}", "^[a-z]+$", "(foo|bar)baz", "a.b", "tail$"],
    "greater_than": [n for n in NUMBERS if n != "abc"],
    "less_than": [n for n in NUMBERS if n != "abc"],
    "length_greater_than": [0, 1, 2, 3, 4, "2"],
    "in": [["internal-a", 3], ["INTERNAL-A"], [True, None], [], [1, "x,y"]],
    "not_in": [["internal-a", 3], ["INTERNAL-A"], [True, None], [], [1, "x,y"]],
    "within_hours": WINDOWS,
    "outside_hours": WINDOWS,
}


def test_expected_grid__covers_every_operator():
    assert set(EXPECTED) == set(OPERATORS)


@pytest.mark.parametrize("operator", OPERATORS)
def test_operator__agrees_with_the_sdk_on_every_pair(operator):
    mismatches = []
    for expected, value in itertools.product(EXPECTED[operator], FIELD_VALUES):
        ours = compile_operator(operator, expected)(value)
        theirs = evaluate_legacy_condition(value, operator, expected)
        if bool(ours) != bool(theirs):
            mismatches.append((expected, value, ours, theirs))
    assert mismatches == [], f"{len(mismatches)} disagreement(s), e.g. {mismatches[:5]}"
