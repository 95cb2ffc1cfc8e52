"""The nav's Webhooks link (templates/base.html): shown to whoever administers the page's team."""

from __future__ import annotations

from typing import Any

from django import template

from tenancy.models import Team
from tenancy.selectors import user_is_team_admin

register = template.Library()


@register.simple_tag(takes_context=True)
def administers_team(context: Any, slug: str) -> bool:
    """Whether the signed-in person administers team ``slug`` (one query; none for staff),
    remembered for the rest of the render."""
    user = context.get("user")
    if not slug or user is None or not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    cache = context.render_context.setdefault("webhooks_nav_admin", {})
    if slug not in cache:
        team_id = Team.objects.filter(slug=slug).values_list("id", flat=True).first()
        cache[slug] = team_id is not None and user_is_team_admin(user=user, team_id=team_id)
    return bool(cache[slug])
