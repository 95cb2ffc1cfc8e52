"""Range guards for the rule index (issue 14): a rule that can match only when an argument's
number (or size) is at least, or at most, a threshold.

They come from IR ``greater_than``/``less_than`` (the argument's number, as the operator reads it:
``conditions._to_float``, numeric strings and booleans included), IR ``length_greater_than`` (its
size as that operator counts it) and CEL ``>``, ``>=``, ``<``, ``<=`` against a number literal
(true only for a number, compared exactly). A strict comparison is filed as the inclusive one
(``x > 5`` as "at least 5"): the bound may keep a rule the rule's own test then rejects, never
the reverse.

For each argument and kind, the thresholds are sorted once with the OR of the rules at or below
(for "at least") or at or above (for "at most") each: a call's value finds its rules with one
``bisect`` and one mask, however many thresholds there are.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

from policies.engine.conditions import _length_comparable_size, _to_float

Measure = Literal["number", "size"]


class Bound(NamedTuple):
    """The rule can match only when the argument's ``measure`` is >= (``at_least``) or <=
    (not ``at_least``) ``threshold``."""

    measure: Measure
    at_least: bool
    threshold: float


def usable_threshold(threshold: Any) -> bool:
    """A threshold a bound can be sorted by: a real number, not NaN (which compares false with
    everything, so a rule comparing with it never matches; it just stays unbounded)."""
    cls = threshold.__class__
    return (cls is int or cls is float) and not (cls is float and math.isnan(threshold))


# Classes whose number and size the functions below state exactly; anything else is unknown.
_JSON_CLASSES = frozenset({str, int, float, bool, list, dict, type(None)})
UNKNOWN: Any = object()


def value_number(value: Any) -> Any:
    """The number IR's comparisons read from ``value`` (see conditions.compile_operator): ints and
    floats as they are (compared exactly, however large), others through ``_to_float``; None
    when there is none or it is NaN (nothing compares true with NaN); UNKNOWN outside JSON."""
    cls = value.__class__
    if cls is int or cls is float:
        return value if value == value else None
    if cls not in _JSON_CLASSES:
        return UNKNOWN
    number = _to_float(value)
    return number if number is not None and number == number else None


def value_size(value: Any) -> Any:
    """The size IR's ``length_greater_than`` reads (None: it has none); UNKNOWN outside JSON."""
    if value.__class__ not in _JSON_CLASSES:
        return UNKNOWN
    return _length_comparable_size(value)


class Thresholds:
    """The rules bounded one way on one argument's measure, sorted by threshold."""

    __slots__ = ("at_least", "_pending", "_thresholds", "_masks", "every")

    def __init__(self, at_least: bool) -> None:
        self.at_least = at_least
        self._pending: list[tuple[float, int]] = []
        self._thresholds: list[float] = []
        self._masks: list[int] = []
        self.every = 0

    def add(self, threshold: float, bit: int) -> None:
        self._pending.append((threshold, bit))
        self.every |= bit

    def freeze(self) -> None:
        pending = sorted(self._pending, key=lambda item: item[0])
        self._thresholds = [threshold for threshold, _ in pending]
        # at_least: masks[k] holds the rules of thresholds[:k] (those a measure >= them meets);
        # at most: masks[k] holds those of thresholds[k:].
        bits = [bit for _, bit in pending]
        masks, running = [0], 0
        order = bits if self.at_least else reversed(bits)
        for bit in order:
            running |= bit
            masks.append(running)
        self._masks = masks if self.at_least else masks[::-1]
        self._pending = []

    def sorted(self) -> tuple[list[float], list[int]]:
        """The thresholds in order, and the masks: for a measure ``m``, ``masks[k]`` with
        ``k = bisect_right(thresholds, m)`` (at least) or ``bisect_left`` (at most) is the rules
        whose bound ``m`` meets (rule_index inlines this lookup)."""
        return self._thresholds, self._masks
