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
* output rules, LLM configuration and session constraints that were set and are removed or
  changed loosen (this server refuses them today, so stored policies have none).

Pure Python: no Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def tool_policy_loosened(before: Mapping[str, Any], after: Mapping[str, Any] | None) -> list[str]:
    """How the policy ``after`` (None: deleted) enforces less than ``before``; empty when it
    enforces at least as much. Both are stored policies: ``is_active``, ``mode``,
    ``constraints``, ``output_rules``, ``llm_config``, ``session_constraints``."""
    if after is None:
        return ["the policy is deleted"]
    reasons: list[str] = []
    if before.get("is_active", True) and not after.get("is_active", True):
        reasons.append("the policy is deactivated")
    if before.get("mode") == "deterministic" and after.get("mode") != "deterministic":
        reasons.append(f"mode changes from deterministic to {after.get('mode')!r}")
    reasons.extend(constraints_loosened(before.get("constraints"), after.get("constraints")))
    kept_rules = after.get("output_rules") or []
    if any(rule not in kept_rules for rule in before.get("output_rules") or []):
        reasons.append("output rules are removed or changed")
    for key, what in (
        ("llm_config", "the LLM configuration is removed or changed"),
        ("session_constraints", "session constraints are removed or changed"),
    ):
        if before.get(key) not in (None, {}, []) and after.get(key) != before.get(key):
            reasons.append(what)
    return reasons
