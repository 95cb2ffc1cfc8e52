"""Rule-by-rule differences between two normalized rule-set documents."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

_MISSING = object()


def _field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    changes = []
    for field in sorted(set(before) | set(after)):
        old, new = before.get(field, _MISSING), after.get(field, _MISSING)
        if old != new:
            changes.append(
                {
                    "field": field,
                    "from": None if old is _MISSING else old,
                    "to": None if new is _MISSING else new,
                }
            )
    return changes


def _longest_in_order(ids: list[str], old_position: Mapping[str, int]) -> set[str]:
    """The largest set of ``ids`` whose old positions already increase (O(n log n) LIS):
    rules outside it are the ones that moved relative to the others."""
    tails: list[int] = []  # smallest old position ending an increasing run of each length
    tail_ids: list[int] = []  # index into ids of that tail
    parent: list[int] = [-1] * len(ids)
    for index, rule_id in enumerate(ids):
        position = old_position[rule_id]
        length = bisect.bisect_left(tails, position)
        if length == len(tails):
            tails.append(position)
            tail_ids.append(index)
        else:
            tails[length] = position
            tail_ids[length] = index
        parent[index] = tail_ids[length - 1] if length > 0 else -1
    kept: set[str] = set()
    cursor = tail_ids[-1] if tail_ids else -1
    while cursor != -1:
        kept.add(ids[cursor])
        cursor = parent[cursor]
    return kept


def diff_documents(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """``added`` and ``removed`` rules (whole), ``changed`` rules (field by field, by rule id),
    ``moved`` rules (their order relative to the other kept rules changed, which matters:
    order decides precedence), and changed settings."""
    old_rules = {rule["id"]: (i, rule) for i, rule in enumerate(before.get("rules", []))}
    new_rules = {rule["id"]: (i, rule) for i, rule in enumerate(after.get("rules", []))}
    added = [rule for rule_id, (_, rule) in new_rules.items() if rule_id not in old_rules]
    removed = [rule for rule_id, (_, rule) in old_rules.items() if rule_id not in new_rules]
    changed = []
    for rule_id, (_, new_rule) in new_rules.items():
        if rule_id in old_rules:
            fields = _field_changes(old_rules[rule_id][1], new_rule)
            if fields:
                changed.append({"id": rule_id, "changes": fields})
    common_in_new_order = [rule_id for rule_id in new_rules if rule_id in old_rules]
    kept = _longest_in_order(common_in_new_order, {rule_id: old_rules[rule_id][0] for rule_id in old_rules})
    moved = [
        {"id": rule_id, "from": old_rules[rule_id][0], "to": new_rules[rule_id][0]}
        for rule_id in common_in_new_order
        if rule_id not in kept
    ]
    return {
        "added": added,
        "removed": removed,
        "changed": changed,
        "moved": moved,
        "settings": _field_changes(before.get("settings") or {}, after.get("settings") or {}),
    }
