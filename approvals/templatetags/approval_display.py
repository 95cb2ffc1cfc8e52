"""Display helpers for the approvals pages (see approvals/display.py)."""

from __future__ import annotations

from typing import Any

from django import template

from approvals import display

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    return display.duration_words(seconds)


@register.filter
def context_value(context: Any, name: str) -> str | None:
    return display.context_value(context, name)
