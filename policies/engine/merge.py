"""A policy draft's proposed rules merged into a rule-set document, as its author wrote them.

The merge works on the parsed source (not the normalized form), so the new version keeps the
short-form rules, settings, fixtures and names of the version it builds on exactly as written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def rule_id(rule: Mapping[str, Any]) -> Any:
    """A rule's id as the loader assigns it: ``id``, else ``name``."""
    return rule.get("id", rule.get("name"))


def merge_proposed_rules(base: Any, proposed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``base`` (a parsed rule-set document, a bare list of rules, or None) with ``proposed``
    applied: a proposed rule whose id matches a base rule replaces it where it stands (rule
    order decides precedence, so the place is kept); the others are appended in their order.
    Everything else in ``base`` (settings, fixtures, name, ...) is kept as it was."""
    if base is None:
        document: dict[str, Any] = {"rules": []}
    elif isinstance(base, list):
        document = {"rules": list(base)}
    else:
        document = dict(base)
    rules = list(document.get("rules") or [])
    position = {rule_id(rule): index for index, rule in enumerate(rules) if isinstance(rule, Mapping)}
    for rule in proposed:
        index = position.get(rule_id(rule))
        if index is None:
            position[rule_id(rule)] = len(rules)
            rules.append(dict(rule))
        else:
            rules[index] = dict(rule)
    document["rules"] = rules
    return document
