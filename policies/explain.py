"""Why a rule fired: the rule as stored, and the call's arguments, in; an ``Explanation`` out.

Pure (no database, no Django): the caller finds the rule (``policies.selectors.decision_explanation``
reads the decision's rule-set version or tool policy) and hands it over, or says it is gone. The
condition is read with the engine's own code, never ``eval``: a ``when:`` expression is parsed by
``expressions.parse_expression`` and each of its parts compiled by ``compile_tree``; an IR
condition reads its field with ``evaluator.field_value`` and tests it with ``compile_operator``;
a tool policy's constraints are checked by ``compile_constraints``. So what the page says held is
what the engine would decide for the same call today.

A part *contributed* when it is why the whole held: every part of an AND that held, the parts of
an OR that held (not the ones that did not), a group of ``condition_groups`` that held entirely.
The argument paths those parts read are the ones the pages mark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import lark

from policies.engine.conditions import ConditionError, compile_operator
from policies.engine.constraints import (
    ARRAY_SIZES,
    FLAGS,
    NUMBER_BOUNDS,
    SERVER_ONLY_CONSTRAINT_KEYS,
    STRING_SIZES,
    compile_constraints,
)
from policies.engine.errors import ExpressionError
from policies.engine.evaluator import CallView, ToolCall, field_value
from policies.engine.expressions import ROOT_NAMES, compile_tree, parse_expression, truthy

ConditionKind = Literal["when", "conditions", "condition_groups", "constraints", "none"]
# Where a read path starts: the call's arguments, its context, or another field of the call.
Root = Literal["args", "context", "call"]
_SIZE_NAMES = frozenset({"length", "size"})


@dataclass(frozen=True, slots=True)
class ArgumentRead:
    """One path the condition reads, with the call's value there."""

    root: Root
    path: tuple[str, ...]
    present: bool
    value: Any
    # Whether a part reading it contributed to the rule firing (see the module docstring).
    contributed: bool

    @property
    def label(self) -> str:
        prefix = {"args": "args", "context": "context", "call": ""}[self.root]
        return ".".join([prefix, *self.path] if prefix else self.path)

    @property
    def value_text(self) -> str:
        if not self.present:
            return "(absent)"
        return json.dumps(self.value, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class ConditionPart:
    """One test of the condition: an operand of its ANDs and ORs, one IR condition, one constraint."""

    text: str
    held: bool | None  # None: could not be evaluated (see Explanation.problem)
    contributed: bool
    reads: tuple[tuple[Root, tuple[str, ...]], ...] = ()
    group: int | None = None  # condition_groups: which group (0-based)


@dataclass(frozen=True, slots=True)
class Explanation:
    rule_id: str
    rule_name: str
    found: bool
    # Why there is no rule to show (not found, inline rules, the SDK decided...), or a note.
    message: str = ""
    action: str = ""
    severity: str = ""
    kind: ConditionKind = "none"
    condition_text: str = ""
    parts: tuple[ConditionPart, ...] = ()
    reads: tuple[ArgumentRead, ...] = ()
    # What else the rule needs besides its condition (agents, sequences, rate limits).
    notes: tuple[str, ...] = ()
    problem: str = ""  # the condition could not be evaluated again (should not happen)
    held: bool | None = None  # whether the condition holds for the call

    def paths_to_mark(self, root: Root) -> frozenset[tuple[str, ...]]:
        """The paths under ``root`` whose parts contributed: what the pages highlight."""
        return frozenset(r.path for r in self.reads if r.root == root and r.contributed and r.present)


def rule_not_found(*, rule_id: str, rule_name: str, where: str) -> Explanation:
    """The rule is gone from where the decision says it was (``where``: "version 3", ...)."""
    named = f"{rule_name!r} ({rule_id})" if rule_name and rule_name != rule_id else repr(rule_id)
    return Explanation(
        rule_id=rule_id, rule_name=rule_name, found=False, message=f"Rule {named} not found in {where}."
    )


def not_explained(*, rule_id: str, rule_name: str, message: str) -> Explanation:
    return Explanation(rule_id=rule_id, rule_name=rule_name, found=False, message=message)


def rule_in_document(document: Mapping[str, Any], rule_id: str) -> Mapping[str, Any] | None:
    """The rule with ``rule_id`` in a normalized rule-set document, or None."""
    for rule in document.get("rules") or ():
        if isinstance(rule, Mapping) and rule.get("id") == rule_id:
            return rule
    return None


# --- reading the call -----------------------------------------------------------------------


def _dig(value: Any, path: Sequence[str]) -> tuple[bool, Any]:
    for segment in path:
        if not isinstance(value, Mapping) or segment not in value:
            return False, None
        value = value[segment]
    return True, value


def _read(call: ToolCall, root: Root, path: tuple[str, ...]) -> tuple[tuple[str, ...], bool, Any]:
    """Where in the call ``path`` is, whether it is there, and its value. A context path the
    call has only under ``custom`` is read there, as rules read it (evaluator.CallView.context)."""
    if root == "args":
        return (path, *_dig(call.arguments, path))
    if root == "context":
        present, value = _dig(call.context, path)
        if not present and path and path[0] != "custom":
            in_custom = ("custom", *path)
            present, value = _dig(call.context, in_custom)
            if present:
                return in_custom, present, value
        return path, present, value
    value = field_value(".".join(path), call)
    return path, value is not None, value


def _reads_of(call: ToolCall, parts: Sequence[ConditionPart]) -> tuple[ArgumentRead, ...]:
    """Each path once, in the order the condition reads it; contributed if any part reading it did."""
    merged: dict[tuple[Root, tuple[str, ...]], ArgumentRead] = {}
    for part in parts:
        for root, wanted in part.reads:
            path, present, value = _read(call, root, wanted)
            # ``args.items.length``: the value is the list's, the test its size.
            if not present and len(wanted) > 1 and wanted[-1] in _SIZE_NAMES:
                shorter, present, value = _read(call, root, wanted[:-1])
                if present:
                    path = shorter
            earlier = merged.get((root, path))
            contributed = part.contributed or (earlier is not None and earlier.contributed)
            merged[(root, path)] = ArgumentRead(root, path, present, value, contributed)
    return tuple(merged.values())


# --- IR conditions ----------------------------------------------------------------------------


def _field_root(field_path: str) -> tuple[Root, tuple[str, ...]]:
    """Where an IR field path reads (as evaluator._compile_field resolves it)."""
    head, _, tail = field_path.partition(".")
    if head == "context":
        return "context", tuple(tail.split(".")) if tail else ()
    if head == "arguments":
        return "args", tuple(tail.split(".")) if tail else ()
    if head in ("tool_name", "session_id", "agent_id", "user_id", "role", "custom"):
        return "call", tuple(field_path.split("."))
    return "args", tuple(field_path.split("."))


def _condition_text(condition: Mapping[str, Any]) -> str:
    value = json.dumps(condition.get("value"), ensure_ascii=False, default=str)
    return f"{condition.get('field')} {condition.get('operator')} {value}"


def _ir_part(call: ToolCall, condition: Mapping[str, Any], group: int | None) -> tuple[ConditionPart, str]:
    where = _field_root(str(condition.get("field", "")))
    problem = ""
    held: bool | None
    try:
        test = compile_operator(str(condition.get("operator")), condition.get("value"))
        held = bool(test(field_value(str(condition.get("field", "")), call)))
    except (ConditionError, KeyError, TypeError) as exc:
        held, problem = None, str(exc)
    return ConditionPart(_condition_text(condition), held, False, (where,), group), problem


def _explain_conditions(
    call: ToolCall, rule: Mapping[str, Any]
) -> tuple[ConditionKind, str, list[ConditionPart], str, bool | None]:
    conditions = [c for c in rule.get("conditions") or [] if isinstance(c, Mapping)]
    groups = [[c for c in g if isinstance(c, Mapping)] for g in rule.get("condition_groups") or [] if g]
    problems: list[str] = []
    if conditions:  # the SDK reads conditions when present, else condition_groups
        parts = []
        for condition in conditions:
            part, problem = _ir_part(call, condition, None)
            parts.append(part)
            problems.extend([problem] if problem else [])
        held = all(p.held for p in parts)
        if held:
            parts = [_contributing(p) for p in parts]
        text = " AND ".join(p.text for p in parts)
        return "conditions", text, parts, "; ".join(problems), held
    parts = []
    group_held = []
    for index, group in enumerate(groups):
        these = []
        for condition in group:
            part, problem = _ir_part(call, condition, index)
            these.append(part)
            problems.extend([problem] if problem else [])
        ok = all(p.held for p in these)
        group_held.append(ok)
        parts.extend(_contributing(p) for p in these) if ok else parts.extend(these)
    text = " OR ".join("(" + " AND ".join(_condition_text(c) for c in group) + ")" for group in groups)
    return "condition_groups", text, parts, "; ".join(problems), any(group_held)


def _contributing(part: ConditionPart) -> ConditionPart:
    return ConditionPart(part.text, part.held, True, part.reads, part.group)


# --- when: expressions ------------------------------------------------------------------------

# Grammar levels that are a single child or a pass-through when they have one child.
_PASS_THROUGH = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
    }
)


def _unwrap(tree: Any) -> Any:
    while isinstance(tree, lark.Tree):
        if tree.data == "paren_expr":
            tree = tree.children[0]
        elif tree.data in _PASS_THROUGH and len(tree.children) == 1:
            tree = tree.children[0]
        else:
            return tree
    return tree


def _path_of(tree: Any) -> tuple[Root, tuple[str, ...]] | None:
    """``args.a.b`` / ``args["a"].b`` / ``context.x``: where it reads, or None if it is no such chain."""
    segments: list[str] = []
    node = _unwrap(tree)
    while isinstance(node, lark.Tree):
        if node.data == "member_dot":
            segments.append(str(node.children[1]))
            node = _unwrap(node.children[0])
        elif node.data == "member_index":
            key = _unwrap(node.children[1])
            if not (isinstance(key, lark.Tree) and key.data == "literal"):
                return None
            token = key.children[0]
            if not isinstance(token, lark.Token) or token.type not in ("STRING_LIT", "MLSTRING_LIT"):
                return None
            segments.append(str(compile_tree(key)({})))
            node = _unwrap(node.children[0])
        elif node.data == "ident":
            root = ROOT_NAMES.get(str(node.children[0]))
            if root in ("args", "context"):
                return root, tuple(reversed(segments))  # type: ignore[return-value]
            if root == "tool_name" and not segments:
                return "call", ("tool_name",)
            return None
        else:
            return None
    return None


def _paths_read(tree: Any) -> list[tuple[Root, tuple[str, ...]]]:
    found: list[tuple[Root, tuple[str, ...]]] = []

    def walk(node: Any) -> None:
        if not isinstance(node, lark.Tree):
            return
        if node.data in ("member_dot", "member_index", "ident"):
            path = _path_of(node)
            if path is not None:
                if path not in found and (path[1] or path[0] == "call"):
                    found.append(path)
                return
        for child in node.children:
            walk(child)

    walk(tree)
    return found


def _boundaries(source: str) -> list[tuple[int, str]]:
    """Brackets and ``&&`` / ``||`` of ``source`` outside string literals, in order."""
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in "\"'":
            quote, i = ch, i + 1
            while i < len(source) and source[i] != quote:
                i += 2 if source[i] == "\\" else 1
        elif ch in "()[]":
            found.append((i, ch))
        elif source.startswith(("&&", "||"), i):
            found.append((i, source[i : i + 2]))
            i += 1
        i += 1
    return found


def _anchors(tree: Any) -> tuple[int, int] | None:
    """The first and last position the parser recorded inside ``tree`` (it records few: a literal
    has none on its tree, a relation no end)."""
    starts, ends = [], []
    nodes = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, lark.Token):
            if node.start_pos is not None and node.end_pos is not None:
                starts.append(node.start_pos)
                ends.append(node.end_pos)
        elif isinstance(node, lark.Tree):
            meta = node.meta
            if not getattr(meta, "empty", True):
                if getattr(meta, "start_pos", None) is not None:
                    starts.append(meta.start_pos)
                if getattr(meta, "end_pos", None) is not None:
                    ends.append(meta.end_pos)
            nodes.extend(node.children)
    return (min(starts), max(ends)) if starts and ends else None


def _text(source: str, tree: Any, boundaries: list[tuple[int, str]]) -> str:
    """The source text of one operand of the expression's ANDs and ORs: from its anchors out to
    the ``&&`` / ``||`` or the unmatched bracket that ends it on either side."""
    anchors = _anchors(tree)
    if anchors is None:
        return source.strip()
    left, right = 0, len(source)
    depth = 0
    for position, mark in reversed([b for b in boundaries if b[0] < anchors[0]]):
        if mark in ")]":
            depth += 1
        elif mark in "([":
            if depth == 0:
                left = position + 1
                break
            depth -= 1
        elif depth == 0:
            left = position + 2
            break
    depth = 0
    for position, mark in (b for b in boundaries if b[0] >= anchors[1]):
        if mark in "([":
            depth += 1
        elif mark in ")]":
            if depth == 0:
                right = position
                break
            depth -= 1
        elif depth == 0:
            right = position
            break
    return source[left:right].strip()


def _when_parts(source: str, tree: Any, env: Mapping[str, Any]) -> tuple[list[ConditionPart], bool]:
    """The operands of the expression's ANDs and ORs (``!x`` and anything else is one part), and
    whether the whole holds; parts are marked contributing as the module docstring says."""

    boundaries = _boundaries(source)

    def visit(node: Any) -> tuple[list[ConditionPart], bool]:
        node = _unwrap(node)
        if (
            isinstance(node, lark.Tree)
            and node.data in ("conditionalor", "conditionaland")
            and len(node.children) == 2
        ):
            left, left_held = visit(node.children[0])
            right, right_held = visit(node.children[1])
            if node.data == "conditionaland":
                held = left_held and right_held
                keep = held
                return [_with(p, keep and p.contributed) for p in left + right], held
            held = left_held or right_held
            return (
                [_with(p, left_held and p.contributed) for p in left]
                + [_with(p, right_held and p.contributed) for p in right],
                held,
            )
        held = truthy(compile_tree(node)(env))
        return [ConditionPart(_text(source, node, boundaries), held, held, tuple(_paths_read(node)))], held

    return visit(tree)


def _with(part: ConditionPart, contributed: bool) -> ConditionPart:
    return ConditionPart(part.text, part.held, contributed, part.reads, part.group)


def _explain_when(call: ToolCall, when: str) -> tuple[list[ConditionPart], str, bool | None]:
    try:
        rewritten, tree = parse_expression(when)
        parts, held = _when_parts(rewritten, tree, CallView(call).env)
    except (ExpressionError, RecursionError) as exc:
        return [], str(exc), None
    return parts, "", held


def _notes(rule: Mapping[str, Any]) -> tuple[str, ...]:
    notes = []
    agents = rule.get("agents")
    if isinstance(agents, list):
        notes.append("only for agents: " + ", ".join(map(str, agents)))
    elif isinstance(agents, Mapping) and agents.get("not"):
        notes.append("not for agents: " + ", ".join(map(str, agents["not"])))
    for key, words in (
        ("blocked_by", "unless the session called"),
        ("requires", "only after the session called"),
    ):
        for item in rule.get(key) or ():
            if isinstance(item, Mapping):
                within = f" within {item['within']}" if item.get("within") else ""
                notes.append(f"{key}: {words} {item.get('tool')}{within}")
    for limit in rule.get("rate_limits") or ():
        if isinstance(limit, Mapping):
            notes.append(
                f"rate limit: more than {limit.get('max_calls')} calls per {limit.get('window_seconds')} s "
                f"(scope: {limit.get('scope')})"
            )
    return tuple(notes)


def explain_rule(
    rule: Mapping[str, Any],
    *,
    tool_name: str,
    arguments: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Explanation:
    """Explain a rule of a normalized rule-set document (``RuleSetVersion.document["rules"]``)
    for one call: its condition as text, its parts, and the paths they read with the call's values."""
    call = ToolCall(tool_name, dict(arguments), dict(context or {}), now=now or datetime.now(UTC))
    rule_id = str(rule.get("id") or "")
    common: dict[str, Any] = {
        "rule_id": rule_id,
        "rule_name": str(rule.get("name") or rule_id),
        "found": True,
        "action": "deny" if rule.get("action") == "block" else str(rule.get("action") or ""),
        "severity": str(rule.get("severity") or ""),
        "notes": _notes(rule),
    }
    when = rule.get("when")
    has_ir = bool(rule.get("conditions") or [g for g in rule.get("condition_groups") or [] if g])
    kind: ConditionKind = "none"
    text_parts: list[str] = []
    parts: list[ConditionPart] = []
    problems: list[str] = []
    held_all: list[bool | None] = []
    if has_ir:
        kind, text, ir_parts, problem, held = _explain_conditions(call, rule)
        text_parts.append(text)
        parts.extend(ir_parts)
        problems.extend([problem] if problem else [])
        held_all.append(held)
    if isinstance(when, str):
        when_parts, problem, held = _explain_when(call, when)
        if kind == "none":
            kind = "when"
        text_parts.append(when)
        if has_ir:  # both must hold: the when: parts contribute only if the conditions held too
            when_parts = [_with(p, p.contributed and bool(held_all[0])) for p in when_parts]
            parts = [_with(p, p.contributed and bool(held)) for p in parts]
        parts.extend(when_parts)
        problems.extend([problem] if problem else [])
        held_all.append(held)
    held_value: bool | None = None if any(h is None for h in held_all) else all(held_all)
    return Explanation(
        **common,
        kind=kind,
        condition_text=" AND ".join(text_parts) if len(text_parts) > 1 else "".join(text_parts),
        parts=tuple(parts),
        reads=_reads_of(call, parts),
        problem="; ".join(problems),
        held=held_value if held_all else True,
        message="" if held_all else "The rule has no condition: it applies to every call of its tools.",
    )


# --- per-tool policy constraints --------------------------------------------------------------


def _constraint_text(constraint: Mapping[str, Any]) -> str:
    checks = []
    for key in (*NUMBER_BOUNDS, *STRING_SIZES, *ARRAY_SIZES):
        if constraint.get(key) is not None:
            checks.append(f"{key} {json.dumps(constraint[key])}")
    if constraint.get("regex") is not None:
        checks.append(f"regex {json.dumps(constraint['regex'], ensure_ascii=False)}")
    if constraint.get("enum") is not None:
        checks.append(f"enum {json.dumps(constraint['enum'], ensure_ascii=False)}")
    for key in SERVER_ONLY_CONSTRAINT_KEYS:
        if constraint.get(key) is not None:
            checks.append(f"{key} {json.dumps(constraint[key], ensure_ascii=False)}")
    checks.extend(key for key in FLAGS if constraint.get(key))
    action = " (require_approval when it fails)" if constraint.get("action") == "require_approval" else ""
    return f"{constraint.get('argumentName')}: {', '.join(checks) or 'no checks'}{action}"


def explain_constraints(
    constraints: Sequence[Mapping[str, Any]],
    *,
    rule_id: str,
    rule_name: str,
    arguments: Mapping[str, Any],
    note: str = "",
) -> Explanation:
    """Explain a tool policy's constraints (``ToolPolicy.constraints``) for one call: a part per
    enabled constraint; a failing one is what fired (the first failure gives the decision's reason)."""
    enabled = [c for c in constraints if isinstance(c, Mapping) and c.get("enabled", True)]
    failures = compile_constraints(list(enabled)).check(arguments)
    failed = {f.parameter: f for f in failures}
    call = ToolCall("", dict(arguments))
    parts = []
    for constraint in enabled:
        name = str(constraint.get("argumentName"))
        failure = failed.get(name)
        text = _constraint_text(constraint)
        if failure is not None:
            text += f" — failed: {failure.message}"
        parts.append(ConditionPart(text, failure is not None, failure is not None, (("args", (name,)),)))
    holding = bool(failures) and all(f.action == "require_approval" for f in failures)
    return Explanation(
        rule_id=rule_id,
        rule_name=rule_name,
        found=True,
        action=("require_approval" if holding else "deny") if failures else "allow",
        severity="medium",
        kind="constraints",
        condition_text="; ".join(_constraint_text(c) for c in enabled),
        parts=tuple(parts),
        reads=_reads_of(call, parts),
        notes=(note,) if note else (),
        held=bool(failures),
    )


__all__ = [
    "ArgumentRead",
    "ConditionPart",
    "Explanation",
    "explain_constraints",
    "explain_rule",
    "not_explained",
    "rule_in_document",
    "rule_not_found",
]
