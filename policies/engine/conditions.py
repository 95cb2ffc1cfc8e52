"""Policy IR v1 conditions (``field`` / ``operator`` / ``value``) compiled to closures.

Operator semantics follow the published SDK's ``veto.rules.condition_evaluator``
exactly (case-insensitive string comparisons, ``length_greater_than`` counting
comma-separated items in a string, time windows with days and overnight spans),
because a rule must decide the same on the server as in the SDK's local mode.
One deliberate difference: ``matches`` uses RE2, so a pattern the SDK's
heuristic would silently never fire is either evaluated safely here or refused
at upload.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from policies.engine.errors import ExpressionError
from policies.engine.regexes import compile_search

# The view of one call that IR conditions read: see ``CallView`` in evaluator.py.
Predicate = Callable[[Any], bool]

OPERATORS = (
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "matches",
    "greater_than",
    "less_than",
    "length_greater_than",
    "in",
    "not_in",
    "within_hours",
    "outside_hours",
)

DAY_ORDER = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``field`` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# Characters float() can start from (besides Unicode digits and whitespace, checked below).
_FLOAT_START = frozenset("0123456789+-.iInN")


def _to_float(value: Any) -> float | None:
    """``float(value)`` or None, as the SDK's comparisons read numbers; quick to say no, because a
    failing float() raises, and most values compared to numbers in rules are not numbers."""
    cls = value.__class__
    if cls is int or cls is float or cls is bool:
        return float(value)
    if cls is str:
        first = value[:1]
        if not first or not (first in _FLOAT_START or first.isdigit() or first.isspace()):
            return None
    elif value is None or cls is list or cls is dict:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _length_comparable_size(value: Any) -> int | None:
    if isinstance(value, (list, tuple, set, frozenset, Mapping)):
        return len(value)
    if isinstance(value, str):
        if value.strip() == "":
            return 0
        if "," in value or ";" in value:
            return len([item for item in re.split(r"[;,]", value) if item.strip() != ""])
        return 1
    return None


def _parse_timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        candidate = value.strip()
        if candidate.endswith("Z"):
            candidate = candidate[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(candidate)
        except ValueError:
            return None
    return None


def _compile_time_window(expected: Any) -> Callable[[Any], tuple[bool, bool] | None]:
    """Returns ``value -> (in_scope_day, inside_window)`` or None when the value is no time."""
    if not isinstance(expected, Mapping):
        raise ConditionError("value", "a time window needs {start: 'HH:MM', end: 'HH:MM', timezone: ...}")
    start_raw, end_raw, zone_raw = expected.get("start"), expected.get("end"), expected.get("timezone")
    for key, raw in (("start", start_raw), ("end", end_raw)):
        if not isinstance(raw, str) or not _CLOCK.match(raw):
            raise ConditionError(f"value.{key}", f"{key} must be a 24-hour time 'HH:MM', got {raw!r}")
    if not isinstance(zone_raw, str) or not zone_raw:
        raise ConditionError("value.timezone", "timezone must be an IANA name such as 'Europe/Berlin'")
    try:
        zone = ZoneInfo(zone_raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConditionError("value.timezone", f"unknown timezone {zone_raw!r}") from exc
    days: set[str] | None = None
    days_raw = expected.get("days")
    if days_raw is not None:
        if not isinstance(days_raw, list):
            raise ConditionError("value.days", "days must be a list such as [mon, tue]")
        days = set()
        for index, day in enumerate(days_raw):
            normalized = day.strip().lower()[:3] if isinstance(day, str) else None
            if normalized not in DAY_ORDER:
                raise ConditionError(f"value.days[{index}]", f"unknown day {day!r}")
            days.add(normalized)
    assert isinstance(start_raw, str) and isinstance(end_raw, str)
    start = int(start_raw[:2]) * 60 + int(start_raw[3:])
    end = int(end_raw[:2]) * 60 + int(end_raw[3:])

    def evaluate(value: Any) -> tuple[bool, bool] | None:
        timestamp = _parse_timestamp(value)
        if timestamp is None:
            return None
        try:
            local = timestamp.astimezone(zone)
        except ValueError:
            return None
        day = DAY_ORDER[(local.weekday() + 1) % 7]
        minute = local.hour * 60 + local.minute
        relevant_day = DAY_ORDER[(DAY_ORDER.index(day) + 6) % 7] if start > end and minute < end else day
        if days is not None and relevant_day not in days:
            return False, False
        if start == end:
            return True, True
        if start < end:
            return True, start <= minute < end
        return True, minute >= start or minute < end

    return evaluate


def compile_operator(operator: str, expected: Any) -> Callable[[Any], bool]:
    """``field value -> bool`` for one IR operator and its expected value."""
    if operator in ("equals", "not_equals"):
        negate = operator == "not_equals"
        if isinstance(expected, str):
            lowered = expected.lower()

            def equals_text(value: Any) -> bool:
                result = value.lower() == lowered if isinstance(value, str) else value == expected
                return result != negate

            return equals_text
        return lambda value: (value == expected) != negate

    if operator in ("contains", "not_contains"):
        negate = operator == "not_contains"
        needle = expected.lower() if isinstance(expected, str) else None

        def contains(value: Any) -> bool:
            if isinstance(value, str) and needle is not None:
                return (needle in value.lower()) != negate
            if isinstance(value, list):
                return (expected in value) != negate
            return False

        return contains

    if operator in ("starts_with", "ends_with"):
        if not isinstance(expected, str):
            raise ConditionError("value", f"{operator} needs a string value")
        lowered = expected.lower()
        if operator == "starts_with":
            return lambda value: isinstance(value, str) and value.lower().startswith(lowered)
        return lambda value: isinstance(value, str) and value.lower().endswith(lowered)

    if operator == "matches":
        if not isinstance(expected, str):
            raise ConditionError("value", "matches needs a regular-expression string")
        try:
            search = compile_search(expected, ignore_case=True)
        except ExpressionError as exc:
            raise ConditionError("value", str(exc)) from exc
        return lambda value: isinstance(value, str) and search(value)

    if operator in ("greater_than", "less_than"):
        threshold = _to_float(expected)
        if threshold is None:
            raise ConditionError("value", f"{operator} needs a number, got {expected!r}")
        greater = operator == "greater_than"

        def compare(value: Any) -> bool:
            # Real numbers compare directly; anything else goes through float() as in the SDK
            # (so "3" is 3.0 and True is 1.0), whose failure path is slow.
            number = value if value.__class__ is int or value.__class__ is float else _to_float(value)
            if number is None:
                return False
            return number > threshold if greater else number < threshold

        return compare

    if operator == "length_greater_than":
        limit = _to_float(expected)
        if limit is None:
            raise ConditionError("value", f"length_greater_than needs a number, got {expected!r}")

        def longer(value: Any) -> bool:
            size = _length_comparable_size(value)
            return size is not None and size > limit

        return longer

    if operator in ("in", "not_in"):
        if not isinstance(expected, list):
            raise ConditionError("value", f"{operator} needs a list value")
        negate = operator == "not_in"
        # For a string value only string items can match (case-insensitively), as in the SDK.
        lowered_strings = frozenset(item.lower() for item in expected if isinstance(item, str))

        def member(value: Any) -> bool:
            if isinstance(value, str):
                found = value.lower() in lowered_strings
            else:
                try:
                    found = value in expected
                except TypeError:
                    found = False
            return found != negate

        return member

    if operator in ("within_hours", "outside_hours"):
        window = _compile_time_window(expected)
        inside_wanted = operator == "within_hours"

        def in_window(value: Any) -> bool:
            result = window(value)
            return bool(result and result[0] and (result[1] if inside_wanted else not result[1]))

        return in_window

    raise ConditionError(
        "operator", f"unknown operator {operator!r}; expected one of: {', '.join(OPERATORS)}"
    )
