"""Helpers for the browser pages (Django sessions)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import Http404, HttpRequest
from django_htmx.middleware import HtmxDetails

from common.errors import NotFound
from tenancy.selectors import TeamAccess, team_access_for


class AuthenticatedHttpRequest(HttpRequest):
    """The request type of the browser pages: every one is behind ``login_required``, so ``user``
    is signed in, and ``HtmxMiddleware`` sets ``htmx``. For annotations only; Django builds a
    plain request."""

    user: User
    htmx: HtmxDetails


def team_access_or_404(request: AuthenticatedHttpRequest, slug: str) -> TeamAccess:
    """The signed-in person's access to team ``slug``; a 404 page when they may not see it."""
    try:
        return team_access_for(user=request.user, slug=slug)
    except NotFound as exc:
        raise Http404(exc.message) from exc
