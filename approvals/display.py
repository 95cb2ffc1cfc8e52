"""How an approval reads in the browser: its arguments as a tree to fold, with personal data
flagged; the context fields people decide by; durations in words. Pure Python, no Django."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from approvals.pii import name_flags, value_flags

# Strings longer than this show their start and expand to the rest.
PREVIEW_CHARS = 160
# Deeper than this, a value is shown as (truncated) JSON text rather than folded further.
MAX_DEPTH = 8
# Items shown per object or list; the rest are counted, not drawn.
MAX_ITEMS = 200


@dataclass(frozen=True, slots=True)
class ArgumentNode:
    """One value of the arguments. ``kind`` is object, array, string, number, boolean or null."""

    key: str | None
    kind: str
    text: str = ""  # the value as written (scalars only; JSON for what is too deep)
    children: tuple[ArgumentNode, ...] = ()
    omitted: int = 0  # items of an object or list beyond MAX_ITEMS
    flags: tuple[str, ...] = ()  # what this value (or its name) looks like: "e-mail address", ...
    flagged_inside: tuple[str, ...] = ()  # the same for everything below it, for a folded node

    @property
    def is_container(self) -> bool:
        return self.kind in ("object", "array")

    @property
    def size(self) -> int:
        return len(self.children) + self.omitted

    @property
    def is_long(self) -> bool:
        return len(self.text) > PREVIEW_CHARS

    @property
    def preview(self) -> str:
        return self.text[:PREVIEW_CHARS]


def _merge(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(label for group in groups for label in group))


def argument_tree(value: Any, key: str | None = None, depth: int = 0) -> ArgumentNode:
    """``value`` (decoded JSON) as a tree of nodes; each flagged by what it and its name look like."""
    from_name = name_flags(key) if key else ()
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        text = _json_text(value)
        return ArgumentNode(key, "string", text, flags=_merge(from_name, value_flags(text)))
    if isinstance(value, dict):
        items = list(value.items())
        children = tuple(argument_tree(v, str(k), depth + 1) for k, v in items[:MAX_ITEMS])
        return _container(key, "object", children, len(items) - len(children), from_name)
    if isinstance(value, list):
        children = tuple(argument_tree(v, f"[{i}]", depth + 1) for i, v in enumerate(value[:MAX_ITEMS]))
        return _container(key, "array", children, len(value) - len(children), from_name)
    if isinstance(value, str):
        # A name alone flags a value only when there is one (an empty ``email`` discloses nothing).
        named = from_name if value.strip() else ()
        return ArgumentNode(key, "string", value, flags=_merge(named, value_flags(value)))
    if isinstance(value, bool):
        return ArgumentNode(key, "boolean", "true" if value else "false")
    if value is None:
        return ArgumentNode(key, "null", "null")
    text = str(value)
    # A number can be a card or phone number too; a name alone does not flag a number
    # (``phone_count: 3`` is not personal data).
    return ArgumentNode(key, "number", text, flags=value_flags(text))


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        return "(nested too deeply to show)"


def _container(
    key: str | None, kind: str, children: tuple[ArgumentNode, ...], omitted: int, from_name: tuple[str, ...]
) -> ArgumentNode:
    inside = _merge(*(_merge(child.flags, child.flagged_inside) for child in children))
    return ArgumentNode(key, kind, children=children, omitted=omitted, flags=from_name, flagged_inside=inside)


def context_value(context: Any, name: str) -> str | None:
    """``context.<name>``, else ``context.custom.<name>`` (where the SDK puts what the agent adds)."""
    if not isinstance(context, dict):
        return None
    value = context.get(name)
    if value in (None, ""):
        custom = context.get("custom")
        value = custom.get(name) if isinstance(custom, dict) else None
    if value in (None, ""):
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def duration_words(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``: the largest unit and the next one down, whole numbers."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    for index, (unit, size) in enumerate(units):
        if total >= size or unit == "s":
            words = f"{total // size} {unit}"
            if index + 1 < len(units):
                next_unit, next_size = units[index + 1]
                rest = (total % size) // next_size
                if rest:
                    words += f" {rest} {next_unit}"
            return words
    raise AssertionError("unreachable: the last unit always matches")


# Younger than this, an approval's age reads "just now": the seconds would only flicker.
JUST_NOW_SECONDS = 10


def age_words(seconds: float | None) -> str:
    """How long something has waited, as a person says it at a glance: ``"just now"``,
    ``"45 s"``, ``"3 min"``, ``"2 h 5 min"``, ``"3 d 4 h"``. Coarser than ``duration_words``:
    seconds only in the first minute, minutes alone under an hour (a queue's "0 minutes" told
    nobody anything, and "3 min 12 s" is noise in a column scanned for what is old)."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    if total < JUST_NOW_SECONDS:
        return "just now"
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min"
    if total < 86400:
        hours, minutes = divmod(total // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(total // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
