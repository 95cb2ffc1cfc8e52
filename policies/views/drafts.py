"""The draft actions of the policies page: approve a proposed draft (published at once) or reject it."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from common.errors import ApplicationError
from policies import services
from policies.views.page import draft_or_404, render_page
from tenancy.actor import Actor
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404


@login_required
@require_POST
def policies_draft_approve(request: AuthenticatedHttpRequest, slug: str, draft_id: uuid.UUID) -> HttpResponse:
    """Approve a proposed draft: its rules merged into the active version, published at once
    (team admins only; never the person who proposed it; only if the fixtures pass)."""
    access = team_access_or_404(request, slug)
    draft = draft_or_404(access, draft_id)
    try:
        approved = services.policy_draft_approve(draft=draft, actor=Actor.of_request(request))
    except ApplicationError as exc:
        messages.error(request, f"Draft “{draft.name}” not approved: {exc.message}")
        return render_page(request, access, status=exc.status_code)
    version = approved.result_version
    if version is None:  # moved to review rather than published (only API keys get that)
        messages.info(request, f"Draft “{draft.name}” now awaits review.")
        return redirect("policies:page", slug=access.team.slug)
    messages.success(
        request, f"Approved draft “{draft.name}”: published as version {version.number}, now active."
    )
    return redirect("policies:version", slug=access.team.slug, number=version.number)


@login_required
@require_POST
def policies_draft_reject(request: AuthenticatedHttpRequest, slug: str, draft_id: uuid.UUID) -> HttpResponse:
    access = team_access_or_404(request, slug)
    draft = draft_or_404(access, draft_id)
    try:
        services.policy_draft_reject(
            draft=draft, reason=request.POST.get("reason", "").strip(), actor=Actor.of_request(request)
        )
    except ApplicationError as exc:
        messages.error(request, f"Draft “{draft.name}” not rejected: {exc.message}")
        return render_page(request, access, status=exc.status_code)
    messages.success(request, f"Rejected draft “{draft.name}”.")
    return redirect("policies:page", slug=access.team.slug)
