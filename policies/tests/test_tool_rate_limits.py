"""A per-tool policy's own rateLimits: checked when written, and counted through the same
RateLimitCheck as a rule's limits. Pure: no database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.engine.document import MAX_RATE_LIMIT_CALLS, MAX_RATE_LIMIT_WINDOW_SECONDS, RATE_LIMIT_SCOPES
from policies.engine.evaluator import RateLimit, RateLimitCheck, ToolCall, _bucket_key
from policies.engine.tool_rate_limits import (
    MAX_TOOL_RATE_LIMITS,
    normalize_tool_rate_limits,
    tool_policy_rate_limit_check,
    tool_policy_rate_limits,
)


class Collected:
    """Any object with ``add(path, message)`` collects the problems."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.items[path] = message


def check(raw: Any) -> tuple[list[dict[str, Any]] | None, dict[str, str]]:
    problems = Collected()
    stored = normalize_tool_rate_limits(raw, "rateLimits", problems)
    return stored, problems.items


PER_AGENT = {"scope": "agent", "windowSeconds": 60, "maxCalls": 10}
DAILY = {"scope": "global", "windowSeconds": 86400, "maxCalls": 1000}
# As the server serves the rule set's limits on the tool (policy_serializers.rate_limits_output).
REPORTED = {"ruleId": "transfer-burst", "scope": "user", "windowSeconds": 1, "maxCalls": 1}


def test_normalize__limits__stored_in_the_wire_shape():
    # Given two limits, When checked, Then they are stored as sent, without problems
    assert check([PER_AGENT, DAILY]) == ([PER_AGENT, DAILY], {})


@pytest.mark.parametrize("raw", [None, [], [REPORTED], [REPORTED, {**REPORTED, "ruleId": "other"}]])
def test_normalize__nothing_of_its_own__none(raw):
    # Given null, an empty list, or only the server's report of the rule set's limits
    # When checked, Then the policy has no limits of its own, and nothing is wrong
    assert check(raw) == (None, {})


def test_normalize__fetched_policy_sent_back__reported_entries_skipped():
    # Given a fetched policy's rateLimits: the rule set's, then the policy's own
    # When sent back as it came
    stored, problems = check([REPORTED, PER_AGENT])
    # Then only the policy's own are stored
    assert (stored, problems) == ([PER_AGENT], {})


def test_normalize__no_scope__global_as_in_rule_sets():
    # Given a limit without a scope (or a null one), When checked, Then it counts globally
    stored, _ = check(
        [{"windowSeconds": 60, "maxCalls": 5}, {"scope": None, "windowSeconds": 1, "maxCalls": 5}]
    )
    assert stored == [
        {"scope": "global", "windowSeconds": 60, "maxCalls": 5},
        {"scope": "global", "windowSeconds": 1, "maxCalls": 5},
    ]


@pytest.mark.parametrize(
    ("limit", "path", "words"),
    [
        ("10/min", "rateLimits[2]", "must be an object"),
        ({**PER_AGENT, "scope": "team"}, "rateLimits[2].scope", "agent, user, session, global"),
        ({**PER_AGENT, "windowSeconds": 0}, "rateLimits[2].windowSeconds", "from 1 to"),
        (
            {**PER_AGENT, "windowSeconds": MAX_RATE_LIMIT_WINDOW_SECONDS + 1},
            "rateLimits[2].windowSeconds",
            str(MAX_RATE_LIMIT_WINDOW_SECONDS),
        ),
        ({**PER_AGENT, "windowSeconds": 1.5}, "rateLimits[2].windowSeconds", "whole number"),
        ({**PER_AGENT, "windowSeconds": True}, "rateLimits[2].windowSeconds", "whole number"),
        ({**PER_AGENT, "maxCalls": 0}, "rateLimits[2].maxCalls", "from 1 to"),
        (
            {**PER_AGENT, "maxCalls": MAX_RATE_LIMIT_CALLS + 1},
            "rateLimits[2].maxCalls",
            str(MAX_RATE_LIMIT_CALLS),
        ),
        ({"scope": "agent", "windowSeconds": 60}, "rateLimits[2].maxCalls", "whole number"),
        ({**PER_AGENT, "window_seconds": 60}, "rateLimits[2].window_seconds", "unknown rate limit key"),
        ({**DAILY, "maxCalls": 3}, "rateLimits[2]", "rateLimits[0] already limits scope 'global' over 86400"),
    ],
)
def test_normalize__bad_limit__refused_naming_its_path(limit, path, words):
    # Given a valid limit, a reported one and a bad one (indexes count what was sent)
    _, problems = check([DAILY, REPORTED, limit])
    # When checked, Then exactly that path is named, with a useful message
    assert list(problems) == [path], problems
    assert words in problems[path]


def test_normalize__same_scope_other_window__accepted():
    # Given per-agent limits over a minute and over a day, When checked, Then both are kept
    day = {**PER_AGENT, "windowSeconds": 86400, "maxCalls": 500}
    assert check([PER_AGENT, day]) == ([PER_AGENT, day], {})


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"scope": "agent"}, "must be a list"),
        ([{**PER_AGENT, "windowSeconds": 1 + i} for i in range(MAX_TOOL_RATE_LIMITS + 1)], "at most"),
    ],
)
def test_normalize__not_a_list_or_too_many__refused_at_the_top(raw, words):
    # Given rateLimits that are not a list, or too many, When checked, Then the list is named
    stored, problems = check(raw)
    assert stored is None and list(problems) == ["rateLimits"] and words in problems["rateLimits"]


def test_tool_policy_rate_limits__stored__engine_limits():
    # Given stored limits, When converted, Then they are the engine's RateLimits, in order
    assert tool_policy_rate_limits([PER_AGENT, DAILY]) == (
        RateLimit(scope="agent", window_seconds=60, max_calls=10),
        RateLimit(scope="global", window_seconds=86400, max_calls=1000),
    )
    assert tool_policy_rate_limits(None) == ()


def test_tool_policy_rate_limit_check__call__rule_id_and_buckets_as_a_rules():
    # Given a policy's limits and a call from agent a1 without a user id
    limits = (
        RateLimit("agent", 60, 10),
        RateLimit("agent", 86400, 500),
        RateLimit("user", 60, 5),
    )
    call = ToolCall("transfer", {}, context={"agent_id": "a1"})
    # When the check is built
    check_ = tool_policy_rate_limit_check("transfer", "pol-1", limits, call)
    # Then it names the policy's rule id and keys each limit as a rule's would be keyed, the
    # missing user id counting globally, each window with its own counter
    assert check_ == RateLimitCheck(
        "policy:transfer",
        (
            (limits[0], "policy:transfer@pol-1/60s:agent:a1:transfer"),
            (limits[1], "policy:transfer@pol-1/86400s:agent:a1:transfer"),
            (limits[2], "policy:transfer@pol-1/60s:user:global:transfer"),
        ),
    )
    assert check_.buckets[0][1] == _bucket_key("policy:transfer@pol-1/60s", limits[0], call)


def test_tool_policy_rate_limit_check__two_agents__separate_counters():
    # Given one per-agent limit, When two agents call, Then each has its own counter
    limit = (RateLimit("agent", 60, 10),)
    keys = {
        tool_policy_rate_limit_check("t", "p", limit, ToolCall("t", {}, context={"agent_id": agent})).buckets[
            0
        ][1]
        for agent in ("a1", "a2")
    }
    assert len(keys) == 2


_limits = st.fixed_dictionaries(
    {
        "scope": st.sampled_from(RATE_LIMIT_SCOPES),
        "windowSeconds": st.integers(1, MAX_RATE_LIMIT_WINDOW_SECONDS),
        "maxCalls": st.integers(1, MAX_RATE_LIMIT_CALLS),
    }
)


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(_limits, max_size=MAX_TOOL_RATE_LIMITS))
def test_normalize__stored_form__checks_again_unchanged(raw):
    # Given any list of limits that is accepted
    stored, problems = check(raw)
    if problems:
        return
    # When its stored form is sent again (as a fetched policy is), Then it is stored unchanged
    assert check(stored) == (stored, {})
    # And each limit becomes one engine limit
    assert len(tool_policy_rate_limits(stored)) == len(raw)
