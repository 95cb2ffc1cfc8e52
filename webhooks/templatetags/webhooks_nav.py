"""The nav's Webhooks link (templates/base.html): shown to whoever administers the page's team.

Read from the page's own ``access`` (a ``tenancy.selectors.TeamAccess``: the policies, team
settings and webhook pages have one), never from a query of its own: every page's query count is
pinned (tests), and the nav must not add to it. Pages without ``access`` show no link; the team
settings page links to the webhooks too.
"""

from __future__ import annotations

from typing import Any

from django import template

from tenancy.selectors import TeamAccess

register = template.Library()


@register.simple_tag(takes_context=True)
def administers_team(context: Any, slug: str) -> bool:
    access = context.get("access")
    return isinstance(access, TeamAccess) and access.team.slug == slug and access.is_admin
