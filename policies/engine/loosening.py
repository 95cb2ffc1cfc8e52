"""Whether a change to a per-tool policy loosens enforcement: a call the policy refused before
(denied, or held for approval) that it would let through, or merely hold, afterwards.

Creating, tightening and rewording a policy take ``policies:write``; loosening one takes what
deactivating takes (``policies.permissions``). This module decides which is which, on the
stored form of a policy (``constraints.normalize_tool_policy``'s output, plus ``is_active``):

* deleting a policy, or deactivating it, loosens;
* leaving ``deterministic`` mode loosens (only deterministic constraints are checked here);
* every check of every enabled constraint before must still be made, at least as strictly and
  with at least as strict an action (``deny`` > ``require_approval``), by some enabled
  constraint on the same argument after. So removing or disabling a constraint, widening a
  range, raising ``maxLength``/``maxItems`` or lowering their minimums, dropping ``required``
  or ``notNull``, adding ``enum`` values, and ``deny`` → ``require_approval`` all loosen;
  moving a check from one constraint of an argument to another does not. A changed regular
  expression counts as loosened: whether one pattern accepts less than another is not decided
  here, so only the same pattern (or one more constraint) is known to be as strict;
* LLM mode (``llm_config``): the constraints still decide first, and where they fail the model
  may allow the call under one of the ``exceptions`` (policies.engine.llm_config). So what LLM
  mode lets through is the exceptions as the model reads them: going to mode ``llm`` with
  exceptions, adding an exception or rewording one, and changing what the model reads them
  with (``description``, ``argumentInstructions``, ``preferredModel``) while there are any all
  loosen; removing exceptions and going back to ``deterministic`` do not. A configuration
  nothing reads (mode ``deterministic``, or no exceptions) may change freely;
* session constraints: removing or raising ``maxCalls``, ``budget`` or a cumulative limit,
  changing ``spendArgument``, removing a counter or removing or raising its ``max``, a counter
  no longer counting up on a tool or newly counting down on one, and ``deny`` →
  ``require_approval`` for a limit that is set all loosen;
* the policy's own rate limits: every limit before must be met by one of the same scope after
  that allows at most as many calls over at least as long a window (so removing a limit,
  raising ``maxCalls``, shortening ``windowSeconds`` and changing ``scope`` loosen);
* output rules (kept for the SDK's local output checks: policies.engine.output_rules): every
  enabled rule before must still be there, enabled, under its id, with the same conditions,
  tools and replacement text, and an action at least as strict (``log`` < ``redact`` <
  ``block``). Renaming a rule or rewording its description does not loosen; any other change,
  removal or disabling does: whether other conditions match less is not decided here.

Each part is a preorder (reflexive and transitive: a chain of changes none of which loosens
never loosens), checked by property tests in policies/tests/test_loosening.py.

Pure Python: no Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.engine.output_rules import DEFAULT_REDACT_WITH, OUTPUT_ACTIONS

_ACTION_STRENGTH = {"require_approval": 1, "deny": 2}
# (key, strict): a value passes a lower bound b when it is > b (strict) or >= b.
_LOWER_BOUNDS = (("greaterThan", True), ("greaterThanOrEqual", False), ("minimum", False))
_UPPER_BOUNDS = (("lessThan", True), ("lessThanOrEqual", False), ("maximum", False))
_AT_LEAST = ("minLength", "minItems")
_AT_MOST = ("maxLength", "maxItems")
_FLAGS = ("required", "notNull")


@dataclass(frozen=True, slots=True)
class _Check:
    argument: str
    label: str  # as a reader names it: "maximum 1000"
    action: str


def _strength(constraint: Mapping[str, Any]) -> int:
    return _ACTION_STRENGTH.get(constraint.get("action") or "deny", 2)


def _lower_covers(before: tuple[float, bool], after: tuple[float, bool]) -> bool:
    (b, strict), (b2, strict2) = before, after
    return b2 > b or (b2 == b and (strict2 or not strict))


def _upper_covers(before: tuple[float, bool], after: tuple[float, bool]) -> bool:
    (b, strict), (b2, strict2) = before, after
    return b2 < b or (b2 == b and (strict2 or not strict))


def _bounds(constraint: Mapping[str, Any], keys: Iterable[tuple[str, bool]]) -> list[tuple[float, bool]]:
    return [(constraint[key], strict) for key, strict in keys if constraint.get(key) is not None]


def _checks_of(constraint: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Each check one constraint makes, as (kind, expected); every enabled constraint refuses
    a NaN or infinite number, whatever its bounds."""
    checks: list[tuple[str, Any]] = [("finite", None)]
    for key, strict in _LOWER_BOUNDS:
        if constraint.get(key) is not None:
            checks.append(("lower", (key, constraint[key], strict)))
    for key, strict in _UPPER_BOUNDS:
        if constraint.get(key) is not None:
            checks.append(("upper", (key, constraint[key], strict)))
    for key in (*_AT_LEAST, *_AT_MOST):
        if constraint.get(key) is not None:
            checks.append((key, constraint[key]))
    for key in _FLAGS:
        if constraint.get(key):
            checks.append((key, True))
    if constraint.get("regex") is not None:
        checks.append(("regex", constraint["regex"]))
    if constraint.get("enum") is not None:
        checks.append(("enum", list(constraint["enum"])))
    if constraint.get("notRegex") is not None:
        checks.append(("notRegex", constraint["notRegex"]))
    for key in ("dynamicMinimum", "dynamicMaximum"):
        if constraint.get(key) is not None:
            checks.append((key, constraint[key]))
    if constraint.get("notEnum") is not None:
        checks.append(("notEnum", list(constraint["notEnum"])))
    return checks


def _covered(kind: str, expected: Any, other: Mapping[str, Any]) -> bool:
    """Whether ``other`` makes the check (kind, expected) at least as strictly."""
    if kind == "finite":
        return True
    if kind == "lower":
        _, bound, strict = expected
        return any(_lower_covers((bound, strict), b) for b in _bounds(other, _LOWER_BOUNDS))
    if kind == "upper":
        _, bound, strict = expected
        return any(_upper_covers((bound, strict), b) for b in _bounds(other, _UPPER_BOUNDS))
    if kind in _AT_LEAST:
        return other.get(kind) is not None and other[kind] >= expected
    if kind in _AT_MOST:
        return other.get(kind) is not None and other[kind] <= expected
    if kind in _FLAGS:
        return bool(other.get(kind))
    if kind == "regex":
        return other.get("regex") == expected
    if kind == "enum":
        return other.get("enum") is not None and set(other["enum"]) <= set(expected)
    if kind in ("notRegex", "dynamicMinimum", "dynamicMaximum"):
        # Only the same pattern, or the same argument as the bound, is known to refuse as much.
        return bool(other.get(kind) == expected)
    if kind == "notEnum":  # every value refused before is still refused
        return other.get("notEnum") is not None and set(expected) <= set(other["notEnum"])
    raise ValueError(f"unknown check {kind!r}")  # pragma: no cover - every kind is listed above


def _label(kind: str, expected: Any) -> str:
    if kind == "finite":
        return "the check of finite numbers"
    if kind in ("lower", "upper"):
        key, bound, _ = expected
        return f"{key} {bound!r}"
    if kind in _FLAGS:
        return kind
    if kind == "enum":
        return f"enum {expected!r}"
    return f"{kind} {expected!r}"


def _enabled(constraints: Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    return [c for c in constraints or [] if c.get("enabled", True) is not False]


def constraints_loosened(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]] | None
) -> list[str]:
    """How ``after`` enforces less than ``before`` (stored constraint lists), one reason per
    check no longer made as strictly; empty when it enforces at least as much."""
    reasons: list[str] = []
    after_enabled = _enabled(after)
    for constraint in _enabled(before):
        argument = constraint["argumentName"]
        strength = _strength(constraint)
        same_argument = [c for c in after_enabled if c["argumentName"] == argument]
        if not same_argument:
            reasons.append(f"{argument!r}: its constraint is removed or disabled")
            continue
        for kind, expected in _checks_of(constraint):
            label = _label(kind, expected)
            covering = [c for c in same_argument if _covered(kind, expected, c)]
            if any(_strength(c) >= strength for c in covering):
                continue
            if covering:
                reasons.append(f"{argument!r}: {label} now holds calls for approval instead of denying them")
            else:
                reasons.append(f"{argument!r}: {label} is loosened or removed")
    return list(dict.fromkeys(reasons))


# ---------------------------------------------------------------------------------------------
# LLM mode


def _judgement(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in ("description", "argumentInstructions", "preferredModel")}


_JUDGEMENT_LABELS = {
    "description": "the tool's description",
    "argumentInstructions": "the argument instructions",
    "preferredModel": "the preferred model",
}


def _exceptions_in_force(policy: Mapping[str, Any]) -> list[str]:
    """The exceptions under which the model may allow a call the constraints refuse: none unless
    the policy is in mode llm."""
    if policy.get("mode") != "llm":
        return []
    return list((policy.get("llm_config") or {}).get("exceptions") or [])


def llm_config_loosened(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """How ``after`` (a stored policy) lets its model allow more than ``before`` does."""
    exceptions = _exceptions_in_force(after)
    if not exceptions:
        return []
    before_exceptions = _exceptions_in_force(before)
    if not before_exceptions:
        if before.get("mode") != "llm":
            return [
                f"mode changes from {before.get('mode')!r} to 'llm': a language model may allow calls the "
                f"constraints refuse, under {len(exceptions)} exception(s)"
            ]
        return [f"LLM exception {text!r} is added" for text in exceptions]
    reasons = [
        f"LLM exception {text!r} is added or reworded" for text in exceptions if text not in before_exceptions
    ]
    old = _judgement(before.get("llm_config") or {})
    new = _judgement(after.get("llm_config") or {})
    reasons.extend(
        f"{_JUDGEMENT_LABELS[key]} the model reads the exceptions with is changed"
        for key in old
        if old[key] != new[key]
    )
    return reasons


# ---------------------------------------------------------------------------------------------
# Session constraints

# Set one of these and the top-level maxAction says what a call over it gets.
_SESSION_LIMIT_KEYS = ("maxCalls", "budget", "cumulativeLimits")


def _limit_strength(action: Any) -> int:
    return _ACTION_STRENGTH.get(action or "deny", 2)


def _raised(key: str, before: Any, after: Any) -> str | None:
    if before is None:
        return None
    if after is None:
        return f"{key} {before!r} is removed"
    if after > before:
        return f"{key} is raised from {before!r} to {after!r}"
    return None


def session_constraints_loosened(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[str]:
    """How the stored session constraints ``after`` let a session do more than ``before``."""
    before, after = before or {}, after or {}
    reasons = [
        f"session {reason}"
        for key in ("maxCalls", "budget")
        if (reason := _raised(key, before.get(key), after.get(key))) is not None
    ]
    spend = before.get("spendArgument")
    if spend is not None and after.get("spendArgument") != spend:
        reasons.append(
            f"the session budget's spendArgument changes from {spend!r} to {after.get('spendArgument')!r}"
        )
    for limit in before.get("cumulativeLimits") or []:
        argument, maximum = limit["argumentName"], limit["maxValue"]
        if not any(
            other["argumentName"] == argument and other["maxValue"] <= maximum
            for other in after.get("cumulativeLimits") or []
        ):
            reasons.append(
                f"the session's cumulative limit on {argument!r} ({maximum!r}) is removed or raised"
            )
    if any(before.get(key) is not None for key in _SESSION_LIMIT_KEYS) and _limit_strength(
        after.get("maxAction")
    ) < _limit_strength(before.get("maxAction")):
        reasons.append("a call over the session's limits is now held for approval instead of denied")
    after_counters = after.get("counters") or {}
    for name, counter in (before.get("counters") or {}).items():
        kept = after_counters.get(name)
        if kept is None:
            reasons.append(f"session counter {name!r} is removed")
            continue
        if (reason := _raised("max", counter.get("max"), kept.get("max"))) is not None:
            reasons.append(f"session counter {name!r}: {reason}")
        reasons.extend(
            f"session counter {name!r} no longer counts up on {tool!r}"
            for tool in counter.get("increment") or []
            if tool not in (kept.get("increment") or [])
        )
        reasons.extend(
            f"session counter {name!r} now counts down on {tool!r}"
            for tool in kept.get("decrement") or []
            if tool not in (counter.get("decrement") or [])
        )
        if counter.get("max") is not None and _limit_strength(kept.get("maxAction")) < _limit_strength(
            counter.get("maxAction")
        ):
            reasons.append(f"a call over session counter {name!r} is now held for approval instead of denied")
    return reasons


# ---------------------------------------------------------------------------------------------
# Rate limits


def _limit_label(limit: Mapping[str, Any]) -> str:
    return f"{limit['maxCalls']} calls per {limit['windowSeconds']} s (scope {limit['scope']})"


def rate_limits_loosened(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]] | None
) -> list[str]:
    """How the stored rate limits ``after`` allow more calls than ``before``: a limit of at most
    m calls in any w seconds is met by one of the same scope allowing m' <= m in w' >= w (any w
    seconds lie inside some w' seconds)."""
    reasons = []
    for limit in before or []:
        same_scope = [other for other in after or [] if other["scope"] == limit["scope"]]
        if any(
            other["maxCalls"] <= limit["maxCalls"] and other["windowSeconds"] >= limit["windowSeconds"]
            for other in same_scope
        ):
            continue
        if same_scope:
            reasons.append(f"the rate limit of {_limit_label(limit)} is raised or its window shortened")
        else:
            reasons.append(f"the rate limit of {_limit_label(limit)} is removed or its scope changed")
    return reasons


# ---------------------------------------------------------------------------------------------
# Output rules

# Wording: what a rule is called and the reason a block gives, not what it matches.
_OUTPUT_RULE_WORDING = frozenset({"name", "description"})


def _enabled_rules(rules: Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    return [rule for rule in rules or [] if rule.get("enabled", True) is not False]


def _what_rule_matches(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in rule.items()
        if key not in _OUTPUT_RULE_WORDING and key not in ("action", "enabled", "redact_with")
    }


def _output_action_loosened(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    old_action, new_action = old.get("action"), new.get("action")
    if old_action == new_action:
        if old_action == "redact" and (old.get("redact_with") or DEFAULT_REDACT_WITH) != (
            new.get("redact_with") or DEFAULT_REDACT_WITH
        ):
            return "replaces what it redacts with other text"
        return None
    if old_action in OUTPUT_ACTIONS and new_action in OUTPUT_ACTIONS:
        if OUTPUT_ACTIONS.index(new_action) > OUTPUT_ACTIONS.index(old_action):
            return None
    return f"action {old_action!r} becomes {new_action!r}, which lets more of the output through"


def output_rules_loosened(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]] | None
) -> list[str]:
    """How the stored output rules ``after`` let more tool output through than ``before``."""
    after_enabled = _enabled_rules(after)
    by_id = {rule["id"]: rule for rule in after_enabled if rule.get("id")}
    reasons = []
    for rule in _enabled_rules(before):
        rule_id = rule.get("id")
        if not rule_id:  # no id to follow it by: only the same rule is known to be as strict
            if rule not in after_enabled:
                reasons.append("an output rule without an id is removed or changed")
            continue
        kept = by_id.get(rule_id)
        if kept is None:
            reasons.append(f"output rule {rule_id!r} is removed or disabled")
        elif _what_rule_matches(kept) != _what_rule_matches(rule):
            reasons.append(f"output rule {rule_id!r}: what it matches, or the tools it covers, is changed")
        elif (reason := _output_action_loosened(rule, kept)) is not None:
            reasons.append(f"output rule {rule_id!r}: {reason}")
    return reasons


# ---------------------------------------------------------------------------------------------
# The whole policy


def tool_policy_loosened(before: Mapping[str, Any], after: Mapping[str, Any] | None) -> list[str]:
    """How the policy ``after`` (None: deleted) enforces less than ``before``; empty when it
    enforces at least as much. Both are stored policies: ``is_active``, ``mode``,
    ``constraints``, ``output_rules``, ``llm_config``, ``session_constraints``, ``rate_limits``."""
    if after is None:
        return ["the policy is deleted"]
    reasons: list[str] = []
    if before.get("is_active", True) and not after.get("is_active", True):
        reasons.append("the policy is deactivated")
    if after.get("mode") not in ("deterministic", "llm") and after.get("mode") != before.get("mode"):
        reasons.append(f"mode changes from {before.get('mode')!r} to {after.get('mode')!r}")
    reasons.extend(constraints_loosened(before.get("constraints"), after.get("constraints")))
    reasons.extend(llm_config_loosened(before, after))
    reasons.extend(
        session_constraints_loosened(before.get("session_constraints"), after.get("session_constraints"))
    )
    reasons.extend(rate_limits_loosened(before.get("rate_limits"), after.get("rate_limits")))
    reasons.extend(output_rules_loosened(before.get("output_rules"), after.get("output_rules")))
    return reasons
