"""One decision's page (dashboard:decision): the full record, why it was decided (the rule with its
condition and the arguments that made it fire, policies/explain.py), the approval it raised, and its
place in the team's audit chain with the neighbouring decisions and a verify button.

Access as on the overview: a member of the team sees it; anyone else, and another team's decision
id under this team's slug, get a 404.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from audit.selectors import decision_get_for_team
from common.errors import NotFound
from dashboards.selectors import decision_surroundings
from policies.selectors import decision_explanation
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404


@login_required
@require_safe
def decision_page(request: AuthenticatedHttpRequest, slug: str, decision_id: uuid.UUID) -> HttpResponse:
    access = team_access_or_404(request, slug)
    try:
        decision = decision_get_for_team(team_id=access.team.id, decision_id=decision_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    context = {
        "team": access.team,
        "decision": decision,
        "explanation": decision_explanation(decision=decision),
        "around": decision_surroundings(decision=decision),
    }
    return render(request, "dashboards/decision.html", context)
