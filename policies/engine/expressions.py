"""Compile ``when:`` expressions into Python closures.

The language is CEL (the expression language of Kubernetes admission policies
and Envoy), parsed with cel-python's grammar, plus the JavaScript-isms the
product's integration pages use: ``.startsWith()``, ``.length``,
``.match(/re/)``, ``===`` and ``!==``.

We compile the parse tree ourselves instead of using a CEL interpreter for two
reasons, both measured (see README, "Performance"): an interpreter call costs
12-400 µs where a closure tree costs about one, and CEL's semantics turn a
missing map key into an error, while a rule must read an absent field as null.

Semantics, chosen to be predictable for policy authors:

* ``a.b`` on a map reads key ``b`` (absent: ``null``); on anything else ``null``.
  ``x.length`` on a string or list is its length. Nothing ever raises at runtime.
* Comparisons of mismatched types are false (``null > 3`` is false); ``==`` is
  strict (``1 == true`` is false; ``1 == 1.0`` is true).
* ``&&``, ``||`` and ``!`` use JavaScript truthiness (``null``, ``false``, ``0``,
  ``""`` are false); the expression's result is read the same way.
* String methods on a non-string (``null.startsWith('x')``) are false, so
  ``!args.bucket.startsWith('internal-')`` is true when ``bucket`` is missing:
  a deny rule written that way fails closed.
* Regular expressions are RE2 (linear time) and must be literals, so they are
  compiled, and refused if unsupported, when the rule set is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import lark
from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import celstr

from policies.engine.errors import ExpressionError
from policies.engine.regexes import compile_search
from policies.engine.rule_index import GuardOptions

Env = Mapping[str, Any]
Node = Callable[[Env], Any]

ROOT_NAMES = {
    "args": "args",
    "arguments": "args",
    "context": "context",
    "tool_name": "tool_name",
    "tool": "tool_name",
}
MAX_EXPRESSION_LENGTH = 4000
# Compiling recurses once or twice per level of the parse tree, three times through a level
# with one child (a pair of parentheses is ten such levels, ~27 frames; a && b && c or
# args.a.b.c one to three per operand). Within this estimate an expression takes at most ~600
# frames (measured), far enough from Python's recursion limit at any call depth a request or
# task has that whether an expression compiles never depends on where: 12 nested parentheses,
# 190 operands in a chain.
MAX_COMPILE_FRAMES = 350

_parser: CELParser | None = None


def _cel_parser() -> CELParser:
    global _parser
    if _parser is None:
        _parser = CELParser()
    return _parser


def warm_up() -> None:
    """Build the CEL parser now (about 0.3 s) rather than inside the first request that needs it."""
    _cel_parser()


# Checking a document compiles each when: (to report its errors), and compiling the document
# compiles it again: the compiled closure is pure, so one compile serves both (and every
# version that keeps the rule). Measured: the policies editor's check of 1,000 rules at the
# limits went from 0.81 to 0.41 s of CPU (benchmarks/rule_set_limits.py).
class CompiledWhen(NamedTuple):
    test: Callable[[Env], bool]
    # Conditions on the call's arguments without which ``test`` is false, one per operand of
    # its top-level && that has one (see when_guards): the rule engine files the rule under
    # one of them and visits it only for calls that meet it.
    guard_options: GuardOptions


@lru_cache(maxsize=4096)
def compile_when(source: str) -> CompiledWhen:
    """Compile ``source`` (one parse, which is most of the cost) into its test and its guards;
    raises ``ExpressionError`` (with a column where known) for anything that does not compile."""
    # when_guards reads this module's parse-tree helpers: imported here, not at the top, so
    # that importing either module first works.
    from policies.engine.when_guards import when_guards

    tree = parse_expression(source)[1]
    node = compile_tree(tree)

    def evaluate(env: Env) -> bool:
        return truthy(node(env))

    return CompiledWhen(evaluate, when_guards(tree))


def compile_expression(source: str) -> Callable[[Env], bool]:
    """Compile ``source`` into ``env -> bool``; ``env`` maps ``args``, ``context`` and ``tool_name``.

    Raises ``ExpressionError`` (with a column where known) for anything that does not compile.
    """
    return compile_when(source).test


def parse_expression(source: str) -> tuple[str, lark.Tree]:
    """The parse tree of ``source`` (positions are in the returned text: ``source`` with its
    JavaScript-isms rewritten), refused as ``compile_expression`` refuses it. Compiling is
    ``compile_tree``; policies/explain.py walks the tree to say which parts of a rule held."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression is empty")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    rewritten = rewrite_javascript_isms(source)
    try:
        tree = _cel_parser().parse(rewritten)
    except CELParseError as exc:
        column = getattr(exc, "column", None)
        first_line = str(exc.args[0]).splitlines()[0] if exc.args else "syntax error"
        raise ExpressionError(f"syntax error: {first_line}", column=column) from exc
    except RecursionError as exc:
        raise ExpressionError("the expression nests too deeply") from exc
    if _compile_frames(tree) > MAX_COMPILE_FRAMES:
        raise ExpressionError(
            "the expression nests too deeply (parentheses, lists, ! or - in a row) or chains too many operands"
        )
    return rewritten, tree


def compile_tree(tree: lark.Tree) -> Node:
    """``env -> value`` for a (sub)tree of ``parse_expression``'s (no comprehension variables bound)."""
    return _Compiler(frozenset()).compile(tree)


def _compile_frames(tree: lark.Tree) -> int:
    """An upper bound of the stack frames ``_Compiler.compile`` takes on ``tree`` (iteratively)."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        here, frames = stack.pop()
        if isinstance(here, lark.Tree):
            frames += 3 if len(here.children) == 1 else 2
            stack.extend((child, frames) for child in here.children)
        deepest = max(deepest, frames)
    return deepest


# --- JavaScript-isms -------------------------------------------------------------------------

_OPERAND_EXPECTED_AFTER = set("(,[!&|?:=<>+-*%{") | {""}


def rewrite_javascript_isms(source: str) -> str:
    """``===``/``!==`` to CEL's ``==``/``!=``, and ``/re/flags`` literals to CEL strings.

    A ``/`` starts a regex literal only where an operand is expected (the usual JavaScript
    rule), so division keeps working. String literals are copied untouched.
    """
    out: list[str] = []
    i = 0
    n = len(source)
    last_significant = ""
    while i < n:
        ch = source[i]
        if ch in "\"'":
            end = _end_of_string(source, i)
            out.append(source[i:end])
            last_significant = source[end - 1]
            i = end
            continue
        if ch in "=!" and source.startswith("==", i + 1) and (ch == "!" or source.startswith("===", i)):
            out.append(ch + "=")
            last_significant = "="
            i += 3
            continue
        if ch == "/" and last_significant in _OPERAND_EXPECTED_AFTER and not source.startswith("//", i):
            literal, i = _regex_literal(source, i)
            out.append(literal)
            last_significant = '"'
            continue
        out.append(ch)
        if not ch.isspace():
            last_significant = ch
        i += 1
    return "".join(out)


def _end_of_string(source: str, start: int) -> int:
    quote = source[start]
    i = start + 1
    while i < len(source):
        if source[i] == "\\":
            i += 2
            continue
        if source[i] == quote:
            return i + 1
        i += 1
    return len(source)  # unterminated: the CEL parser reports it with a position


def _regex_literal(source: str, start: int) -> tuple[str, int]:
    i = start + 1
    in_class = False
    body: list[str] = []
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            nxt = source[i + 1]
            body.append(nxt if nxt == "/" else ch + nxt)
            i += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "/" and not in_class:
            break
        body.append(ch)
        i += 1
    else:
        raise ExpressionError("unterminated regular expression literal", column=start + 1)
    i += 1
    flags_start = i
    while i < len(source) and source[i].isalpha():
        i += 1
    flags = source[flags_start:i]
    inline = ""
    for flag in flags:
        if flag == "i":
            inline += "i"
        elif flag in "ms":
            inline += flag
        elif flag != "g":
            raise ExpressionError(
                f"regular expression flag {flag!r} is not supported", column=flags_start + 1
            )
    pattern = (f"(?{inline})" if inline else "") + "".join(body)
    escaped = pattern.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"', i


# --- runtime helpers --------------------------------------------------------------------------


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, (int, float)):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def strict_equals(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is not type(right) and not (isinstance(left, Mapping) and isinstance(right, Mapping)):
        return False
    try:
        return bool(left == right)
    except Exception:  # noqa: BLE001 - exotic values compare unequal rather than fail
        return False


def _ordered(left: Any, right: Any) -> bool:
    return (_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str))


def _member(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    if name == "length" and isinstance(value, (str, list, tuple)):
        return len(value)
    return None


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        try:
            return value.get(key)
        except TypeError:
            return None
    if isinstance(value, (list, tuple, str)) and _is_number(key) and float(key).is_integer():
        position = int(key)
        if -len(value) <= position < len(value):
            return value[position]
    return None


def _size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value)
    return None


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, (list, tuple)):
        return any(strict_equals(element, item) for element in container)
    if isinstance(container, Mapping):
        try:
            return item in container
        except TypeError:
            return False
    return False


def _arith(op: str, left: Any, right: Any) -> Any:
    if op == "+":
        if _is_number(left) and _is_number(right):
            return left + right
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        return None
    if not (_is_number(left) and _is_number(right)):
        return None
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return None
    if op == "/":
        return left / right
    return left % right


def _string_method(function: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda receiver: function(receiver) if isinstance(receiver, str) else None


_NO_ARG_METHODS: dict[str, Callable[[Any], Any]] = {
    "size": _size,
    "toLowerCase": _string_method(str.lower),
    "toUpperCase": _string_method(str.upper),
    "lowerAscii": _string_method(str.lower),
    "upperAscii": _string_method(str.upper),
    "trim": _string_method(str.strip),
}


def _starts_with(receiver: Any, prefix: Any) -> bool:
    return isinstance(receiver, str) and isinstance(prefix, str) and receiver.startswith(prefix)


def _ends_with(receiver: Any, suffix: Any) -> bool:
    return isinstance(receiver, str) and isinstance(suffix, str) and receiver.endswith(suffix)


_ONE_ARG_METHODS: dict[str, Callable[[Any, Any], Any]] = {
    "startsWith": _starts_with,
    "endsWith": _ends_with,
    "contains": _contains,
    "includes": _contains,
}
_REGEX_METHODS = {"matches", "match", "test"}
_CONVERSIONS: dict[str, Callable[[Any], Any]] = {}


def _to_int(value: Any) -> Any:
    try:
        if isinstance(value, bool):
            return None
        return int(float(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _to_double(value: Any) -> Any:
    try:
        return None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _to_string(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_CONVERSIONS.update({"int": _to_int, "double": _to_double, "string": _to_string, "size": _size})

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "relation_eq": strict_equals,
    "relation_ne": lambda a, b: not strict_equals(a, b),
    "relation_lt": lambda a, b: _ordered(a, b) and a < b,
    "relation_le": lambda a, b: _ordered(a, b) and a <= b,
    "relation_gt": lambda a, b: _ordered(a, b) and a > b,
    "relation_ge": lambda a, b: _ordered(a, b) and a >= b,
    "relation_in": lambda a, b: isinstance(b, (list, tuple, Mapping)) and _contains(b, a),
}
_ARITHMETIC = {
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}


# --- the compiler -----------------------------------------------------------------------------


class _Compiler:
    """Walks cel-python's lark tree once and returns nested closures."""

    def __init__(self, bound: frozenset[str]) -> None:
        self.bound = bound  # comprehension variables in scope

    def compile(self, tree: lark.Tree) -> Node:
        handler = getattr(self, f"_{tree.data}", None)
        if handler is None:
            raise ExpressionError(f"'{tree.data}' is not supported in rule expressions", column=_column(tree))
        return handler(tree)

    def _error(self, tree: lark.Tree | lark.Token, message: str) -> ExpressionError:
        return ExpressionError(message, column=_column(tree))

    # Pass-through levels of the grammar: a single child is just that child.
    def _single_or(self, tree: lark.Tree) -> Node | None:
        if len(tree.children) == 1:
            return self.compile(tree.children[0])
        return None

    def _expr(self, tree: lark.Tree) -> Node:
        single = self._single_or(tree)
        if single is not None:
            return single
        condition, if_true, if_false = (self.compile(child) for child in tree.children)
        return lambda env: if_true(env) if truthy(condition(env)) else if_false(env)

    def _conditionalor(self, tree: lark.Tree) -> Node:
        single = self._single_or(tree)
        if single is not None:
            return single
        left, right = (self.compile(child) for child in tree.children)
        return lambda env: truthy(left(env)) or truthy(right(env))

    def _conditionaland(self, tree: lark.Tree) -> Node:
        single = self._single_or(tree)
        if single is not None:
            return single
        left, right = (self.compile(child) for child in tree.children)
        return lambda env: truthy(left(env)) and truthy(right(env))

    def _relation(self, tree: lark.Tree) -> Node:
        single = self._single_or(tree)
        if single is not None:
            return single
        operator_tree, right_tree = tree.children
        compare = _COMPARISONS[operator_tree.data]
        left = self.compile(operator_tree.children[0])
        right = self.compile(right_tree)
        return lambda env: compare(left(env), right(env))

    def _binary_arithmetic(self, tree: lark.Tree) -> Node:
        single = self._single_or(tree)
        if single is not None:
            return single
        operator_tree, right_tree = tree.children
        op = _ARITHMETIC[operator_tree.data]
        left = self.compile(operator_tree.children[0])
        right = self.compile(right_tree)
        return lambda env: _arith(op, left(env), right(env))

    _addition = _binary_arithmetic
    _multiplication = _binary_arithmetic

    def _unary(self, tree: lark.Tree) -> Node:
        single = self._single_or(tree)
        if single is not None:
            return single
        operator_tree, operand_tree = tree.children
        operand = self.compile(operand_tree)
        if operator_tree.data == "unary_not":
            return lambda env: not truthy(operand(env))

        def negate(env: Env) -> Any:
            value = operand(env)
            return -value if _is_number(value) else None

        return negate

    def _member(self, tree: lark.Tree) -> Node:
        return self.compile(tree.children[0])

    _primary = _member

    def _paren_expr(self, tree: lark.Tree) -> Node:
        return self.compile(tree.children[0])

    def _member_dot(self, tree: lark.Tree) -> Node:
        receiver_tree, name_token = tree.children
        receiver = self.compile(receiver_tree)
        name = str(name_token)
        return lambda env: _member(receiver(env), name)

    def _member_index(self, tree: lark.Tree) -> Node:
        receiver_tree, key_tree = tree.children
        receiver = self.compile(receiver_tree)
        key = self.compile(key_tree)
        return lambda env: _index(receiver(env), key(env))

    def _arguments(self, tree: lark.Tree | None) -> list[lark.Tree]:
        if tree is None:
            return []
        return list(tree.children)

    def _member_dot_arg(self, tree: lark.Tree) -> Node:
        receiver_tree, name_token, *rest = tree.children
        name = str(name_token)
        arguments = self._arguments(rest[0] if rest else None)
        receiver = self.compile(receiver_tree)
        if name in ("exists", "all"):
            return self._comprehension(tree, name, receiver, arguments)
        if name in _NO_ARG_METHODS:
            if arguments:
                raise self._error(tree, f".{name}() takes no arguments")
            method = _NO_ARG_METHODS[name]
            return lambda env: method(receiver(env))
        if name in _REGEX_METHODS:
            if len(arguments) != 1:
                raise self._error(tree, f".{name}() takes one regular expression")
            literal = _string_literal(arguments[0])
            if literal is None:
                raise self._error(tree, f".{name}() needs a literal pattern ('...' or /.../)")
            try:
                search = compile_search(literal)
            except ExpressionError as exc:
                raise self._error(tree, str(exc)) from exc
            return lambda env: (lambda text: isinstance(text, str) and search(text))(receiver(env))
        if name in _ONE_ARG_METHODS:
            if len(arguments) != 1:
                raise self._error(tree, f".{name}() takes one argument")
            method2 = _ONE_ARG_METHODS[name]
            argument = self.compile(arguments[0])
            return lambda env: method2(receiver(env), argument(env))
        raise self._error(tree, f"unknown method .{name}()")

    def _comprehension(self, tree: lark.Tree, name: str, receiver: Node, arguments: list[lark.Tree]) -> Node:
        if len(arguments) != 2:
            raise self._error(tree, f".{name}(x, predicate) takes a variable and a predicate")
        variable = _bare_identifier(arguments[0])
        if variable is None:
            raise self._error(tree, f"the first argument of .{name}() must be a variable name")
        predicate = _Compiler(self.bound | {variable}).compile(arguments[1])
        quantifier = any if name == "exists" else all

        def comprehend(env: Env) -> bool:
            items = receiver(env)
            if isinstance(items, Mapping):
                items = list(items.keys())
            if not isinstance(items, (list, tuple)):
                return False
            return quantifier(truthy(predicate({**env, variable: item})) for item in items)

        return comprehend

    def _ident(self, tree: lark.Tree) -> Node:
        name = str(tree.children[0])
        if name in self.bound:
            return lambda env: env.get(name)
        if name == "undefined":
            return lambda env: None
        root = ROOT_NAMES.get(name)
        if root is None:
            raise self._error(
                tree, f"unknown name {name!r}: read call data as args.<field> or context.<field>"
            )
        return lambda env: env.get(root)

    def _ident_arg(self, tree: lark.Tree) -> Node:
        name_token, *rest = tree.children
        name = str(name_token)
        arguments = self._arguments(rest[0] if rest else None)
        if name == "has":
            if len(arguments) != 1:
                raise self._error(tree, "has() takes one field, as in has(args.field)")
            field = _field_selection(arguments[0])
            if field is None:
                raise self._error(tree, "has() takes a field selection, as in has(args.field)")
            receiver = self.compile(field[0])
            key = field[1]
            return lambda env: (lambda value: isinstance(value, Mapping) and key in value)(receiver(env))
        if name in _CONVERSIONS:
            if len(arguments) != 1:
                raise self._error(tree, f"{name}() takes one argument")
            convert = _CONVERSIONS[name]
            argument = self.compile(arguments[0])
            return lambda env: convert(argument(env))
        raise self._error(tree, f"unknown function {name}()")

    def _dot_ident(self, tree: lark.Tree) -> Node:
        raise self._error(tree, "leading '.' names are not supported")

    _dot_ident_arg = _dot_ident

    def _member_object(self, tree: lark.Tree) -> Node:
        raise self._error(tree, "message construction is not supported in rule expressions")

    def _list_lit(self, tree: lark.Tree) -> Node:
        items = [
            self.compile(child) for child in self._arguments(tree.children[0] if tree.children else None)
        ]
        return lambda env: [item(env) for item in items]

    def _map_lit(self, tree: lark.Tree) -> Node:
        flat = [self.compile(child) for child in (tree.children[0].children if tree.children else [])]
        pairs = list(zip(flat[0::2], flat[1::2], strict=True))
        return lambda env: {key(env): value(env) for key, value in pairs}

    def _literal(self, tree: lark.Tree) -> Node:
        value = _literal_value(tree)
        return lambda env: value


def _literal_value(tree: lark.Tree) -> Any:
    token = tree.children[0]
    assert isinstance(token, lark.Token)  # the grammar's literal rules hold one terminal
    kind = token.type
    text = str(token)
    if kind == "BOOL_LIT":
        return text == "true"
    if kind == "NULL_LIT":
        return None
    if kind in ("INT_LIT", "UINT_LIT"):
        return int(text.rstrip("uU"), 0) if "x" in text.lower() else int(text.rstrip("uU"))
    if kind == "FLOAT_LIT":
        return float(text)
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return str(celstr(token))
    raise ExpressionError(f"{kind.lower()} literals are not supported", column=getattr(token, "column", None))


def _unwrap(tree: Any) -> Any:
    """Descend through single-child grammar levels to the node that carries meaning."""
    while (
        isinstance(tree, lark.Tree)
        and len(tree.children) == 1
        and tree.data
        not in (
            "literal",
            "ident",
            "list_lit",
            "map_lit",
        )
    ):
        tree = tree.children[0]
    return tree


def _string_literal(tree: lark.Tree) -> str | None:
    node = _unwrap(tree)
    if isinstance(node, lark.Tree) and node.data == "literal":
        value = _literal_value(node)
        return value if isinstance(value, str) else None
    return None


def _bare_identifier(tree: lark.Tree) -> str | None:
    node = _unwrap(tree)
    if isinstance(node, lark.Tree) and node.data == "ident":
        return str(node.children[0])
    return None


def _field_selection(tree: lark.Tree) -> tuple[lark.Tree, str] | None:
    node = _unwrap(tree)
    if isinstance(node, lark.Tree) and node.data == "member_dot":
        return node.children[0], str(node.children[1])
    return None


def _column(node: lark.Tree | lark.Token) -> int | None:
    if isinstance(node, lark.Token):
        return node.column
    meta = getattr(node, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return meta.column
    return None
