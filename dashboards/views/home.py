"""The dashboard's landing page: the teams the person belongs to (every team for staff), each
with its counts and its pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from audit.selectors import DecisionFilters, decision_stats, decisions_of_team
from tenancy.selectors import teams_visible_to
from tenancy.web import AuthenticatedHttpRequest


@login_required
@require_safe
def dashboard_home(request: AuthenticatedHttpRequest) -> HttpResponse:
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
    return render(request, "dashboards/home.html", {"panels": panels})
