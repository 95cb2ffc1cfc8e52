"""The audit page of a team (Django sessions): its chains, checkpoints and verifications, and a
"verify now" button. Mounted by dashboards/urls.py under /dashboard/teams/<slug>/audit/."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from audit.models import ChainHead, ChainStream, Checkpoint
from audit.selectors import verification_latest
from audit.services import chain_verify
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404


@login_required
@require_safe
def audit_page(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The team's chains: head, latest signed checkpoint and last verification per stream."""
    access = team_access_or_404(request, slug)
    streams = []
    for stream in ChainStream:
        head = ChainHead.objects.filter(team=access.team, stream=stream).first()
        streams.append(
            {
                "stream": stream,
                "head": head,
                "checkpoint": Checkpoint.objects.filter(team=access.team, stream=stream)
                .order_by("-sequence")
                .first(),
                "verification": verification_latest(team_id=access.team.id, stream=stream),
            }
        )
    return render(request, "audit/page.html", {"team": access.team, "streams": streams})


@login_required
@require_POST
def audit_verify(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Verify both of the team's chains now (members may; it only reads and records the run)."""
    access = team_access_or_404(request, slug)
    for stream in ChainStream:
        result = chain_verify(team_id=access.team.id, stream=stream)
        if result.ok:
            messages.success(
                request, f"{stream.label}: OK, {result.count} records verified in {result.seconds:.2f} s."
            )
        else:
            messages.error(
                request, f"{stream.label}: BROKEN at sequence {result.broken_at}: {result.problem}"
            )
    return redirect("dashboard:audit", slug=access.team.slug)
