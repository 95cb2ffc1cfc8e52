"""Display helpers for the approvals pages (see approvals/display.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

from approvals import display

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    return display.duration_words(seconds)


@register.filter
def age(since: datetime | None) -> str:
    """``{{ approval.created_at|age }}``: how long ago, in ``display.age_words``' words."""
    if since is None:
        return display.age_words(None)
    return display.age_words((timezone.now() - since).total_seconds())


@register.filter
def ago(since: datetime | None) -> str:
    """``{{ approval.created_at|ago }}``: "3 min ago", or "just now"."""
    words = age(since)
    return words if words in ("just now", "—") else f"{words} ago"


@register.filter
def context_value(context: Any, name: str) -> str | None:
    return display.context_value(context, name)
