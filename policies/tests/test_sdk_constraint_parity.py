"""Per-tool policy constraints decide on the server exactly as the published SDK decides them
locally (``veto.deterministic.validate_deterministic``): same decision, same reason, same
argument, over a grid of every check × awkward values, and a property test over generated
policies and calls. The SDK side reads each constraint through its own PolicyCache parser,
so the field names the server stores are tested too."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from veto.cloud.policy_cache import _parse_constraint
from veto.deterministic import validate_deterministic

from policies.engine.constraints import compile_constraints, normalize_constraints

CONSTRAINTS: list[dict[str, Any]] = [
    {"greaterThan": 0},
    {"lessThan": 10},
    {"greaterThanOrEqual": 1.5},
    {"lessThanOrEqual": 2},
    {"minimum": -1, "maximum": 3},
    {"minimum": 2.5},
    {"maximum": 10.0},
    {"greaterThan": 1, "lessThan": 11, "maximum": 10},
    {"minLength": 2},
    {"maxLength": 3},
    {"minLength": 1, "maxLength": 5, "enum": ["a", "abc", "public"]},
    {"regex": "^internal-"},
    {"regex": "[0-9]{3}"},
    {"regex": "(?i)^prod"},
    {"regex": "^[a-z]+-[0-9]+$", "maxLength": 12},
    {"enum": ["eur", "usd"]},
    {"minItems": 1},
    {"maxItems": 2},
    {"minItems": 1, "maxItems": 1, "maximum": 0},
    {"required": True},
    {"notNull": True},
    {"required": True, "notNull": True, "maximum": 5},
    {"required": False, "notNull": False, "minLength": 1},
    {"enabled": False, "required": True, "maximum": 0},
]
VALUES: list[Any] = [
    -1,
    0,
    1,
    1.5,
    2,
    2.5,
    3,
    10,
    11,
    1e3,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    None,
    "",
    "a",
    "abc",
    "abcd",
    "public",
    "internal-x",
    "external-internal-x",
    "PROD-1",
    "prod",
    "123",
    "12",
    "eur",
    "EUR",
    "ab-12",
    [],
    [1],
    [1, 2, 3],
    ["a"],
    {"k": 1},
    {},
]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


def sdk_decide(
    constraints: list[dict[str, Any]], arguments: dict[str, Any]
) -> tuple[str, str | None, str | None]:
    parsed = [_parse_constraint(c) for c in constraints]
    result = validate_deterministic("tool", arguments, parsed)
    return result.decision, result.reason, result.failed_argument


def server_decide(
    constraints: list[dict[str, Any]], arguments: dict[str, Any]
) -> tuple[str, str | None, str | None]:
    failures = compile_constraints(normalize_constraints(constraints)).check(arguments)
    if not failures:
        return "allow", None, None
    return "deny", failures[0].reason, failures[0].parameter


@pytest.mark.parametrize(
    ("spec", "value"), list(itertools.product(CONSTRAINTS, [*VALUES, ABSENT])), ids=lambda v: repr(v)[:40]
)
def test_constraint__every_check_times_awkward_values__decides_and_words_it_as_the_sdk(spec, value):
    # Given one constraint on argument "x" and a call with x set to the value (or absent)
    constraints = [{"argumentName": "x", "enabled": True, **spec}]
    arguments = {} if value is ABSENT else {"x": value, "other": 1}
    # When both sides decide
    # Then decision, reason and failing argument agree
    assert server_decide(constraints, arguments) == sdk_decide(constraints, arguments)


SAFE_PATTERNS = ["^internal-", "[0-9]{3}", "(?i)^prod", "a.c", "^[a-z]+-[0-9]+", "x|y", "^$"]
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "a", "prod-1", "internal-a", "abc", "eur", "x", "123", "a\nc"]),
    st.text(alphabet="abcxyz-019 PROD", max_size=8),
)
values = st.one_of(scalar, st.lists(scalar, max_size=4), st.dictionaries(st.just("k"), scalar, max_size=1))
numbers = st.one_of(st.integers(min_value=-50, max_value=50), st.floats(min_value=-50, max_value=50))
sizes = st.integers(min_value=0, max_value=5)
constraint = st.fixed_dictionaries(
    {"argumentName": st.sampled_from(["a", "b", "c"]), "enabled": st.booleans()},
    optional={
        "greaterThan": numbers,
        "lessThanOrEqual": numbers,
        "minimum": numbers,
        "minLength": sizes,
        "maxItems": sizes,
        "regex": st.sampled_from(SAFE_PATTERNS),
        "enum": st.lists(st.sampled_from(["a", "eur", "x", "prod-1"]), min_size=1, max_size=3),
        "required": st.booleans(),
        "notNull": st.booleans(),
    },
)


def _valid(constraints: list[dict[str, Any]]) -> bool:
    try:
        normalize_constraints(constraints)
    except ValueError:
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(
    constraints=st.lists(constraint, max_size=4).filter(_valid),
    arguments=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), values, max_size=4),
)
def test_constraints__generated_policies_and_calls__server_and_sdk_agree(constraints, arguments):
    assert server_decide(constraints, arguments) == sdk_decide(constraints, arguments)


def test_constraints__several_fail__all_reported_and_the_first_is_the_sdks_reason():
    # Given two constraints that both fail
    constraints = [
        {"argumentName": "amount", "enabled": True, "maximum": 100},
        {"argumentName": "currency", "enabled": True, "enum": ["eur"]},
    ]
    arguments = {"amount": 500, "currency": "usd"}
    # When the server checks the call
    failures = compile_constraints(normalize_constraints(constraints)).check(arguments)
    # Then both are reported, in order, in the SDK's failed_constraints shape
    assert [f.as_dict() for f in failures] == [
        {
            "parameter": "amount",
            "constraint_type": "maximum",
            "expected": 100,
            "actual": 500,
            "message": "value 500 must be <= 100",
        },
        {
            "parameter": "currency",
            "constraint_type": "enum",
            "expected": ["eur"],
            "actual": "usd",
            "message": 'value "usd" is not in allowed values: eur',
        },
    ]
    assert failures[0].reason == sdk_decide(constraints, arguments)[1]


def test_regex__unicode_digit__re2_reads_ascii_where_the_sdk_reads_unicode():
    # The documented difference: \d is ASCII in RE2 and Unicode in Python's re.
    constraints = [{"argumentName": "code", "enabled": True, "regex": "^\\d+$"}]
    arguments = {"code": "٣"}  # ARABIC-INDIC DIGIT THREE
    assert sdk_decide(constraints, arguments)[0] == "allow"
    assert server_decide(constraints, arguments)[0] == "deny"


def test_number__integer_too_large_for_a_float__compared_exactly_without_crashing():
    constraints = [{"argumentName": "n", "enabled": True, "maximum": 10}]
    assert server_decide(constraints, {"n": 10**400})[0] == "deny"
    assert server_decide(constraints, {"n": -(10**400)})[0] == "allow"
