"""The dashboard's landing page: the teams the person belongs to (every team for staff), each
linking to its overview and its other pages, with a few small counts of the last day."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from dashboards import stats
from tenancy.selectors import teams_visible_to
from tenancy.web import AuthenticatedHttpRequest


@login_required
@require_safe
def dashboard_home(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A card per team: its pages, and the last 24 hours' decisions and what waits for approval.
    Two queries for all the teams together (windows on indexes, never a count of everything)."""
    teams = list(teams_visible_to(user=request.user))
    team_ids = [team.id for team in teams]
    decisions = stats.decision_totals_of_teams(team_ids=team_ids)
    pending = stats.pending_counts_of_teams(team_ids=team_ids)
    panels = [
        {
            "team": team,
            "day": decisions[team.id],
            "day_total": sum(decisions[team.id].values()),
            "pending": pending[team.id],
        }
        for team in teams
    ]
    return render(request, "dashboards/home.html", {"panels": panels})
