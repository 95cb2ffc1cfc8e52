"""``blocked_by`` and ``requires``: rules over the calls a session made before this one.

Semantics are the SDK's (``veto.rules.condition_evaluator.evaluate_sequence_constraints``):
a history entry matches a constraint when it is a call of the named tool, was not denied,
is no older than ``within`` seconds (when given), and satisfies the constraint's conditions,
read from a context of the entry's arguments plus ``tool_name``, ``arguments``, ``decision``
and ``timestamp`` (with ``context.*`` meaning the built-ins ``time`` and ``day_of_week`` at
the entry's own time). A rule with sequence constraints fires (given its other conditions
match) when any ``blocked_by`` entry matches or any ``requires`` entry has no match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policies.engine.conditions import DAY_ORDER, compile_operator


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One earlier call of the same session, as the server recorded it."""

    tool_name: str
    arguments: Mapping[str, Any]
    decision: str
    timestamp: datetime


class _EntryView:
    """What a sequence constraint's conditions read from one history entry, built lazily."""

    __slots__ = ("entry", "_fields", "_builtins")

    def __init__(self, entry: HistoryEntry) -> None:
        self.entry = entry
        self._fields: dict[str, Any] | None = None
        self._builtins: dict[str, Any] | None = None

    @property
    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            entry = self.entry
            fields: dict[str, Any] = dict(entry.arguments)
            fields["tool_name"] = entry.tool_name
            fields["arguments"] = dict(entry.arguments)
            fields["decision"] = entry.decision
            fields["timestamp"] = entry.timestamp.isoformat()
            self._fields = fields
        return self._fields

    @property
    def builtins(self) -> dict[str, Any]:
        if self._builtins is None:
            at = self.entry.timestamp
            self._builtins = {"time": at.isoformat(), "day_of_week": DAY_ORDER[(at.weekday() + 1) % 7]}
        return self._builtins


EntryCheck = Callable[[_EntryView], bool]


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for segment in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(segment)
    return value


def _compile_entry_condition(condition: Mapping[str, Any]) -> EntryCheck:
    test = compile_operator(condition["operator"], condition["value"])
    field: str = condition["field"]
    if field == "context":
        return lambda view: test(view.builtins)
    if field.startswith("context."):
        rest = tuple(field[len("context.") :].split("."))
        return lambda view: test(_dig(view.builtins, rest))
    segments = tuple(field.split("."))
    return lambda view: test(_dig(view.fields, segments))


def _compile_entry_conditions(constraint: Mapping[str, Any]) -> EntryCheck:
    # As for rules, the SDK reads ``conditions`` when non-empty, else ``condition_groups``.
    conditions = [_compile_entry_condition(c) for c in constraint.get("conditions") or []]
    if conditions:
        return lambda view: all(check(view) for check in conditions)
    groups = [
        [_compile_entry_condition(c) for c in group] for group in constraint.get("condition_groups") or []
    ]
    groups = [group for group in groups if group]
    if groups:
        return lambda view: any(all(check(view) for check in group) for group in groups)
    return lambda view: True


HistoryCheck = Callable[[Sequence[HistoryEntry], datetime], bool]


def _compile_constraint(constraint: Mapping[str, Any]) -> HistoryCheck:
    """``(history, now) -> whether some entry satisfies the constraint``."""
    tool = constraint["tool"]
    within = constraint.get("within")
    within_seconds = float(within) if within is not None else None
    conditions = _compile_entry_conditions(constraint)

    def has_match(history: Sequence[HistoryEntry], now: datetime) -> bool:
        for entry in history:
            if entry.tool_name != tool or entry.decision == "deny":
                continue
            if within_seconds is not None:
                age = (now - entry.timestamp).total_seconds()
                if age < 0 or age > within_seconds:
                    continue
            if conditions(_EntryView(entry)):
                return True
        return False

    return has_match


def compile_sequence_constraints(rule: Mapping[str, Any]) -> HistoryCheck | None:
    """The rule's sequence test, or None when it has no ``blocked_by`` / ``requires``."""
    blocked_by = [_compile_constraint(c) for c in rule.get("blocked_by") or []]
    requires = [_compile_constraint(c) for c in rule.get("requires") or []]
    if not blocked_by and not requires:
        return None

    def sequence_fires(history: Sequence[HistoryEntry], now: datetime) -> bool:
        return any(check(history, now) for check in blocked_by) or any(
            not check(history, now) for check in requires
        )

    return sequence_fires


def sequence_tools(rule: Mapping[str, Any]) -> set[str]:
    """Tools whose calls this rule's sequence constraints look back for."""
    return {c["tool"] for key in ("blocked_by", "requires") for c in rule.get(key) or []}
