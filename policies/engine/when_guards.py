"""What a ``when:`` expression says about the arguments a call needs to satisfy it (issue 14).

Only operands of the expression's top-level ``&&`` chain are read: ``&&`` is false as soon as
one operand is falsy, whatever the others are, so a guard of any one operand is a guard of the
whole. Two kinds of operand give a guard (see ``rule_index.Guard``):

* a value guard, from ``args.x == <literal>`` (either side), ``args.x in [<literals>]`` and
  ``||`` chains of those on the same ``x``: true only when ``args.x`` equals one of the literals
  (CEL's strict equality; the index compares more loosely, which only keeps extra rules);
* a range guard, from ``args.x > <number>`` (and ``>=``, ``<``, ``<=``, either side): true only
  for a number in range (``rule_bounds``);
* a presence guard, from an operand that reads nothing but ``args.x`` (so with ``x`` absent it
  is a constant) and is falsy when ``x`` is absent, which evaluating it once without arguments
  shows (``has(args.x)``, ``args.x > 3``, ``size(args.x) > 1``; not ``!has(args.x)``).

Each operand with a guard is an option; the rule index picks one (``rule_index.best_guards``).
"""

from __future__ import annotations

from typing import Any

import lark

from policies.engine.expressions import ROOT_NAMES, Env, _literal_value, _unwrap, compile_tree, truthy
from policies.engine.rule_bounds import Bound, usable_threshold
from policies.engine.rule_index import Guard, GuardOptions, literal_key

_ARGS_ROOTS = frozenset(name for name, root in ROOT_NAMES.items() if root == "args")
_NO_ARGUMENTS: Env = {"args": {}, "context": {}, "tool_name": None}


def when_guards(tree: lark.Tree) -> GuardOptions:
    """The guards of the operands of ``tree``'s top-level ``&&`` chain that have one."""
    options: list[tuple[Guard]] = []
    for operand in _conjuncts(tree):
        guard = _value_guard(operand) or _range_guard(operand) or _presence_guard(operand)
        if guard is not None:
            options.append((guard,))
    return tuple(options)


def _conjuncts(tree: lark.Tree) -> list[Any]:
    operands, stack = [], [tree]
    while stack:
        node = _unwrap(stack.pop())
        if isinstance(node, lark.Tree) and node.data == "conditionaland" and len(node.children) == 2:
            stack.extend(reversed(node.children))
        else:
            operands.append(node)
    return operands


def _argument_read(node: Any) -> str | None:
    """``x`` when ``node`` is exactly ``args.x`` (or ``arguments.x``)."""
    node = _unwrap(node)
    if not (isinstance(node, lark.Tree) and node.data == "member_dot"):
        return None
    receiver = _unwrap(node.children[0])
    if (
        isinstance(receiver, lark.Tree)
        and receiver.data == "ident"
        and str(receiver.children[0]) in _ARGS_ROOTS
    ):
        return str(node.children[1])
    return None


def _literal_key(node: Any) -> tuple[bool, Any]:
    """(True, key) when ``node`` is a literal that can be a value guard's key."""
    node = _unwrap(node)
    if not (isinstance(node, lark.Tree) and node.data == "literal"):
        return False, None
    try:
        key = literal_key(_literal_value(node))
    except Exception:  # noqa: BLE001 - a literal kind the compiler refuses is just not a key
        return False, None
    return key is not None, key


def _value_guard(operand: Any) -> Guard | None:
    node = _unwrap(operand)
    if not isinstance(node, lark.Tree):
        return None
    if node.data == "conditionalor" and len(node.children) == 2:
        # Truthy only when one side is: both sides' values on one argument, or no guard.
        first, second = (_value_guard(child) for child in node.children)
        if first is None or second is None or first.argument != second.argument:
            return None
        assert first.values is not None and second.values is not None
        return Guard(first.argument, first.values | second.values)
    if node.data != "relation" or len(node.children) != 2:
        return None
    operator, right = node.children
    if not isinstance(operator, lark.Tree) or len(operator.children) != 1:
        return None
    left = operator.children[0]
    if operator.data == "relation_eq":
        for side, other in ((left, right), (right, left)):
            name = _argument_read(side)
            found, key = _literal_key(other)
            if name is not None and found:
                return Guard(name, frozenset((key,)))
        return None
    if operator.data == "relation_in":
        name = _argument_read(left)
        items = _unwrap(right)
        if name is None or not (isinstance(items, lark.Tree) and items.data == "list_lit"):
            return None
        keys = []
        for item in items.children[0].children if items.children else ():
            found, key = _literal_key(item)
            if not found:
                return None
            keys.append(key)
        return Guard(name, frozenset(keys))
    return None


# CEL's order comparisons, as "argument at least" when the argument is on the left.
_ORDERS = {"relation_gt": True, "relation_ge": True, "relation_lt": False, "relation_le": False}


def _range_guard(operand: Any) -> Guard | None:
    node = _unwrap(operand)
    if not (isinstance(node, lark.Tree) and node.data == "relation" and len(node.children) == 2):
        return None
    operator, right = node.children
    if not isinstance(operator, lark.Tree) or operator.data not in _ORDERS or len(operator.children) != 1:
        return None
    at_least = _ORDERS[operator.data]
    for side, other, flipped in ((operator.children[0], right, False), (right, operator.children[0], True)):
        name = _argument_read(side)
        literal = _unwrap(other)
        if name is None or not (isinstance(literal, lark.Tree) and literal.data == "literal"):
            continue
        try:
            threshold = _literal_value(literal)
        except Exception:  # noqa: BLE001 - a literal kind the compiler refuses is just not a bound
            return None
        # Only a number literal: CEL orders a number only against numbers (and bool is none).
        if usable_threshold(threshold):
            return Guard(name, bound=Bound("number", at_least != flipped, threshold))
    return None


def _presence_guard(operand: Any) -> Guard | None:
    name = _only_argument_read(operand)
    if name is None:
        return None
    try:
        absent = compile_tree(operand)(_NO_ARGUMENTS)
    except Exception:  # noqa: BLE001 - an operand that does not compile alone is just not used
        return None
    return None if truthy(absent) else Guard(name)


def _only_argument_read(operand: Any) -> str | None:
    """``x`` when every name ``operand`` reads is ``args.x`` (no comprehension variables)."""
    if not isinstance(operand, lark.Tree):
        return None
    idents, reads, names = 0, 0, set()
    for node in operand.iter_subtrees():
        if node.data == "ident":
            idents += 1
        elif node.data == "member_dot":
            receiver = _unwrap(node.children[0])
            if (
                isinstance(receiver, lark.Tree)
                and receiver.data == "ident"
                and str(receiver.children[0]) in _ARGS_ROOTS
            ):
                reads += 1
                names.add(str(node.children[1]))
        elif node.data == "member_dot_arg" and str(node.children[1]) in ("exists", "all"):
            return None
    if idents == 0 or idents != reads or len(names) != 1:
        return None
    return names.pop()
