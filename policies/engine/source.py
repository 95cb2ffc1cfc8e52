"""Rule-set source text (YAML or JSON) in, plain JSON-shaped data and a path → line map out.

Every way a document can fail to load ends as a ``RuleSetError`` whose problem names a line
(and a column where the parser knows one): syntax errors, values PyYAML's constructors cannot
build (``2020-02-30``, ``!!int 'abc'``, an integer of 4,400 digits), tags a rule set has no
use for, aliases, nesting, and the published size limits (``Limits``), which are checked
while reading, before any expensive work.

The YAML loader is ours, on top of PyYAML's event parser (libyaml's when PyYAML has it, about
six times faster than the pure-Python one):

* the composer refuses aliases (shared or self-referencing structure, "billion laughs") and
  nesting deeper than ``max_depth`` as it meets them, so nothing recurses without bound;
* the constructor builds only what JSON can hold (mappings, lists, strings, finite numbers,
  booleans, null), because the normalized document is stored as JSON. Dates and times stay
  the text they were written as (YAML 1.2 has no timestamp type; PyYAML would build a
  ``date``, or fail on ``2020-02-30``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from policies.engine.errors import Problem, RuleSetError, RuleSetTooLarge

try:
    from yaml._yaml import CParser as _EventParser

    _OFFSETS_IN_BYTES = True  # libyaml reports a bad character's offset in UTF-8 bytes
except ImportError:  # PyYAML built without libyaml: the same events, slower
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventParser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

    _OFFSETS_IN_BYTES = False


@dataclass(frozen=True, slots=True)
class Limits:
    """What one rule-set document may hold. The defaults keep parsing, checking and compiling
    one document at the limits well under a second of CPU (benchmarks/rule_set_limits.py)."""

    max_bytes: int = 256 * 1024
    max_rules: int = 1000
    max_depth: int = 32  # lists and mappings nested inside each other
    max_string_length: int = 16 * 1024  # characters in one key or value
    max_fixture_tests: int = 1000
    # All when: expressions together, in characters: compiling them is most of a document's
    # cost (~8 µs a character, where YAML costs ~0.5 µs a byte).
    max_expression_chars: int = 40_000


DEFAULT_LIMITS = Limits()
# For reading back a version that was accepted when stored: lowering a limit later must not
# make an existing version unreadable (64 was the nesting limit before limits were published).
STORED_LIMITS = Limits(
    max_bytes=1 << 40,
    max_rules=1 << 40,
    max_depth=64,
    max_string_length=1 << 40,
    max_fixture_tests=1 << 40,
    max_expression_chars=1 << 40,
)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{name}" for name in ("str", "null", "bool", "int", "float", "timestamp")}
_MAX_INT_BITS = 14_000  # about 4,200 decimal digits: Python writes out at most 4,300
_NOT_JSON = "a rule set holds only mappings, lists, strings, numbers, true/false and null"


class _Located(Exception):
    """Raised inside the loader with where it happened; ``parse_source`` makes the problem."""

    def __init__(self, message: str, mark: Any, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.path = path


def _where(mark: Any) -> tuple[int | None, int | None]:
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def _too_large(limit: str, maximum: int, actual: int | None, message: str, mark: Any, path: str) -> NoReturn:
    line, column = _where(mark)
    raise RuleSetTooLarge(Problem(path, message, line, column), limit=limit, maximum=maximum, actual=actual)


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else f"{value[:20]}…{value[-10:]}")


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


class _Loader(_EventParser, SafeConstructor, Resolver):
    """Events in, nodes (with their marks) out, then plain data; see the module docstring."""

    def __init__(self, text: str, limits: Limits) -> None:
        _EventParser.__init__(self, text)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.limits = limits
        self.lines: dict[str, int] = {}
        # The [ and { not yet closed, innermost last: a syntax error inside one is usually
        # that it never closes, and the parser only notices at the next token that cannot be
        # in it, often lines later.
        self.open_flows: list[tuple[str, Any]] = []

    # --- composing: events to nodes --------------------------------------------------------

    def compose_single(self) -> Node | None:
        self.get_event()  # stream start
        node = None
        if not self.check_event(StreamEndEvent):
            self.get_event()  # document start
            node = self._compose(0)
            self.get_event()  # document end
            if not self.check_event(StreamEndEvent):
                extra = self._event()
                raise _Located(
                    "a rule set is one YAML document; found the start of another", extra.start_mark
                )
        self.get_event()  # stream end
        return node

    def _event(self) -> Any:
        # An event whose marks are libyaml's or PyYAML's (the stubs know only the latter).
        return self.get_event()

    def _compose(self, depth: int) -> Node:
        event = self._event()
        start: Any = event.start_mark
        end: Any = event.end_mark
        if isinstance(event, AliasEvent):
            raise _Located("anchors and aliases (&name / *name) are not supported", event.start_mark)
        if isinstance(event, ScalarEvent):
            if len(event.value) > self.limits.max_string_length:
                _too_large(
                    "max_string_length",
                    self.limits.max_string_length,
                    len(event.value),
                    f"a value of {len(event.value)} characters; at most {self.limits.max_string_length} "
                    "are allowed",
                    event.start_mark,
                    "",
                )
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            return ScalarNode(tag, event.value, start, end, style=event.style)
        if depth >= self.limits.max_depth:
            _too_large(
                "max_depth",
                self.limits.max_depth,
                None,
                f"lists and mappings nested deeper than {self.limits.max_depth} levels",
                event.start_mark,
                "",
            )
        if isinstance(event, SequenceStartEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(SequenceNode, None, event.implicit)
            sequence = SequenceNode(tag, [], start, None, flow_style=event.flow_style)
            if event.flow_style:
                self.open_flows.append(("[", event.start_mark))
            while not self.check_event(SequenceEndEvent):
                sequence.value.append(self._compose(depth + 1))
            sequence.end_mark = self._event().end_mark
            if event.flow_style:
                self.open_flows.pop()
            return sequence
        if isinstance(event, MappingStartEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(MappingNode, None, event.implicit)
            mapping = MappingNode(tag, [], start, None, flow_style=event.flow_style)
            if event.flow_style:
                self.open_flows.append(("{", event.start_mark))
            while not self.check_event(MappingEndEvent):
                key = self._compose(depth + 1)
                mapping.value.append((key, self._compose(depth + 1)))
            mapping.end_mark = self._event().end_mark
            if event.flow_style:
                self.open_flows.pop()
            return mapping
        # The parser only hands out the events above here; anything else is a bug in it.
        raise _Located(f"unexpected YAML event {type(event).__name__}", event.start_mark)

    # --- constructing: nodes to plain data -------------------------------------------------

    def build(self, node: Node, path: str) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != f"{_TAG}seq":
                raise _Located(
                    f"unsupported tag {_tag_name(node.tag)} on a list ({_NOT_JSON})", node.start_mark, path
                )
            return [self.build(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != f"{_TAG}map":
                raise _Located(
                    f"unsupported tag {_tag_name(node.tag)} on a mapping ({_NOT_JSON})", node.start_mark, path
                )
            data: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise _Located(
                        "a mapping key must be a plain value, not a list or mapping",
                        key_node.start_mark,
                        path,
                    )
                if key_node.tag == f"{_TAG}merge":
                    raise _Located("merge keys (<<) are not supported", key_node.start_mark, path)
                key = self._scalar(key_node, path)
                child = f"{path}.{key_node.value}" if path else str(key_node.value)
                self.lines[child] = key_node.start_mark.line + 1
                data[key] = self.build(value_node, child)
            return data
        raise _Located(f"unexpected YAML node {type(node).__name__}", node.start_mark, path)

    def _scalar(self, node: ScalarNode, path: str) -> Any:
        tag = node.tag
        if tag not in _SCALAR_TAGS:
            raise _Located(f"unsupported tag {_tag_name(tag)} ({_NOT_JSON})", node.start_mark, path)
        if tag == f"{_TAG}str" or tag == f"{_TAG}timestamp":
            return node.value
        if tag == f"{_TAG}null":
            return None
        constructors: dict[str, tuple[Callable[[ScalarNode], Any], str]] = {
            f"{_TAG}bool": (self.construct_yaml_bool, "true or false"),
            f"{_TAG}int": (self.construct_yaml_int, "a whole number"),
            f"{_TAG}float": (self.construct_yaml_float, "a number"),
        }
        construct, kind = constructors[tag]
        digits = sum(ch.isdigit() for ch in node.value)
        if tag == f"{_TAG}int" and digits > 4300:
            # Python refuses to convert more digits than that (int-string-digits limit).
            raise _Located(f"an integer of {digits} digits is too long (at most 4300)", node.start_mark, path)
        try:
            value = construct(node)
        except Exception as exc:
            # PyYAML's constructors assume the text matched the type's pattern, true of an
            # implicit tag but not of an explicit one: !!int '' is an IndexError, !!int 'abc'
            # a ValueError, !!bool 'maybe' a KeyError. Whatever they raise, the text is not one.
            raise _Located(f"{_short(node.value)} is not {kind}", node.start_mark, path) from exc
        if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
            # 0x… and 1:2:3… (base 60) integers escape the digits limit, but could not be
            # written back out as decimal JSON.
            raise _Located(f"{_short(node.value)} is too large an integer", node.start_mark, path)
        if isinstance(value, float) and not math.isfinite(value):
            raise _Located(
                f"{_short(node.value)} is not a finite number (a rule set is stored as JSON, which has no "
                "infinity or NaN)",
                node.start_mark,
                path,
            )
        return value


def _line_column_at(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _yaml_problem(exc: yaml.YAMLError, text: str, open_flows: list[tuple[str, Any]]) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem_line, problem_column = _where(exc.problem_mark)
        what = exc.problem or str(exc)
        # Where the construct the parser was in started: the parser's context ("while parsing a
        # flow sequence", "while scanning a quoted scalar") unless it is just where it noticed
        # (libyaml's "while parsing a flow node"), or the innermost unclosed [ or {, whichever
        # starts later (is further in).
        starts: list[tuple[tuple[int, int], str]] = []
        context = _where(exc.context_mark)
        if exc.context and context[0] is not None and context != (problem_line, problem_column):
            starts.append(((context[0], context[1] or 0), exc.context))
        if open_flows:
            bracket, mark = open_flows[-1]
            line, column = _where(mark)
            starts.append(((line or 1, column or 0), f"inside the {bracket} opened"))
        if starts and problem_line is not None:
            (start_line, start_column), construct = max(starts)
            message = (
                f"invalid YAML: {construct} at line {start_line}, column {start_column}: {what} "
                f"(noticed at line {problem_line}, column {problem_column})"
            )
            return Problem("", message, start_line, start_column, problem_line)
        if problem_line is not None:
            return Problem(
                "",
                f"invalid YAML: {what} (line {problem_line}, column {problem_column})",
                problem_line,
                problem_column,
            )
        return Problem("", f"invalid YAML: {what}", 1)
    if isinstance(exc, yaml.reader.ReaderError):
        offset = exc.position
        if _OFFSETS_IN_BYTES:
            offset = len(text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))
        line, column = _line_column_at(text, min(offset, len(text)))
        character = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return Problem(
            "",
            f"invalid YAML: character {character} is not allowed (line {line}, column {column})",
            line,
            column,
        )
    return Problem("", f"invalid YAML: {exc}", 1)


def _parse_yaml(text: str, limits: Limits) -> tuple[Any, dict[str, int]]:
    loader = _Loader(text, limits)
    try:
        node = loader.compose_single()
        if node is None:
            return None, {"": 1}
        data = loader.build(node, "")
    except _Located as exc:
        line, column = _where(exc.mark)
        raise RuleSetError([Problem(exc.path, exc.message, line, column)]) from exc
    except yaml.YAMLError as exc:
        raise RuleSetError([_yaml_problem(exc, text, loader.open_flows)]) from exc
    except UnicodeError as exc:
        # Only text with lone surrogates (not UTF-8) gets here; a decoded request body has none.
        start = getattr(exc, "start", 0)
        line, column = _line_column_at(text, start)
        raise RuleSetError([Problem("", "invalid text: not encodable as UTF-8", line, column)]) from exc
    except RecursionError as exc:  # cannot happen with max_depth well below the recursion limit
        raise RuleSetError([Problem("", "invalid YAML: the document nests too deeply", 1)]) from exc
    finally:
        loader.dispose()
    return data, loader.lines


class _JsonValue(Exception):
    def __init__(self, literal: str, message: str) -> None:
        super().__init__(message)
        self.literal = literal
        self.message = message


def _json_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > 4300:
        raise _JsonValue(literal, f"an integer of {digits} digits is too long (at most 4300)")
    return int(literal)


def _json_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _JsonValue(literal, f"{_short(literal)} is too large a number (JSON stored has no infinity)")
    return value


def _json_constant(literal: str) -> Any:
    raise _JsonValue(literal, f"{literal} is not a JSON number")


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _json_shape(text: str, limits: Limits) -> None:
    """Refuse nesting and strings over the limits, at their place in ``text`` (valid JSON)."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        kind = token.group()[0]
        if kind in "[{":
            depth += 1
            if depth > limits.max_depth:
                line, column = _line_column_at(text, token.start())
                raise RuleSetTooLarge(
                    Problem(
                        "", f"lists and mappings nested deeper than {limits.max_depth} levels", line, column
                    ),
                    limit="max_depth",
                    maximum=limits.max_depth,
                )
        elif kind in "]}":
            depth -= 1
        elif token.end() - token.start() - 2 > limits.max_string_length:
            length = len(json.loads(token.group()))
            if length > limits.max_string_length:
                line, column = _line_column_at(text, token.start())
                raise RuleSetTooLarge(
                    Problem(
                        "",
                        f"a value of {length} characters; at most {limits.max_string_length} are allowed",
                        line,
                        column,
                    ),
                    limit="max_string_length",
                    maximum=limits.max_string_length,
                    actual=length,
                )


def _parse_json(text: str, limits: Limits) -> Any:
    try:
        data = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise RuleSetError(
            [
                Problem(
                    "",
                    f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    exc.lineno,
                    exc.colno,
                )
            ]
        ) from exc
    except _JsonValue as exc:
        found = re.search(r"(?<![\w.])" + re.escape(exc.literal) + r"(?![\w.])", text)
        line, column = _line_column_at(text, found.start()) if found else (1, 1)
        raise RuleSetError([Problem("", f"invalid JSON: {exc.message}", line, column)]) from exc
    except RecursionError:
        data = None  # json.loads recursed once per level: _json_shape below says where
    _json_shape(text, limits)
    return data


def parse_source(
    text: str, *, content_type: str = "application/yaml", limits: Limits = DEFAULT_LIMITS
) -> tuple[Any, dict[str, int]]:
    """Parse YAML or JSON text; returns the data and a map from path to 1-based line (YAML;
    for JSON only the top level, see ``source_lines``). Raises ``RuleSetError`` (one located
    problem), ``RuleSetTooLarge`` for a document over ``limits``."""
    size = len(text.encode("utf-8"))
    if size > limits.max_bytes:
        raise RuleSetTooLarge(
            Problem("", f"the document is {size} bytes; at most {limits.max_bytes} are allowed", 1),
            limit="max_bytes",
            maximum=limits.max_bytes,
            actual=size,
        )
    if "json" in content_type:
        return _parse_json(text, limits), {"": 1}
    return _parse_yaml(text, limits)


def source_lines(text: str, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, int]:
    """The path → line map of a JSON document (read as YAML, which JSON nearly always is);
    computed only to place the problems of a document that was refused."""
    try:
        return _parse_yaml(text, limits)[1]
    except RuleSetError:
        return {"": 1}
