"""Dashboard pages (Django sessions). The live, htmx + Channels dashboards build on these."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit.selectors import DecisionFilters, decision_stats, decisions_of_team
from tenancy.selectors import teams_visible_to


@login_required
def dashboard_home(request: HttpRequest) -> HttpResponse:
    """Recent decisions and counts for each team the user belongs to (every team for staff)."""
    panels = []
    for team in teams_visible_to(user=request.user):
        filters = DecisionFilters()
        panels.append(
            {
                "team": team,
                "stats": decision_stats(team_id=team.id, filters=filters),
                "recent": list(decisions_of_team(team_id=team.id, filters=filters)[:25]),
            }
        )
    return render(request, "dashboard/home.html", {"panels": panels})
