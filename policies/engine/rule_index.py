"""Which of a tool's rules a call could match, found without testing each one (issue 14).

Each rule carries ``Guards``: conditions on the call's arguments without which it cannot match,
derived when the rule is compiled (``evaluator`` for IR conditions, ``when_guards`` for ``when:``).
A ``Guard`` names an argument the call must hold and, optionally, the values it may hold. The
index files each rule under its guards, so a call looks up its own arguments (and their values)
and gets back the rules that remain possible, in document order. It may return rules that do
not match (the rule's own test decides); it must never leave out one that does: that is what
the value keys below are careful about.

Range guards (a number or size at least or at most a threshold) are in ``rule_bounds``.

Value keys follow the operators that produce value guards: IR ``equals``/``in`` compare strings
case-insensitively (``str.lower`` on both sides) and anything else with ``==``; CEL ``==``/``in``
compare strictly (same type, strings exactly). A string is filed under its lower-case form: two
strings equal in either sense have the same lower-case form. Numbers and booleans are filed as
they are: Python's ``==`` and ``hash`` agree across ``int``, ``float`` and ``bool`` (``1 == 1.0 ==
True`` is one dict key), so a value ``==`` to a literal finds the literal's key. What CEL's
stricter comparison rejects among those (``true`` against ``1``) the rule's own test rejects.

Rule positions are bits of an ``int``: a call ORs the masks it hits and reads the set bits from
the lowest, which is document order, without building and sorting a set.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from policies.engine.rule_bounds import UNKNOWN, Bound, Measure, Thresholds, value_number, value_size

R = TypeVar("R")


class Guard(NamedTuple):
    """A rule cannot match unless the call's arguments hold ``argument`` as a key and, when
    ``values`` is set, that argument's ``value_key`` is one of ``values``, or when ``bound`` is
    set, its number or size is within the bound (``rule_bounds``)."""

    argument: str
    values: frozenset[Any] | None = None
    bound: Bound | None = None


# A rule cannot match unless at least one of its guards holds; empty: any call may match.
Guards = tuple[Guard, ...]
NO_GUARDS: Guards = ()
# Each of these holds for the rule (one per part of its AND): the index picks one to file it by.
GuardOptions = tuple[Guards, ...]


def literal_key(value: Any) -> Any | None:
    """The key a literal of a value guard is filed under, or None when it cannot be one: only
    JSON's strings, numbers and booleans (NaN equals nothing, not even itself)."""
    cls = value.__class__
    if cls is str:
        return value.lower()
    if cls is bool or cls is int:
        return value
    if cls is float and not math.isnan(value):
        return value
    return None


def guard_weight(guards: Guards, tool_reads: frozenset[str] = frozenset()) -> float:
    """How many calls a rule with these guards is still visited for, roughly, to compare
    choices: an argument's presence counts 1, a few of its values far less. No call statistics
    exist at compile time; the one hint is ``tool_reads``, the arguments the tool's own rules
    read: an argument none of them reads is likely one the tool's calls do not carry (a global
    rule on ``path`` and ``amount``, for a tool whose rules read ``amount`` only, is better filed
    under ``path``), so it counts a quarter."""
    if not guards:
        return math.inf
    weight = 0.0
    for guard in guards:
        if guard.values is not None:
            part = min(1.0, 0.1 * len(guard.values))
        else:
            part = 1.0 if guard.bound is None else 0.5
        if tool_reads and guard.argument not in tool_reads:
            part *= 0.25
        weight += part
    return weight


def best_guards(options: Sequence[Guards], tool_reads: frozenset[str] = frozenset()) -> Guards:
    """Of several guards that all hold for a rule (parts of an AND), the one that filters best;
    the first of equals, so that choices follow the rule's text."""
    best, best_weight = NO_GUARDS, math.inf
    for option in options:
        weight = guard_weight(option, tool_reads)
        if weight < best_weight:
            best, best_weight = option, weight
    return best


class GuardChooser:
    """``best_guards`` for many tools' indexes of the same rules (the global rules are in every
    tool's), remembering each choice: it depends only on which of the rule's own arguments the
    tool reads (the others scale every option alike), so at 10,000 rules most of the ~10
    million choices are one dict lookup."""

    def __init__(self) -> None:
        self._choices: dict[tuple[int, frozenset[str]], Guards] = {}
        self._names: dict[int, frozenset[str]] = {}

    def choose(self, options: GuardOptions, tool_reads: frozenset[str]) -> Guards:
        if len(options) <= 1:
            return options[0] if options else NO_GUARDS
        # Keyed by identity: the options live in the compiled rules, which outlive this.
        names = self._names.get(id(options))
        if names is None:
            names = self._names[id(options)] = frozenset(g.argument for o in options for g in o)
        relevant = names & tool_reads
        key = (id(options), relevant)
        chosen = self._choices.get(key)
        if chosen is None:
            chosen = self._choices[key] = best_guards(options, relevant)
        return chosen


def arguments_read(options: Sequence[GuardOptions]) -> frozenset[str]:
    """Every argument any of these rules' guards names."""
    return frozenset(guard.argument for rule in options for guards in rule for guard in guards)


# What the index holds for one argument: the mask of its rules when every one needs only the
# argument's presence, else a function from the call's value to the rules it leaves possible.
_Entry = int | Callable[[Any], int]
# Sorted bounds of one kind on one argument: (at least, thresholds, masks) of rule_bounds.Thresholds.
_Sorted = tuple[bool, list[float], list[int]]


class _ArgumentEntry:
    """The guards filed under one argument while the index is built; ``freeze`` makes the
    ``_Entry`` a call consults."""

    __slots__ = ("present", "by_value", "any_value", "bounds")

    def __init__(self) -> None:
        self.present = 0  # rules that need the argument, whatever its value
        self.by_value: dict[Any, int] = {}  # value key -> rules that need that value
        self.any_value = 0  # every rule in by_value, for a value no key can describe
        self.bounds: dict[tuple[Measure, bool], Thresholds] = {}  # (measure, at_least) -> rules

    def add(self, guard: Guard, bit: int) -> None:
        if guard.values is not None:
            self.any_value |= bit
            for key in guard.values:
                self.by_value[key] = self.by_value.get(key, 0) | bit
        elif guard.bound is not None:
            measure, at_least, threshold = guard.bound
            thresholds = self.bounds.get((measure, at_least))
            if thresholds is None:
                thresholds = self.bounds[measure, at_least] = Thresholds(at_least)
            thresholds.add(threshold, bit)
        else:
            self.present |= bit

    def freeze(self) -> _Entry:
        present, by_value, any_value = self.present, self.by_value, self.any_value
        if not by_value and not self.bounds:
            return present
        numbers: list[_Sorted] = []
        sizes: list[_Sorted] = []
        every_number = every_size = 0
        for (measure, at_least), thresholds in self.bounds.items():
            thresholds.freeze()
            if measure == "number":
                numbers.append((at_least, *thresholds.sorted()))
                every_number |= thresholds.every
            else:
                sizes.append((at_least, *thresholds.sorted()))
                every_size |= thresholds.every

        # One closure per argument, with the lookups inlined: this runs for every argument of
        # every call, and a call to a helper costs about as much as a lookup.
        def matching(value: Any) -> int:
            mask = present
            if by_value:
                cls = value.__class__
                if cls is str:
                    mask |= by_value.get(value.lower(), 0)
                elif cls is int or cls is float or cls is bool:
                    mask |= by_value.get(value, 0)
                elif not (value is None or cls is list or cls is dict):
                    # None, lists and dicts equal no string, number or boolean under either
                    # language's equality. Anything else (a str or int subclass, a tuple, an
                    # object with its own __eq__): no claim what it equals, so every such rule.
                    mask |= any_value
            if numbers:
                number = value_number(value)
                if number is UNKNOWN:
                    mask |= every_number
                elif number is not None:
                    for at_least, ordered, masks in numbers:
                        mask |= masks[
                            bisect_right(ordered, number) if at_least else bisect_left(ordered, number)
                        ]
            if sizes:
                size = value_size(value)
                if size is UNKNOWN:
                    mask |= every_size
                elif size is not None:
                    for at_least, ordered, masks in sizes:
                        mask |= masks[bisect_right(ordered, size) if at_least else bisect_left(ordered, size)]
            return mask

        return matching


class RuleIndex(Generic[R]):
    """One tool's rules (the global ones, then its own, in document order), each filed under
    one of its guard options (``best_guards`` with the arguments the tool's own rules read, see
    ``guard_weight``). Which option is chosen changes only how many rules a call visits, never
    which can match.

    ``indexed=False`` files every rule as possible for every call: the reference the index is
    tested against (policies/tests/test_rule_index.py)."""

    __slots__ = ("rules", "guards", "_always", "_always_rules", "_by_argument")

    def __init__(
        self,
        rules: tuple[R, ...],
        options: Sequence[GuardOptions],
        *,
        tool_reads: frozenset[str] = frozenset(),
        indexed: bool = True,
        chooser: GuardChooser | None = None,
    ) -> None:
        self.rules = rules
        choose = (chooser or GuardChooser()).choose
        # The guards each rule is filed under, by position.
        self.guards: tuple[Guards, ...] = tuple(choose(o, tool_reads) for o in options)
        always = 0
        by_argument: dict[str, _ArgumentEntry] = {}
        for position, rule_guards in enumerate(self.guards):
            bit = 1 << position
            if not indexed or not rule_guards:
                always |= bit
                continue
            for guard in rule_guards:
                entry = by_argument.get(guard.argument)
                if entry is None:
                    entry = by_argument[guard.argument] = _ArgumentEntry()
                entry.add(guard, bit)
        self._always = always
        self._always_rules = tuple(self._rules_of(always))
        self._by_argument: dict[str, _Entry] = {name: entry.freeze() for name, entry in by_argument.items()}

    def _rules_of(self, mask: int) -> list[R]:
        rules, out = self.rules, []
        while mask:
            lowest = mask & -mask
            out.append(rules[lowest.bit_length() - 1])
            mask ^= lowest
        return out

    def candidates(self, arguments: Mapping[str, Any]) -> Sequence[R]:
        """The rules, in document order, that a call with ``arguments`` could match."""
        by_argument = self._by_argument
        if not by_argument:
            return self.rules
        mask = self._always
        # Walk the shorter of the call's arguments and the indexed names.
        if len(arguments) <= len(by_argument):
            for name, value in arguments.items():
                entry = by_argument.get(name)
                if entry is not None:
                    mask |= entry if entry.__class__ is int else entry(value)  # type: ignore[operator]
        else:
            for name, entry in by_argument.items():
                if name in arguments:
                    mask |= entry if entry.__class__ is int else entry(arguments[name])  # type: ignore[operator]
        if mask == self._always:
            return self._always_rules
        return self._rules_of(mask)
