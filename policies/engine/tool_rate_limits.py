"""A per-tool policy's own ``rateLimits``: checked, stored, and counted like a rule's.

Wire and stored form: ``[{scope: agent | user | session | global, windowSeconds, maxCalls}]``,
with the scopes and bounds of a rule set's ``rate_limits`` (``policies.engine.document``) and
``scope`` defaulting to ``global`` as there. A served policy's ``rateLimits`` also lists the
rule set's limits on the tool, each with the ``ruleId`` of its rule
(``policies.api.policy_serializers.rate_limits_output``); such entries are the server's report,
not the policy's, and are skipped, so a fetched policy can be sent back as it came.

The SDK does not count these itself: a non-null ``rateLimits`` only makes its ``PolicyCache``
send the tool's calls to the server (``has_rate_limits``). The server counts them with the one
implementation of rate limits (``policies.rate_limiter``), asked through the same
``RateLimitCheck`` a rule's limits yield (``tool_policy_rate_limit_check``).

Pure Python: no Django.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policies.engine.document import MAX_RATE_LIMIT_CALLS, MAX_RATE_LIMIT_WINDOW_SECONDS, RATE_LIMIT_SCOPES
from policies.engine.evaluator import RateLimit, RateLimitCheck, ToolCall, _bucket_key
from policies.engine.problems import ProblemSink

# A decision made by a per-tool policy records this prefix and the tool's name as its rule id.
TOOL_POLICY_RULE_PREFIX = "policy:"
TOOL_RATE_LIMIT_KEYS = ("scope", "windowSeconds", "maxCalls")
# Marks an entry of the server's own report of the rule set's limits (see the module docstring).
REPORTED_RULE_KEY = "ruleId"
MAX_TOOL_RATE_LIMITS = 20


def _whole_number(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def normalize_tool_rate_limits(raw: Any, path: str, problems: ProblemSink) -> list[dict[str, Any]] | None:
    """Check a policy's ``rateLimits``, reporting every problem to ``problems`` with its path
    (``rateLimits[0].windowSeconds``; indexes count the entries as sent, reported ones included).
    Returns the stored form, ``[{scope, windowSeconds, maxCalls}]`` in the order sent, or None
    when null or nothing is left once the reported entries are skipped."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        problems.add(path, "rateLimits must be a list of {scope, windowSeconds, maxCalls} or null")
        return None
    own = [
        (index, item)
        for index, item in enumerate(raw)
        if not (isinstance(item, Mapping) and REPORTED_RULE_KEY in item)
    ]
    if len(own) > MAX_TOOL_RATE_LIMITS:
        problems.add(path, f"at most {MAX_TOOL_RATE_LIMITS} rate limits per policy")
        return None
    limits: list[dict[str, Any]] = []
    first_of: dict[tuple[Any, Any], int] = {}
    for index, item in own:
        here = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            problems.add(here, "a rate limit must be an object with scope, windowSeconds and maxCalls")
            continue
        for key in item:
            if key not in TOOL_RATE_LIMIT_KEYS:
                problems.add(
                    f"{here}.{key}",
                    f"unknown rate limit key {key!r}; expected {', '.join(TOOL_RATE_LIMIT_KEYS)}",
                )
        scope = item.get("scope")
        if scope is None:
            scope = "global"
        elif scope not in RATE_LIMIT_SCOPES:
            problems.add(
                f"{here}.scope", f"scope must be one of {', '.join(RATE_LIMIT_SCOPES)}, got {scope!r}"
            )
        window = item.get("windowSeconds")
        if not _whole_number(window, 1, MAX_RATE_LIMIT_WINDOW_SECONDS):
            problems.add(
                f"{here}.windowSeconds",
                f"windowSeconds must be a whole number from 1 to {MAX_RATE_LIMIT_WINDOW_SECONDS}",
            )
        max_calls = item.get("maxCalls")
        if not _whole_number(max_calls, 1, MAX_RATE_LIMIT_CALLS):
            problems.add(
                f"{here}.maxCalls", f"maxCalls must be a whole number from 1 to {MAX_RATE_LIMIT_CALLS}"
            )
        # Two limits with one scope and window count in one bucket: only the lower maxCalls would
        # ever bite, and a reader could not tell which was meant.
        if isinstance(scope, str) and _whole_number(window, 1, MAX_RATE_LIMIT_WINDOW_SECONDS):
            if (scope, window) in first_of:
                problems.add(
                    here,
                    f"{path}[{first_of[scope, window]}] already limits scope {scope!r} over "
                    f"{window} seconds; keep one of them",
                )
            else:
                first_of[scope, window] = index
        limits.append({"scope": scope, "windowSeconds": window, "maxCalls": max_calls})
    return limits or None


def tool_policy_rate_limits(stored: Sequence[Mapping[str, Any]] | None) -> tuple[RateLimit, ...]:
    """The engine's ``RateLimit``s of a stored ``rateLimits`` (``normalize_tool_rate_limits``)."""
    return tuple(
        RateLimit(scope=limit["scope"], window_seconds=limit["windowSeconds"], max_calls=limit["maxCalls"])
        for limit in stored or ()
    )


def tool_policy_rate_limit_check(
    tool_name: str, policy_key: str, limits: Sequence[RateLimit], call: ToolCall
) -> RateLimitCheck:
    """The question to put to ``policies.rate_limiter`` for ``call`` under a tool policy's limits.

    Its ``rule_id`` is the one the policy's decisions record (``policy:<toolName>``). Each bucket
    key is built as a rule's (``evaluator._bucket_key``: scope, the call's id for it or
    ``global``, tool), under ``policy:<toolName>@<policy_key>/<windowSeconds>s``:

    * ``policy_key`` should be the policy's id, which stays across versions: a key that changed
      with the version would start every limit from zero at each update, so an edit that does
      not loosen (a reworded LLM description) would hand out a fresh allowance;
    * the window is in the key because the counters trim by their own window: two limits of one
      scope (10 a minute, 1000 a day) sharing a counter would each trim the other's history.
      Changing a limit's window starts that limit's count afresh.
    """
    rule_id = TOOL_POLICY_RULE_PREFIX + tool_name
    return RateLimitCheck(
        rule_id,
        tuple(
            (limit, _bucket_key(f"{rule_id}@{policy_key}/{limit.window_seconds}s", limit, call))
            for limit in limits
        ),
    )
