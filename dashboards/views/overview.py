"""A team's overview (dashboard:overview): what its agents' calls were decided in the last hour and
day, how fast validate answered, what waits for approval, and which policy is in force.

The page is made of panels, each also served alone (dashboard:overview-panel) with the same
membership check: the panel declares ``data-live-refresh`` for the kind of change it shows, and
static/js/live.js has htmx fetch it again when the page's socket says that kind changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from dashboards import stats
from dashboards.live import Kind, socket_query
from dashboards.selectors import chain_heads_of
from tenancy.models import Team
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404


def _activity(team: Team, now: datetime) -> dict[str, Any]:
    return {
        "hour": stats.decision_series(team_id=team.id, now=now, span=stats.HOUR, step=stats.HOUR_STEP),
        "day": stats.decision_series(team_id=team.id, now=now, span=stats.DAY, step=stats.DAY_STEP),
    }


def _latency(team: Team, now: datetime) -> dict[str, Any]:
    return {
        "latency_rows": [
            ("Last hour", stats.validate_latency(team_id=team.id, now=now, span=stats.HOUR)),
            ("Last 24 hours", stats.validate_latency(team_id=team.id, now=now, span=stats.DAY)),
        ]
    }


def _breakdown(team: Team, now: datetime) -> dict[str, Any]:
    return {
        "denied_tools": stats.top_denied_tools(team_id=team.id, now=now),
        "rules": stats.top_rules(team_id=team.id, now=now),
        "models": stats.decisions_by_dimension(team_id=team.id, name="model", now=now),
        "environments": stats.decisions_by_dimension(team_id=team.id, name="environment", now=now),
    }


def _approvals(team: Team, now: datetime) -> dict[str, Any]:
    return {"pending": stats.pending_approvals_of_team(team_id=team.id, now=now)}


def _policy(team: Team, now: datetime) -> dict[str, Any]:
    return {"policy": stats.active_policy_of_team(team_id=team.id)}


# Panel name -> what it reads. Its template is dashboards/_overview_<name>.html.
PANELS: dict[str, Callable[[Team, datetime], dict[str, Any]]] = {
    "activity": _activity,
    "latency": _latency,
    "breakdown": _breakdown,
    "approvals": _approvals,
    "policy": _policy,
}


@login_required
@require_safe
def overview_page(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Every panel, and a socket for the team's decisions, approvals and policy changes that
    starts at the chain heads the page was drawn at (so nothing after them is missed)."""
    access = team_access_or_404(request, slug)
    team = access.team
    decisions_head, events_head = chain_heads_of(team_id=team.id)
    now = timezone.now()
    context: dict[str, Any] = {"team": team, "now": now}
    for read in PANELS.values():
        context.update(read(team, now))
    context.update(
        live_query=socket_query(
            kinds=[Kind.DECISIONS, Kind.APPROVALS, Kind.POLICIES],
            team_slug=team.slug,
            after_decisions=decisions_head,
            after_events=events_head,
        ),
        live_after_decisions=decisions_head,
        live_after_events=events_head,
    )
    return render(request, "dashboards/overview.html", context)


@login_required
@require_safe
def overview_panel(request: AuthenticatedHttpRequest, slug: str, panel: str) -> HttpResponse:
    """One panel, drawn afresh (htmx swaps it in for the old one)."""
    access = team_access_or_404(request, slug)
    read = PANELS.get(panel)
    if read is None:
        raise Http404(f"no overview panel {panel!r}")
    now = timezone.now()
    context = {"team": access.team, "now": now, **read(access.team, now)}
    return render(request, f"dashboards/_overview_{panel}.html", context)
