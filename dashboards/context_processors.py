"""The nav's team switcher: the teams the signed-in person may see, and the one the page is about."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from tenancy.selectors import teams_visible_to


def navigation(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    slug = (match.kwargs.get("slug") if match else None) or ""
    teams = SimpleLazyObject(lambda: list(teams_visible_to(user=user)))
    return {"nav_teams": teams, "nav_team_slug": slug}
