"""Small display helpers for the policies pages."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import yaml
from django import template

register = template.Library()


@register.filter
def as_json(value: Any, indent: int | None = None) -> str:
    """A rule field's value as it would be written (``null``, ``true``, ``["a", "b"]``), so a
    diff tells ``"1"`` from ``1`` and an absent field from an empty one."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=indent, default=str)


@register.filter
def as_yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)


@register.filter
def numbered_lines(source: str) -> list[tuple[int, str]]:
    return list(enumerate(source.splitlines(), start=1))


@register.filter
def iso_datetime(value: str) -> datetime | str:
    """An ISO 8601 timestamp from a selector's JSON-shaped output, for the ``date`` filter."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value
