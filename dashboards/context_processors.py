"""The nav's team switcher: the teams the signed-in person may see, and the one the page is about."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from tenancy.models import Membership
from tenancy.selectors import teams_visible_to


def navigation(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    slug = (match.kwargs.get("slug") if match else None) or ""
    teams = SimpleLazyObject(lambda: list(teams_visible_to(user=user).annotate(nav_role=_role_of(user))))
    # The teams whose admin pages (webhooks) the nav links to, read from the same list: no query
    # of its own on every page.
    admin_slugs = SimpleLazyObject(
        lambda: {t.slug for t in teams if user.is_staff or getattr(t, "nav_role", None) == Membership.Role.ADMIN}
    )
    return {"nav_teams": teams, "nav_team_slug": slug, "nav_admin_team_slugs": admin_slugs}


def _role_of(user: User) -> Subquery:
    return Subquery(Membership.objects.filter(team=OuterRef("pk"), user=user).values("role")[:1])
