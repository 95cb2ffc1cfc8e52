"""Session constraints of per-tool policies: how much one agent session may do with a tool.

The SDK's model (``veto.admin.SessionConstraints``) puts these on a tool's policy:

* ``maxCalls``: calls of the tool per session;
* ``spendArgument`` + ``budget``: the sum of that argument over the session's calls;
* ``cumulativeLimits`` (``[{argumentName, maxValue}]``): the same for other arguments;
* ``counters`` (``{name: {increment, decrement, max, maxAction}}``): a named count that calls
  of the tools in ``increment`` raise by one and calls of those in ``decrement`` lower by one
  (never below zero), across tools: a counter of ``open_file``'s policy can be lowered by
  ``close_file``'s calls. A call that would raise it past ``max`` gets ``maxAction``.

The SDK leaves two things to the server, decided here:

* ``maxAction`` at the top level (beside ``maxCalls``; the SDK keeps unknown keys) says what a
  call over ``maxCalls``, the budget or a cumulative limit gets: ``deny`` (the default) or
  ``require_approval``;
* an amount that is not a finite number of at least zero (absent, text, negative) cannot be
  counted against a budget, so the call is denied (fail closed), with the argument named.

A session is (team, agent, session id) from the call's context; calls without an agent or a
session id share the agent's (or the team's) bucket, as the SDK's rate limits fall back to
``global``. What counts: calls that were allowed or held for approval; a held call's
reservation is given back when its approval is denied or expires (policies.session_counters).

Pure Python: no Django. ``normalize_session_constraints`` checks a body with located problems;
``SessionLimit``/``limits_of_policy``/``counter_limits`` compile stored ones; ``tallies_for_call``
turns a call into what the store must count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from policies.engine.problems import ProblemSink

LimitAction = Literal["deny", "require_approval"]
LIMIT_ACTIONS: tuple[LimitAction, ...] = ("deny", "require_approval")
SESSION_CONSTRAINT_KEYS = frozenset(
    {"maxCalls", "spendArgument", "budget", "cumulativeLimits", "counters", "maxAction"}
)
COUNTER_KEYS = frozenset({"increment", "decrement", "max", "maxAction"})
CUMULATIVE_LIMIT_KEYS = frozenset({"argumentName", "maxValue"})
# What the top-level maxAction applies to.
_TOP_LIMIT_KEYS = ("maxCalls", "spendArgument", "budget", "cumulativeLimits")
MAX_CALLS_LIMIT = 10_000_000
MAX_AMOUNT = 1e15  # budgets and cumulative limits: past this a float loses whole units
MAX_CUMULATIVE_LIMITS = 50
MAX_COUNTERS = 50
MAX_COUNTER_TOOLS = 100
ARGUMENT_NAME_MAX = 200
COUNTER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


# ---------------------------------------------------------------------------------------------
# Write time


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _argument_name(value: Any, path: str, problems: ProblemSink) -> str | None:
    if not isinstance(value, str) or not value or len(value) > ARGUMENT_NAME_MAX:
        problems.add(path, f"must be an argument name (1 to {ARGUMENT_NAME_MAX} characters)")
        return None
    return value


def _amount(value: Any, path: str, problems: ProblemSink) -> float | None:
    if not _is_number(value) or not 0 < value <= MAX_AMOUNT:
        problems.add(path, f"must be a number above 0 and at most {MAX_AMOUNT:.0e}")
        return None
    return value


def _action(value: Any, path: str, problems: ProblemSink) -> LimitAction | None:
    if value not in LIMIT_ACTIONS:
        problems.add(path, f"must be one of {', '.join(LIMIT_ACTIONS)}, got {value!r}")
        return None
    return value


def _tool_list(
    value: Any, path: str, problems: ProblemSink, check_tool_name: Any, *, required: bool
) -> list[str]:
    if not isinstance(value, list) or (required and not value) or len(value) > MAX_COUNTER_TOOLS:
        size = "1" if required else "0"
        problems.add(path, f"must be a list of {size} to {MAX_COUNTER_TOOLS} tool names")
        return []
    tools: list[str] = []
    for index, name in enumerate(value):
        found = check_tool_name(name, f"{path}[{index}]")
        if found:
            for problem in found:
                problems.add(problem.path, problem.message)
        elif name in tools:
            problems.add(f"{path}[{index}]", f"{name!r} is listed twice")
        else:
            tools.append(name)
    return tools


def normalize_session_constraints(
    raw: Any, path: str, problems: ProblemSink, *, check_tool_name: Any, ignored_keys: frozenset[str]
) -> dict[str, Any] | None:
    """The stored form of a ``sessionConstraints`` body (camelCase, as the SDK sends it), or None
    when it sets nothing. ``ignored_keys`` are the server's own markers (a fetched policy sent
    back); ``check_tool_name(name, path)`` returns the problems of a tool name."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add(path, "sessionConstraints must be an object or null")
        return None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ignored_keys or value is None:
            continue
        here = f"{path}.{key}"
        if key not in SESSION_CONSTRAINT_KEYS:
            problems.add(here, f"unknown session constraint {key!r}")
        elif key == "maxCalls":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CALLS_LIMIT:
                problems.add(here, f"maxCalls must be a whole number from 1 to {MAX_CALLS_LIMIT}")
            else:
                out[key] = value
        elif key == "spendArgument":
            if (name := _argument_name(value, here, problems)) is not None:
                out[key] = name
        elif key == "budget":
            if (budget := _amount(value, here, problems)) is not None:
                out[key] = budget
        elif key == "maxAction":
            if (action := _action(value, here, problems)) is not None:
                out[key] = action
        elif key == "cumulativeLimits":
            limits = _cumulative_limits(value, here, problems)
            if limits:
                out[key] = limits
        elif key == "counters":
            counters = _counters(value, here, problems, check_tool_name)
            if counters:
                out[key] = counters
    has_argument, has_budget = (
        "spendArgument" in raw and raw["spendArgument"] is not None,
        ("budget" in raw and raw["budget"] is not None),
    )
    if has_argument != has_budget:
        # Reported where the lone half is, so the message points at what was sent.
        present, missing = ("spendArgument", "budget") if has_argument else ("budget", "spendArgument")
        problems.add(f"{path}.{present}", f"{present} needs {missing}: the budget counts the spend argument")
    # Counters have their own maxAction: a top-level one beside none of these would change nothing.
    if "maxAction" in out and all(raw.get(key) is None for key in _TOP_LIMIT_KEYS):
        problems.add(
            f"{path}.maxAction",
            "maxAction applies to maxCalls, a budget or cumulativeLimits (a counter has its own): set one",
        )
    return out or None


def _cumulative_limits(value: Any, path: str, problems: ProblemSink) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_CUMULATIVE_LIMITS:
        problems.add(
            path,
            f"cumulativeLimits must be a list of at most {MAX_CUMULATIVE_LIMITS} {{argumentName, maxValue}}",
        )
        return []
    limits: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        here = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            problems.add(here, "a cumulative limit must be an object with argumentName and maxValue")
            continue
        for key in item:
            if key not in CUMULATIVE_LIMIT_KEYS:
                problems.add(f"{here}.{key}", f"unknown cumulative limit key {key!r}")
        name = _argument_name(item.get("argumentName"), f"{here}.argumentName", problems)
        limit = _amount(item.get("maxValue"), f"{here}.maxValue", problems)
        if name is not None and name in seen:
            problems.add(f"{here}.argumentName", f"{name!r} already has a cumulative limit")
        elif name is not None and limit is not None:
            seen.add(name)
            limits.append({"argumentName": name, "maxValue": limit})
    return limits


def _counters(value: Any, path: str, problems: ProblemSink, check_tool_name: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or len(value) > MAX_COUNTERS:
        problems.add(path, f"counters must be an object of at most {MAX_COUNTERS} named counters")
        return {}
    counters: dict[str, Any] = {}
    for name, spec in value.items():
        here = f"{path}.{name}"
        if not isinstance(name, str) or not COUNTER_NAME.fullmatch(name):
            problems.add(here, "a counter's name is 1 to 64 letters, digits, '_', '.' or '-'")
            continue
        if not isinstance(spec, Mapping):
            problems.add(here, "a counter must be an object with increment (and decrement, max, maxAction)")
            continue
        for key in spec:
            if key not in COUNTER_KEYS:
                problems.add(f"{here}.{key}", f"unknown counter key {key!r}")
        counter: dict[str, Any] = {
            "increment": _tool_list(
                spec.get("increment"), f"{here}.increment", problems, check_tool_name, required=True
            )
        }
        if spec.get("decrement") is not None:
            decrement = _tool_list(
                spec["decrement"], f"{here}.decrement", problems, check_tool_name, required=False
            )
            both = sorted(set(decrement) & set(counter["increment"]))
            if both:
                problems.add(
                    f"{here}.decrement", f"{', '.join(both)} cannot both raise and lower the counter"
                )
            if decrement:
                counter["decrement"] = decrement
        maximum = spec.get("max")
        if maximum is not None:
            if (
                isinstance(maximum, bool)
                or not isinstance(maximum, int)
                or not 0 <= maximum <= MAX_CALLS_LIMIT
            ):
                problems.add(f"{here}.max", f"max must be a whole number from 0 to {MAX_CALLS_LIMIT}")
            else:
                counter["max"] = maximum
        if spec.get("maxAction") is not None:
            if maximum is None:
                problems.add(f"{here}.maxAction", "maxAction needs a max")
            elif (action := _action(spec["maxAction"], f"{here}.maxAction", problems)) is not None:
                counter["maxAction"] = action
        counters[name] = counter
    return counters


# ---------------------------------------------------------------------------------------------
# Run time


@dataclass(frozen=True, slots=True)
class SessionLimit:
    """One count a call of a tool moves: ``field`` of the session's counters, by one or by the
    value of ``argument``; refused past ``limit`` (None: counted, never refused)."""

    kind: Literal["maxCalls", "budget", "cumulative", "counter"]
    field: str
    policy_tool: str  # whose policy defines it
    limit: float | None
    action: LimitAction
    argument: str | None = None  # the amount's argument (budget, cumulative); None counts 1
    counter: str | None = None  # a counter's name
    lowers: bool = False  # a counter's decrement

    def describe(self, used: float, delta: float) -> str:
        """The reason of a call refused by this limit, with what is left."""
        left = _clean(max(0.0, (self.limit or 0.0) - used))
        if self.kind == "maxCalls":
            return (
                f"Session limit reached for {self.policy_tool}: {_clean(used)} of {_clean(self.limit)} "
                f"calls used (maxCalls {_clean(self.limit)}), {left} left"
            )
        if self.kind == "budget":
            return (
                f"Session budget exceeded for {self.policy_tool}: {self.argument} {_clean(delta)} would "
                f"bring spend to {_clean(used + delta)} of budget {_clean(self.limit)} ({left} left)"
            )
        if self.kind == "cumulative":
            return (
                f"Session cumulative limit exceeded for {self.policy_tool}: {self.argument} total would "
                f"be {_clean(used + delta)} of {_clean(self.limit)} ({left} left)"
            )
        return (
            f"Session counter '{self.counter}' of {self.policy_tool}'s policy is at its max "
            f"{_clean(self.limit)} ({_clean(used)} counted)"
        )


def _clean(value: float | None) -> str:
    if value is None:
        return "none"
    rounded = round(value, 6)
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def limits_of_policy(tool_name: str, stored: Mapping[str, Any] | None) -> tuple[SessionLimit, ...]:
    """The limits a tool's own calls count against (not its counters: ``counter_limits``)."""
    if not stored:
        return ()
    action: LimitAction = stored.get("maxAction", "deny")
    limits: list[SessionLimit] = []
    if stored.get("maxCalls") is not None:
        limits.append(SessionLimit("maxCalls", f"calls|{tool_name}", tool_name, stored["maxCalls"], action))
    if stored.get("spendArgument") is not None:
        limits.append(
            SessionLimit(
                "budget", f"spend|{tool_name}", tool_name, stored["budget"], action, stored["spendArgument"]
            )
        )
    for item in stored.get("cumulativeLimits") or ():
        name = item["argumentName"]
        limits.append(
            SessionLimit("cumulative", f"sum|{tool_name}|{name}", tool_name, item["maxValue"], action, name)
        )
    return tuple(limits)


def counter_limits(
    policies: Iterable[tuple[str, Mapping[str, Any] | None]],
) -> dict[str, tuple[SessionLimit, ...]]:
    """tool name -> the counters (of any of the team's policies) its calls raise or lower."""
    by_tool: dict[str, list[SessionLimit]] = {}
    for policy_tool, stored in policies:
        for name, spec in ((stored or {}).get("counters") or {}).items():
            field = f"counter|{policy_tool}|{name}"
            action: LimitAction = spec.get("maxAction", "deny")
            for tool in spec["increment"]:
                by_tool.setdefault(tool, []).append(
                    SessionLimit("counter", field, policy_tool, spec.get("max"), action, counter=name)
                )
            for tool in spec.get("decrement") or ():
                by_tool.setdefault(tool, []).append(
                    SessionLimit("counter", field, policy_tool, None, action, counter=name, lowers=True)
                )
    return {tool: tuple(limits) for tool, limits in by_tool.items()}


@dataclass(frozen=True, slots=True)
class Tally:
    """One count to move for one call: ``delta`` on ``limit.field``."""

    limit: SessionLimit
    delta: float


@dataclass(frozen=True, slots=True)
class UncountableAmount:
    """The call names no amount a budget or cumulative limit can count: denied (fail closed)."""

    limit: SessionLimit
    value: Any

    @property
    def reason(self) -> str:
        what = "budget" if self.limit.kind == "budget" else "cumulative limit"
        shown = "missing" if self.value is _MISSING else f"{self.value!r}"[:80]
        return (
            f"Session {what} of {self.limit.policy_tool} counts argument '{self.limit.argument}', "
            f"which must be a number from 0 to {MAX_AMOUNT:.0e} (got {shown}): denied, as it cannot be counted"
        )


_MISSING = object()


def tallies_for_call(
    limits: Iterable[SessionLimit], arguments: Mapping[str, Any]
) -> list[Tally] | UncountableAmount:
    """What a call moves, or why it cannot be counted."""
    tallies: list[Tally] = []
    for limit in limits:
        if limit.argument is None:
            tallies.append(Tally(limit, -1.0 if limit.lowers else 1.0))
            continue
        value = arguments.get(limit.argument, _MISSING)
        if not _is_number(value) or value < 0 or value > MAX_AMOUNT:
            return UncountableAmount(limit, value)
        tallies.append(Tally(limit, float(value)))
    return tallies
