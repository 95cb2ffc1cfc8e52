"""Which per-tool policy changes loosen enforcement (and so take what deactivating takes).
Pure: no database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.engine.loosening import (
    constraints_loosened,
    llm_config_loosened,
    output_rules_loosened,
    rate_limits_loosened,
    session_constraints_loosened,
    tool_policy_loosened,
)


def policy(*constraints: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "is_active": True,
        "mode": "deterministic",
        "constraints": [{"argumentName": "amount", "enabled": True, **c} for c in constraints],
        "output_rules": None,
        "llm_config": None,
        "session_constraints": None,
        "rate_limits": None,
        **fields,
    }


BASE = policy({"greaterThan": 0, "maximum": 1000, "required": True})


@pytest.mark.parametrize(
    ("after", "words"),
    [
        (None, "deleted"),
        ({**BASE, "is_active": False}, "deactivated"),
        (
            {**BASE, "mode": "llm", "llm_config": {"description": "Pays", "exceptions": ["refunds"]}},
            "mode changes",
        ),
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


def test_tool_policy_loosened__output_rule_without_id_removed__loosens():
    # Given a policy with an output rule stored without an id, When it goes
    before = policy(output_rules=[{"pattern": "secret", "action": "redact"}])
    # Then that is a loosening
    assert tool_policy_loosened(before, policy(output_rules=None)) == [
        "an output rule without an id is removed or changed"
    ]


# --- LLM mode -----------------------------------------------------------------------------------

LLM = {"description": "Refunds an order", "exceptions": ["the customer is VIP", "the parcel was lost"]}


def llm_policy(config: dict[str, Any] | None = LLM, mode: str = "llm") -> dict[str, Any]:
    return policy({"maximum": 100}, mode=mode, llm_config=config)


@pytest.mark.parametrize(
    ("before", "after", "words"),
    [
        (llm_policy(mode="deterministic"), llm_policy(), "mode changes from 'deterministic' to 'llm'"),
        (
            llm_policy(),
            llm_policy({**LLM, "exceptions": [*LLM["exceptions"], "the amount is small"]}),
            "'the amount is small' is added",
        ),
        (
            llm_policy(),
            llm_policy({**LLM, "exceptions": ["the customer is a VIP", "the parcel was lost"]}),
            "'the customer is a VIP' is added or reworded",
        ),
        (llm_policy(), llm_policy({**LLM, "description": "Refunds anything"}), "the tool's description"),
        (
            llm_policy(),
            llm_policy(
                {**LLM, "argumentInstructions": [{"argumentName": "amount", "instruction": "in euros"}]}
            ),
            "argument instructions",
        ),
        (llm_policy(), llm_policy({**LLM, "preferredModel": "tiny-model"}), "preferred model"),
    ],
)
def test_llm_config_loosened__model_may_allow_more__named(before, after, words):
    # Given a policy, When its model may now allow calls it could not before
    reasons = tool_policy_loosened(before, after)
    # Then the change loosens, and the reason says how
    assert any(words in reason for reason in reasons), reasons


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (llm_policy(), llm_policy(mode="deterministic")),  # back to constraints only
        (llm_policy(), llm_policy({**LLM, "exceptions": ["the parcel was lost"]})),  # fewer exceptions
        (llm_policy(), llm_policy({**LLM, "exceptions": list(reversed(LLM["exceptions"]))})),  # reordered
        # What no model reads may change freely: a deterministic policy's stored configuration
        (llm_policy(mode="deterministic"), llm_policy({**LLM, "description": "x"}, mode="deterministic")),
        (llm_policy(mode="deterministic"), llm_policy({"description": "Pays", "exceptions": []})),
    ],
)
def test_llm_config_loosened__model_allows_no_more__not_loosened(before, after):
    # Given a policy, When the exceptions in force shrink or nothing reads the change
    # Then nothing is loosened
    assert tool_policy_loosened(before, after) == []


# --- Session constraints ------------------------------------------------------------------------

SESSION = {
    "maxCalls": 20,
    "spendArgument": "amount",
    "budget": 500.0,
    "cumulativeLimits": [{"argumentName": "items", "maxValue": 10}],
    "counters": {
        "open_files": {"increment": ["open_file"], "decrement": ["close_file"], "max": 3},
        "seen": {"increment": ["read"]},
    },
}


def counter(name: str, **changes: Any) -> dict[str, Any]:
    counters = dict(SESSION["counters"])
    counters[name] = {**counters[name], **changes}
    return {**SESSION, "counters": counters}


@pytest.mark.parametrize(
    ("after", "words"),
    [
        (None, "maxCalls 20 is removed"),
        ({**SESSION, "maxCalls": 21}, "maxCalls is raised from 20 to 21"),
        ({**SESSION, "budget": None}, "budget 500.0 is removed"),
        ({**SESSION, "budget": 500.5}, "budget is raised"),
        ({**SESSION, "spendArgument": "fee"}, "spendArgument changes from 'amount' to 'fee'"),
        ({**SESSION, "cumulativeLimits": None}, "cumulative limit on 'items' (10) is removed or raised"),
        ({**SESSION, "cumulativeLimits": [{"argumentName": "items", "maxValue": 11}]}, "'items' (10)"),
        ({**SESSION, "cumulativeLimits": [{"argumentName": "other", "maxValue": 1}]}, "'items' (10)"),
        ({**SESSION, "maxAction": "require_approval"}, "held for approval instead of denied"),
        ({**SESSION, "counters": {"seen": SESSION["counters"]["seen"]}}, "counter 'open_files' is removed"),
        (counter("open_files", max=4), "'open_files': max is raised from 3 to 4"),
        (counter("open_files", max=None), "'open_files': max 3 is removed"),
        (counter("open_files", increment=[]), "no longer counts up on 'open_file'"),
        (counter("open_files", decrement=["close_file", "reset"]), "now counts down on 'reset'"),
        (
            counter("open_files", maxAction="require_approval"),
            "counter 'open_files' is now held for approval",
        ),
        (counter("seen", increment=["write"]), "'seen' no longer counts up on 'read'"),
    ],
)
def test_session_constraints_loosened__session_may_do_more__named(after, words):
    # Given session constraints, When a limit is dropped or widened
    reasons = tool_policy_loosened(policy(session_constraints=SESSION), policy(session_constraints=after))
    # Then the change loosens, and the reason says how
    assert any(words in reason for reason in reasons), reasons


@pytest.mark.parametrize(
    "after",
    [
        SESSION,
        {**SESSION, "maxCalls": 5, "budget": 100, "maxAction": "deny"},
        {
            **SESSION,
            "cumulativeLimits": [
                {"argumentName": "items", "maxValue": 2},
                {"argumentName": "x", "maxValue": 1},
            ],
        },
        counter("open_files", max=1, increment=["open_file", "create_file"], decrement=[]),
        counter("seen", max=10, maxAction="require_approval"),  # a new max that holds is still a new max
        {**SESSION, "counters": {**SESSION["counters"], "new": {"increment": ["x"], "max": 1}}},
    ],
)
def test_session_constraints_loosened__same_or_stricter__not_loosened(after):
    # Given session constraints, When they stay or tighten, Then nothing is loosened
    assert tool_policy_loosened(policy(session_constraints=SESSION), policy(session_constraints=after)) == []


def test_session_constraints_loosened__approval_without_any_limit__not_loosened():
    # Given no session limits, When maxAction becomes require_approval together with a new limit
    after = {"maxCalls": 10, "maxAction": "require_approval"}
    # Then a call that went through unlimited is now held past ten: a tightening
    assert session_constraints_loosened(None, after) == []


# --- Rate limits --------------------------------------------------------------------------------

MINUTE = {"scope": "agent", "windowSeconds": 60, "maxCalls": 10}


@pytest.mark.parametrize(
    ("after", "words"),
    [
        (None, "the rate limit of 10 calls per 60 s (scope agent) is removed or its scope changed"),
        ([{**MINUTE, "maxCalls": 11}], "raised or its window shortened"),
        ([{**MINUTE, "windowSeconds": 59}], "raised or its window shortened"),
        ([{**MINUTE, "scope": "session"}], "removed or its scope changed"),
        ([{**MINUTE, "scope": "global"}], "removed or its scope changed"),
    ],
)
def test_rate_limits_loosened__more_calls_allowed__named(after, words):
    # Given a per-agent limit, When it goes, rises, shortens or moves to another scope
    reasons = tool_policy_loosened(policy(rate_limits=[MINUTE]), policy(rate_limits=after))
    # Then the change loosens, and the reason says how
    assert reasons == [next(r for r in reasons if words in r)], reasons


@pytest.mark.parametrize(
    "after",
    [
        [MINUTE],
        [{**MINUTE, "maxCalls": 9}],
        [{**MINUTE, "windowSeconds": 120}],  # at most 10 in any 120 s is at most 10 in any 60 s
        [{"scope": "user", "windowSeconds": 1, "maxCalls": 1}, {**MINUTE, "windowSeconds": 3600}],
    ],
)
def test_rate_limits_loosened__same_or_stricter__not_loosened(after):
    # Given a per-agent limit, When it stays, lowers, lengthens or gains a neighbour
    # Then nothing is loosened
    assert rate_limits_loosened([MINUTE], after) == []


# --- Output rules -------------------------------------------------------------------------------

CARD = {"field": "output.card", "operator": "matches", "value": r"\d{4}"}
REDACT = {"id": "cards", "name": "Cards", "action": "redact", "output_conditions": [CARD]}


@pytest.mark.parametrize(
    ("after", "words"),
    [
        (None, "output rule 'cards' is removed or disabled"),
        ([{**REDACT, "enabled": False}], "removed or disabled"),
        ([{**REDACT, "id": "cards-v2"}], "'cards' is removed"),
        ([{**REDACT, "action": "log"}], "action 'redact' becomes 'log'"),
        ([{**REDACT, "redact_with": "[card]"}], "replaces what it redacts with other text"),
        ([{**REDACT, "output_conditions": [{**CARD, "value": r"\d{5}"}]}], "what it matches"),
        ([{**REDACT, "output_conditions": [{**CARD, "field": "output.iban"}]}], "what it matches"),
        ([{**REDACT, "tools": ["send_email"]}], "the tools it covers"),
    ],
)
def test_output_rules_loosened__more_output_through__named(after, words):
    # Given a redact rule, When it goes, weakens or changes what it matches
    reasons = tool_policy_loosened(policy(output_rules=[REDACT]), policy(output_rules=after))
    # Then the change loosens, and the reason says how
    assert any(words in reason for reason in reasons), reasons


def test_output_rules_loosened__block_becomes_redact__loosens():
    # Given a block rule, When it only redacts, Then the rest of the output gets through
    block = {**REDACT, "action": "block"}
    assert output_rules_loosened([block], [REDACT]) == [
        "output rule 'cards': action 'block' becomes 'redact', which lets more of the output through"
    ]


@pytest.mark.parametrize(
    "after",
    [
        [REDACT],
        [{**REDACT, "redact_with": "[REDACTED]"}],  # the SDK's default, spelt out
        [{**REDACT, "action": "block"}],
        [{**REDACT, "name": "Card numbers", "description": "no card numbers leave the tool"}],
        [{"id": "new", "name": "New", "action": "log"}, REDACT],
    ],
)
def test_output_rules_loosened__same_stricter_or_reworded__not_loosened(after):
    # Given a redact rule, When it stays, blocks, is reworded, or a rule is added
    # Then nothing is loosened
    assert output_rules_loosened([REDACT], after) == []


def test_output_rules_loosened__disabled_rule_removed__not_loosened():
    # Given a disabled rule, When it goes, Then nothing it did (nothing) is lost
    assert output_rules_loosened([{**REDACT, "enabled": False}], None) == []


# --- Properties: each comparison is a preorder --------------------------------------------------
# Reflexive (no change never loosens) and transitive (if a -> b and b -> c do not loosen, neither
# does a -> c: a chain of permitted edits cannot add up to a loosening nobody was allowed).

_tools = st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3)
_counters = st.dictionaries(
    st.sampled_from(["n", "m"]),
    st.fixed_dictionaries(
        {"increment": _tools},
        optional={
            "decrement": _tools,
            "max": st.integers(1, 4),
            "maxAction": st.sampled_from(["deny", "require_approval"]),
        },
    ),
    max_size=2,
)
_sessions = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "maxCalls": st.integers(1, 4),
        "spendArgument": st.sampled_from(["amount", "fee"]),
        "budget": st.sampled_from([1.0, 2.5, 10.0]),
        "cumulativeLimits": st.lists(
            st.fixed_dictionaries(
                {"argumentName": st.sampled_from(["x", "y"]), "maxValue": st.integers(1, 3)}
            ),
            max_size=2,
        ),
        "counters": _counters,
        "maxAction": st.sampled_from(["deny", "require_approval"]),
    },
)
_rate_limits = st.none() | st.lists(
    st.fixed_dictionaries(
        {
            "scope": st.sampled_from(["agent", "global"]),
            "windowSeconds": st.sampled_from([1, 60, 3600]),
            "maxCalls": st.integers(1, 3),
        }
    ),
    max_size=3,
)
_output_rules = st.none() | st.lists(
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(["r1", "r2"]),
            "name": st.sampled_from(["R", "Rule"]),
            "action": st.sampled_from(["log", "redact", "block"]),
        },
        optional={
            "enabled": st.booleans(),
            "redact_with": st.sampled_from(["#", "[REDACTED]"]),
            "output_conditions": st.sampled_from([[CARD], [{**CARD, "value": "x"}]]),
        },
    ),
    max_size=2,
    unique_by=lambda rule: rule["id"],
)
_llm = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["deterministic", "llm"]),
        "llm_config": st.none()
        | st.fixed_dictionaries(
            {
                "description": st.sampled_from(["d1", "d2"]),
                "exceptions": st.lists(st.sampled_from(["e1", "e2", "e3"]), unique=True, max_size=3),
            },
            optional={"preferredModel": st.sampled_from(["m1", "m2"])},
        ),
    }
)
PREORDERS = [
    (session_constraints_loosened, _sessions),
    (rate_limits_loosened, _rate_limits),
    (output_rules_loosened, _output_rules),
    (llm_config_loosened, _llm),
]


@pytest.mark.parametrize(("loosened", "values"), PREORDERS, ids=lambda p: getattr(p, "__name__", ""))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_loosened__any_three_versions__reflexive_and_transitive(loosened, values, data):
    # Given any three versions a, b, c of one part of a policy
    a, b, c = data.draw(values), data.draw(values), data.draw(values)
    # When a is kept, Then nothing is loosened
    assert loosened(a, a) == []
    # When a -> b and b -> c loosen nothing, Then a -> c loosens nothing either
    if loosened(a, b) == [] and loosened(b, c) == []:
        assert loosened(a, c) == [], (a, b, c)


def _strongest_limits(limits: list[dict[str, Any]] | None) -> set[tuple[str, int, int]]:
    """Limits that no other limit of the list implies."""
    as_tuples = {(limit["scope"], limit["windowSeconds"], limit["maxCalls"]) for limit in limits or []}
    return {
        (scope, window, most)
        for scope, window, most in as_tuples
        if not any(
            (s, w, m) != (scope, window, most) and s == scope and w >= window and m <= most
            for s, w, m in as_tuples
        )
    }


@settings(max_examples=300, deadline=None)
@given(a=_rate_limits, b=_rate_limits)
def test_rate_limits_loosened__neither_way_loosens__same_limits(a, b):
    # Given two sets of limits, When neither change loosens
    if rate_limits_loosened(a, b) == [] and rate_limits_loosened(b, a) == []:
        # Then they hold the same limits, but for ones another limit already implies
        assert _strongest_limits(a) == _strongest_limits(b)


@settings(max_examples=200, deadline=None)
@given(first=st.sampled_from(["log", "redact", "block"]), second=st.sampled_from(["log", "redact", "block"]))
def test_output_rules_loosened__action_and_its_reverse__both_pass_only_if_equal(first, second):
    # Given one rule, When its action changes and changes back
    there = output_rules_loosened([{**REDACT, "action": first}], [{**REDACT, "action": second}])
    back = output_rules_loosened([{**REDACT, "action": second}], [{**REDACT, "action": first}])
    # Then one way loosens unless nothing changed
    assert (there == [] and back == []) == (first == second)


@pytest.mark.parametrize(
    ("before", "after", "loosens"),
    [
        ({"notEnum": ["root"]}, {"notEnum": ["root", "admin"]}, False),
        ({"notEnum": ["root", "admin"]}, {"notEnum": ["root"]}, True),
        ({"notEnum": ["root"]}, {}, True),
        ({"notRegex": "secret"}, {"notRegex": "secret"}, False),
        ({"notRegex": "secret"}, {"notRegex": "s3cret"}, True),
        ({}, {"notRegex": "secret"}, False),
        ({"dynamicMaximum": "balance"}, {"dynamicMaximum": "balance"}, False),
        ({"dynamicMaximum": "balance"}, {"dynamicMaximum": "credit"}, True),
        ({"dynamicMinimum": "floor"}, {}, True),
    ],
)
def test_constraints_loosened__not_regex_and_not_enum(before, after, loosens):
    # Given one constraint on note, changed to another
    was = [{"argumentName": "note", "enabled": True, **before}]
    now = [{"argumentName": "note", "enabled": True, **after}]
    # Then refusing fewer values, or another forbidden pattern, is loosening
    assert bool(constraints_loosened(was, now)) is loosens
