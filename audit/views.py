"""Dashboard pages (Django sessions). The live, htmx + Channels dashboards build on these."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit.selectors import DecisionFilters, decision_stats, decisions_of_team
from tenancy.models import Team


@login_required
def dashboard_home(request: HttpRequest) -> HttpResponse:
    """Recent decisions and counts for each team the user belongs to (every team for staff)."""
    teams = (
        Team.objects.all() if request.user.is_staff else Team.objects.filter(memberships__user=request.user)
    )
    panels = []
    for team in teams.order_by("slug"):
        filters = DecisionFilters()
        panels.append(
            {
                "team": team,
                "stats": decision_stats(team_id=team.id, filters=filters),
                "recent": list(decisions_of_team(team_id=team.id, filters=filters)[:25]),
            }
        )
    return render(request, "dashboard/home.html", {"panels": panels})
