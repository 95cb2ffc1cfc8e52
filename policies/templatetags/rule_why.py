"""Why a rule fired, for the pages that show a decision: the decision page (dashboards) and the
approval page (approvals). One fragment, ``policies/_rule_why.html``, and one explanation
(``policies.selectors.decision_explanation`` over ``policies.explain``) serve both.

The approval page reaches it through ``{% rule_why_of_approval approval %}`` because approvals may
not import policies (the layers contract in pyproject.toml: siblings import none of each other);
the template tag is policies' own code, used by a template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from policies.explain import Explanation, Root
from policies.selectors import approval_explanation

register = template.Library()

_INDENT = "  "
# Deeper than this, a value is printed on one line (json.dumps, without marks): arguments may nest
# as deep as the edge's JSON reader allows, and printing recurses once per level.
_MAX_INDENTED_DEPTH = 40


@register.inclusion_tag("policies/_rule_why.html")
def rule_why_of_approval(approval: Any) -> dict[str, Any]:
    """The fragment for the decision that raised ``approval`` (any object with ``team_id``,
    ``decision_id``, ``rule_id`` and ``rule_name``: approvals.Approval)."""
    return {
        "explanation": approval_explanation(
            team_id=approval.team_id,
            decision_id=approval.decision_id,
            rule_id=approval.rule_id,
            rule_name=approval.rule_name,
        )
    }


def _scalar(value: Any) -> str:
    return escape(json.dumps(value, ensure_ascii=False, default=str))


def _render(value: Any, path: tuple[str, ...], marked: frozenset[tuple[str, ...]], depth: int) -> str:
    if path in marked:
        inner = _render(value, path, frozenset(), depth)
        return f'<mark data-path="{escape(".".join(path))}">{inner}</mark>'
    if depth >= _MAX_INDENTED_DEPTH:
        return _scalar(value)
    pad = _INDENT * (depth + 1)
    if isinstance(value, Mapping) and value:
        items = [
            f"{pad}{_scalar(str(key))}: {_render(item, (*path, str(key)), marked, depth + 1)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + _INDENT * depth + "}"
    if isinstance(value, list) and value:
        if not any(isinstance(item, (Mapping, list)) for item in value):
            # A list of plain values on one line (pre-wrap wraps it), not one line per value.
            return "[" + ", ".join(_scalar(item) for item in value) + "]"
        items = [f"{pad}{_render(item, path, frozenset(), depth + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + _INDENT * depth + "]"
    return _scalar(value)


def highlighted_json(value: Any, marked: frozenset[tuple[str, ...]]) -> SafeString:
    """``value`` as indented JSON, the values at ``marked`` paths wrapped in ``<mark>``. Every key
    and value is escaped here; only the markup this function writes is left unescaped."""
    # Safe: _render escapes every key and value; only its own <mark> markup is left as is.
    return mark_safe(_render(value, (), marked, 0))


@register.simple_tag
def json_marked(value: Any, explanation: Explanation | None, root: Root) -> SafeString:
    """``{% json_marked decision.arguments explanation "args" %}``: the JSON with the paths the
    rule's contributing parts read marked."""
    marked = explanation.paths_to_mark(root) if explanation is not None else frozenset()
    return highlighted_json(value, marked)
