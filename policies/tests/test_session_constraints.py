"""A per-tool policy's sessionConstraints: checked when written (every problem with its path),
compiled into the limits a call counts against, and turned into what one call counts. Pure: no
database, no Redis (the property at the end counts through the in-process store)."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.engine.constraints import SERVER_MARKER_KEYS, check_tool_name
from policies.engine.session_constraints import (
    MAX_AMOUNT,
    MAX_CALLS_LIMIT,
    SessionLimit,
    Tally,
    UncountableAmount,
    counter_limits,
    limits_of_policy,
    normalize_session_constraints,
    tallies_for_call,
)
from policies.session_counters import LocalSessionCounters


class Collected:
    """Any object with ``add(path, message)`` collects the problems."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.items[path] = message


def check(raw: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
    problems = Collected()
    stored = normalize_session_constraints(
        raw,
        "sessionConstraints",
        problems,
        check_tool_name=lambda name, path: check_tool_name(name, path),
        ignored_keys=SERVER_MARKER_KEYS,
    )
    return stored, problems.items


def problems_of(raw: Any) -> dict[str, str]:
    return check(raw)[1]


OPEN_FILES = {"increment": ["open_file"], "decrement": ["close_file"], "max": 2, "maxAction": "deny"}
FULL = {
    "maxCalls": 10,
    "spendArgument": "amount",
    "budget": 100.5,
    "maxAction": "require_approval",
    "cumulativeLimits": [{"argumentName": "quantity", "maxValue": 50}],
    "counters": {"open_files": OPEN_FILES},
}


# --- Write time: what is stored ------------------------------------------------------------------


def test_normalize__every_field_valid__stored_as_sent_with_no_problem():
    # Given a body that sets every session constraint
    # When it is checked
    stored, problems = check(FULL)
    # Then nothing is wrong and the stored form is the body (camelCase, as the SDK sends it)
    assert problems == {}
    assert stored == FULL


def test_normalize__server_markers_of_a_fetched_policy__ignored():
    # Given a served body sent back as it came: the real constraints beside the server's markers
    served = {
        **FULL,
        "evaluatedBy": "server",
        "ruleSet": {"version": 3, "ruleIds": ["r1"], "defaultAction": "allow"},
        "policyActive": False,
        "approvalConstraints": True,
        "sessionCounters": ["open_file.open_files"],
    }
    # When it is checked, Then the markers are neither stored nor refused
    assert check(served) == (FULL, {})


def test_normalize__only_markers__nothing_to_store():
    # Given the body the server serves for a policy with no session constraints of its own
    # When it is sent back, Then it sets nothing (None) and nothing is wrong
    assert check({"evaluatedBy": "server", "sessionCounters": ["open_file.open_files"]}) == (None, {})


def test_normalize__null_values__mean_unset():
    # Given the SDK's model dump, where every unset field is null
    body = {
        "maxCalls": 3,
        "spendArgument": None,
        "budget": None,
        "cumulativeLimits": None,
        "counters": None,
        "maxAction": None,
    }
    # When it is checked, Then only what is set is stored, and a lone null half is no problem
    assert check(body) == ({"maxCalls": 3}, {})


def test_normalize__null_or_empty_body__nothing_to_store():
    assert check(None) == (None, {})
    assert check({}) == (None, {})


def test_normalize__counter_nulls__mean_unset():
    # Given a counter with only increment set, the rest null
    body = {"counters": {"c": {"increment": ["a"], "decrement": None, "max": None, "maxAction": None}}}
    # When it is checked, Then the counter counts, never refuses, and stores only its increment
    assert check(body) == ({"counters": {"c": {"increment": ["a"]}}}, {})


# --- Write time: every refusal, where it is ------------------------------------------------------


def test_normalize__not_an_object__refused_at_the_body():
    assert problems_of(["maxCalls"]).keys() == {"sessionConstraints"}


@pytest.mark.parametrize("value", [0, -1, MAX_CALLS_LIMIT + 1, 2.5, True, "3"])
def test_normalize__max_calls_out_of_bounds__refused_at_max_calls(value):
    # Given maxCalls that is not a whole number from 1 to the limit
    problems = problems_of({"maxCalls": value})
    # Then it is refused where it is, naming the bounds
    assert problems.keys() == {"sessionConstraints.maxCalls"}
    assert f"1 to {MAX_CALLS_LIMIT}" in problems["sessionConstraints.maxCalls"]


@pytest.mark.parametrize("value", [1, MAX_CALLS_LIMIT])
def test_normalize__max_calls_at_its_bounds__stored(value):
    assert check({"maxCalls": value}) == ({"maxCalls": value}, {})


def test_normalize__budget_without_spend_argument__refused_at_budget():
    # Given a budget that names no argument to count
    problems = problems_of({"budget": 100})
    # Then the budget is refused, saying what it needs
    assert problems.keys() == {"sessionConstraints.budget"}
    assert "needs spendArgument" in problems["sessionConstraints.budget"]


def test_normalize__spend_argument_without_budget__refused_at_spend_argument():
    problems = problems_of({"spendArgument": "amount"})
    assert problems.keys() == {"sessionConstraints.spendArgument"}
    assert "needs budget" in problems["sessionConstraints.spendArgument"]


@pytest.mark.parametrize("budget", [0, -5, MAX_AMOUNT * 10, math.inf, math.nan, True, "100"])
def test_normalize__budget_not_a_positive_amount__refused_at_budget(budget):
    problems = problems_of({"spendArgument": "amount", "budget": budget})
    assert problems.keys() == {"sessionConstraints.budget"}
    assert "above 0" in problems["sessionConstraints.budget"]


@pytest.mark.parametrize("name", ["", 7, "x" * 201])
def test_normalize__spend_argument_not_a_name__refused_at_spend_argument(name):
    problems = problems_of({"spendArgument": name, "budget": 10})
    assert problems.keys() == {"sessionConstraints.spendArgument"}


def test_normalize__unknown_key__refused_at_it():
    problems = problems_of({"maxCalls": 2, "maxCall": 3})
    assert problems.keys() == {"sessionConstraints.maxCall"}
    assert "unknown session constraint 'maxCall'" in problems["sessionConstraints.maxCall"]


@pytest.mark.parametrize("action", ["allow", "warn", 1])
def test_normalize__max_action_not_deny_or_approval__refused(action):
    problems = problems_of({"maxCalls": 2, "maxAction": action})
    assert problems.keys() == {"sessionConstraints.maxAction"}
    assert "deny, require_approval" in problems["sessionConstraints.maxAction"]


@pytest.mark.parametrize(
    "body",
    [{"maxAction": "deny"}, {"maxAction": "require_approval", "counters": {"c": {"increment": ["a"]}}}],
    ids=["alone", "beside counters only"],
)
def test_normalize__max_action_with_nothing_it_applies_to__refused(body):
    # Given a top-level maxAction and no maxCalls, budget or cumulative limit (counters have their own)
    problems = problems_of(body)
    # Then it is refused: it would change nothing
    assert problems.keys() == {"sessionConstraints.maxAction"}
    assert "set one" in problems["sessionConstraints.maxAction"]


def test_normalize__cumulative_limits_duplicate_argument__refused_at_the_second():
    body = {
        "cumulativeLimits": [
            {"argumentName": "quantity", "maxValue": 5},
            {"argumentName": "quantity", "maxValue": 9},
        ]
    }
    problems = problems_of(body)
    assert problems.keys() == {"sessionConstraints.cumulativeLimits[1].argumentName"}
    assert "already has a cumulative limit" in problems["sessionConstraints.cumulativeLimits[1].argumentName"]


@pytest.mark.parametrize("max_value", [0, -1, None, "5", math.inf, False])
def test_normalize__cumulative_limit_bad_max_value__refused_at_it(max_value):
    problems = problems_of({"cumulativeLimits": [{"argumentName": "quantity", "maxValue": max_value}]})
    assert problems.keys() == {"sessionConstraints.cumulativeLimits[0].maxValue"}


def test_normalize__cumulative_limit_unknown_key_or_not_an_object__refused_where_they_are():
    body = {
        "cumulativeLimits": [
            {"argumentName": "quantity", "maxValue": 5, "window": 60},
            "quantity",
        ]
    }
    problems = problems_of(body)
    assert problems.keys() == {
        "sessionConstraints.cumulativeLimits[0].window",
        "sessionConstraints.cumulativeLimits[1]",
    }


def test_normalize__cumulative_limits_not_a_list__refused():
    assert problems_of({"cumulativeLimits": {"quantity": 5}}).keys() == {
        "sessionConstraints.cumulativeLimits"
    }


@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "ü"])
def test_normalize__counter_bad_name__refused_at_it(name):
    problems = problems_of({"counters": {name: {"increment": ["a"]}}})
    assert problems.keys() == {f"sessionConstraints.counters.{name}"}


@pytest.mark.parametrize("increment", [[], None, "open_file", ["t"] * 0])
def test_normalize__counter_increment_empty_or_missing__refused_at_increment(increment):
    spec: dict[str, Any] = {} if increment is None else {"increment": increment}
    problems = problems_of({"counters": {"c": spec}})
    assert problems.keys() == {"sessionConstraints.counters.c.increment"}
    assert "1 to" in problems["sessionConstraints.counters.c.increment"]


def test_normalize__counter_tool_raises_and_lowers__refused_at_decrement():
    body = {
        "counters": {"c": {"increment": ["open_file", "mkdir"], "decrement": ["close_file", "open_file"]}}
    }
    problems = problems_of(body)
    assert problems.keys() == {"sessionConstraints.counters.c.decrement"}
    assert "open_file cannot both raise and lower" in problems["sessionConstraints.counters.c.decrement"]


@pytest.mark.parametrize("maximum", [-1, MAX_CALLS_LIMIT + 1, 1.5, True, "2"])
def test_normalize__counter_max_out_of_bounds__refused_at_max(maximum):
    problems = problems_of({"counters": {"c": {"increment": ["a"], "max": maximum}}})
    assert problems.keys() == {"sessionConstraints.counters.c.max"}
    assert f"0 to {MAX_CALLS_LIMIT}" in problems["sessionConstraints.counters.c.max"]


def test_normalize__counter_max_zero__stored():
    # A counter at max 0 refuses every raise: a way to forbid a tool within counters
    assert check({"counters": {"c": {"increment": ["a"], "max": 0}}}) == (
        {"counters": {"c": {"increment": ["a"], "max": 0}}},
        {},
    )


def test_normalize__counter_max_action_without_max__refused_at_max_action():
    problems = problems_of({"counters": {"c": {"increment": ["a"], "maxAction": "deny"}}})
    assert problems == {"sessionConstraints.counters.c.maxAction": "maxAction needs a max"}


def test_normalize__counter_bad_max_action__refused_at_it():
    problems = problems_of({"counters": {"c": {"increment": ["a"], "max": 1, "maxAction": "allow"}}})
    assert problems.keys() == {"sessionConstraints.counters.c.maxAction"}


def test_normalize__counter_unknown_key_or_not_an_object__refused_where_they_are():
    body = {"counters": {"c": {"increment": ["a"], "limit": 3}, "d": ["a"]}}
    problems = problems_of(body)
    assert problems.keys() == {"sessionConstraints.counters.c.limit", "sessionConstraints.counters.d"}


def test_normalize__counter_bad_tool_names__refused_at_their_index():
    # Given tool names a policy could never have, and one listed twice
    body = {
        "counters": {
            "c": {"increment": ["open_file", "", " padded ", "x" * 300, "open_file"], "decrement": [7]}
        }
    }
    problems = problems_of(body)
    # Then each is refused at its index in its list
    assert problems.keys() == {
        "sessionConstraints.counters.c.increment[1]",
        "sessionConstraints.counters.c.increment[2]",
        "sessionConstraints.counters.c.increment[3]",
        "sessionConstraints.counters.c.increment[4]",
        "sessionConstraints.counters.c.decrement[0]",
    }
    assert "listed twice" in problems["sessionConstraints.counters.c.increment[4]"]
    assert "whitespace" in problems["sessionConstraints.counters.c.increment[2]"]


def test_normalize__many_problems__all_reported_at_once():
    body = {"maxCalls": 0, "budget": 5, "counters": {"c": {"increment": []}}, "extra": 1}
    assert problems_of(body).keys() == {
        "sessionConstraints.maxCalls",
        "sessionConstraints.budget",
        "sessionConstraints.counters.c.increment",
        "sessionConstraints.extra",
    }


# --- Compiled limits -----------------------------------------------------------------------------


def test_limits_of_policy__stored_form__one_limit_per_count_with_the_policy_action():
    # Given a stored body with maxCalls, a budget and a cumulative limit, held for approval when over
    stored, _ = check(FULL)
    # When it is compiled for the tool's calls
    limits = limits_of_policy("pay", stored)
    # Then each is a count of its own, with the tool's action; the counter is not among them
    assert [(limit.kind, limit.field, limit.limit, limit.argument, limit.action) for limit in limits] == [
        ("maxCalls", "calls|pay", 10, None, "require_approval"),
        ("budget", "spend|pay", 100.5, "amount", "require_approval"),
        ("cumulative", "sum|pay|quantity", 50, "quantity", "require_approval"),
    ]


def test_limits_of_policy__no_max_action__denies():
    assert [limit.action for limit in limits_of_policy("pay", {"maxCalls": 2})] == ["deny"]


def test_limits_of_policy__nothing_stored__no_limits():
    assert limits_of_policy("pay", None) == ()
    assert limits_of_policy("pay", {}) == ()


def test_counter_limits__counter_of_one_policy__raised_by_its_tools_lowered_by_another():
    # Given open_file's policy with a counter that close_file's calls lower, and a policy without one
    policies = [
        ("open_file", {"counters": {"open_files": OPEN_FILES}}),
        ("pay", {"maxCalls": 3}),
        ("x", None),
    ]
    # When the team's counters are compiled
    by_tool = counter_limits(policies)
    # Then open_file raises it up to its max, close_file lowers it (never refused), both one field
    assert set(by_tool) == {"open_file", "close_file"}
    (raise_,) = by_tool["open_file"]
    (lower,) = by_tool["close_file"]
    assert (raise_.field, raise_.limit, raise_.lowers, raise_.policy_tool) == (
        "counter|open_file|open_files",
        2,
        False,
        "open_file",
    )
    assert (lower.field, lower.limit, lower.lowers, lower.policy_tool) == (
        "counter|open_file|open_files",
        None,
        True,
        "open_file",
    )
    # And the tallies they make: +1 and -1
    assert [t.delta for t in tallies_for_call(by_tool["open_file"], {})] == [1.0]  # type: ignore[union-attr]
    assert [t.delta for t in tallies_for_call(by_tool["close_file"], {})] == [-1.0]  # type: ignore[union-attr]


def test_counter_limits__same_counter_name_in_two_policies__two_separate_counts():
    policies = [
        ("a", {"counters": {"n": {"increment": ["t"]}}}),
        ("b", {"counters": {"n": {"increment": ["t"]}}}),
    ]
    assert [limit.field for limit in counter_limits(policies)["t"]] == ["counter|a|n", "counter|b|n"]


# --- What one call counts ------------------------------------------------------------------------

BUDGET = SessionLimit("budget", "spend|pay", "pay", 100.0, "deny", argument="amount")
CUMULATIVE = SessionLimit("cumulative", "sum|pay|quantity", "pay", 50.0, "deny", argument="quantity")
MAX_CALLS = SessionLimit("maxCalls", "calls|pay", "pay", 2, "deny")


def test_tallies_for_call__amounts_and_calls__counted_as_given():
    tallies = tallies_for_call((MAX_CALLS, BUDGET, CUMULATIVE), {"amount": 12.5, "quantity": 3})
    assert tallies == [Tally(MAX_CALLS, 1.0), Tally(BUDGET, 12.5), Tally(CUMULATIVE, 3.0)]


def test_tallies_for_call__amount_zero__counted():
    assert tallies_for_call((BUDGET,), {"amount": 0}) == [Tally(BUDGET, 0.0)]


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        ({}, "got missing"),
        ({"amount": "40"}, "got '40'"),
        ({"amount": -1}, "got -1"),
        ({"amount": math.nan}, "got nan"),
        ({"amount": math.inf}, "got inf"),
        ({"amount": True}, "got True"),
        ({"amount": None}, "got None"),
        ({"amount": MAX_AMOUNT * 2}, "from 0 to 1e+15 (got 2000000000000000.0)"),
    ],
    ids=["missing", "text", "negative", "NaN", "inf", "bool", "null", "too large"],
)
def test_tallies_for_call__amount_not_countable__uncountable_naming_the_argument(arguments, shown):
    # Given a call whose amount a budget cannot count
    # When its tallies are made
    result = tallies_for_call((MAX_CALLS, BUDGET), arguments)
    # Then it cannot be counted (denied), and the reason names the budget's argument and what came
    assert isinstance(result, UncountableAmount)
    assert result.limit is BUDGET
    assert "Session budget of pay counts argument 'amount'" in result.reason
    assert shown in result.reason


def test_tallies_for_call__cumulative_argument_missing__reason_says_cumulative_limit():
    result = tallies_for_call((CUMULATIVE,), {"amount": 3})
    assert isinstance(result, UncountableAmount)
    assert "cumulative limit of pay counts argument 'quantity'" in result.reason


def test_uncountable_reason__long_value__shortened():
    result = tallies_for_call((BUDGET,), {"amount": "9" * 500})
    assert isinstance(result, UncountableAmount)
    assert len(result.reason) < 300


# --- Reasons -------------------------------------------------------------------------------------


def test_describe__budget__names_the_budget_and_what_is_left():
    # Given 30 spent of 100, When a call of 80 is refused
    reason = BUDGET.describe(used=30, delta=80)
    # Then the reason says which budget, where it would land and what is left
    assert (
        reason
        == "Session budget exceeded for pay: amount 80 would bring spend to 110 of budget 100 (70 left)"
    )


def test_describe__budget_fractional__left_shown_without_float_noise():
    assert "(0.3 left)" in BUDGET.describe(used=99.7, delta=0.5)


def test_describe__max_calls__says_how_many_used():
    assert MAX_CALLS.describe(used=2, delta=1) == (
        "Session limit reached for pay: 2 of 2 calls used (maxCalls 2), 0 left"
    )


def test_describe__cumulative_and_counter__name_what_refused():
    assert "quantity total would be 52 of 50 (1 left)" in CUMULATIVE.describe(used=49, delta=3)
    counter = SessionLimit(
        "counter", "counter|open_file|open_files", "open_file", 2, "deny", counter="open_files"
    )
    assert counter.describe(used=2, delta=1) == (
        "Session counter 'open_files' of open_file's policy is at its max 2 (2 counted)"
    )


# --- Property: a budget is never overspent -------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    budget=st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False),
    amounts=st.lists(
        st.one_of(
            st.floats(min_value=0, max_value=2e5, allow_nan=False, allow_infinity=False),
            st.sampled_from([0.1, 0.2, 0.3, 1.0, 10.0]),
        ),
        max_size=60,
    ),
)
def test_local_counters__greedy_spend__never_exceeds_the_budget_and_refuses_only_what_would(budget, amounts):
    # Given a budget and a session's calls, each admitted when it fits
    limit = SessionLimit("budget", "spend|pay", "pay", budget, "deny", argument="amount")
    counters = LocalSessionCounters()
    team_id = uuid.uuid4()

    async def spend() -> list[tuple[float, float, bool]]:
        seen: list[tuple[float, float, bool]] = []
        for amount in amounts:
            before = (await counters.used(team_id, "agent", "s")).get(limit.field, 0.0)
            over = await counters.count(team_id, "agent", "s", [Tally(limit, amount)])
            seen.append((before, amount, over is None))
            if over is not None:
                assert over.used == before
        return seen

    seen = asyncio.run(spend())
    admitted = 0.0
    for before, amount, counted in seen:
        # Then a call is refused exactly when it would take the spend past the budget
        assert before == pytest.approx(admitted, abs=1e-9)
        assert counted == (admitted + amount <= budget + 1e-9)
        if counted:
            admitted += amount
        # And the sum of what was admitted never exceeds the budget
        assert admitted <= budget + 1e-9
