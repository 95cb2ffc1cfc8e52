"""Helpers for the browser pages (Django sessions)."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from common.errors import NotFound
from tenancy.selectors import TeamAccess, team_access_for


def team_access_or_404(request: HttpRequest, slug: str) -> TeamAccess:
    """The signed-in person's access to team ``slug``; a 404 page when they may not see it."""
    try:
        return team_access_for(user=request.user, slug=slug)
    except NotFound as exc:
        raise Http404(exc.message) from exc
