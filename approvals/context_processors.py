"""The nav badge: how many approvals wait for the signed-in person."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from approvals.selectors import approvals_pending_count_for


def pending_approvals(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: counted only when a template draws the badge (full pages, not htmx fragments),
    # and once per response however often the template reads it.
    return {"approvals_pending_count": SimpleLazyObject(lambda: approvals_pending_count_for(user=user))}
