"""The rule-set actions of the policies page: save the editor's source as a version, show one,
publish it (or roll back to it), compare two, and preview a version's impact."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_POST, require_safe

from common.errors import ApplicationError, NotFound
from policies import selectors, services
from policies.models import RuleSetPublication
from policies.views.page import check_source, fragment_or_page, render_page, render_version, version_or_404
from tenancy.actor import Actor
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404


@login_required
@require_POST
def policies_version_create(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Save the editor's source as a new draft version, authored by the person saving it."""
    access = team_access_or_404(request, slug)
    check = check_source(request.POST.get("source", ""))
    if check.too_large is not None:
        messages.error(request, f"Not saved: {check.too_large.message}")
        return render_page(request, access, check=check, status=check.too_large.status_code)
    if check.problems:
        # The service would refuse it too; checking here keeps the text in the editor with
        # every problem next to its line.
        count = len(check.problems)
        messages.error(
            request, f"Not saved: the rule set has {count} problem{pluralize(count)}, listed below."
        )
        return render_page(request, access, check=check, status=400)
    try:
        version = services.rule_set_version_create(
            team=access.team,
            source_text=check.source,
            content_type="application/yaml",
            author=Actor.of_request(request),
        )
    except ApplicationError as exc:
        messages.error(request, f"Not saved: {exc.message}")
        return render_page(request, access, check=check, status=exc.status_code)
    messages.success(request, f"Saved version {version.number} as a draft.")
    return redirect("policies:version", slug=access.team.slug, number=version.number)


@login_required
@require_safe
def policies_version(request: AuthenticatedHttpRequest, slug: str, number: int) -> HttpResponse:
    access = team_access_or_404(request, slug)
    return render_version(request, access, version_or_404(access, number))


@login_required
@require_POST
def policies_version_publish(request: AuthenticatedHttpRequest, slug: str, number: int) -> HttpResponse:
    """Publish a version (a rollback when it was active before): team admins only, never its
    own author, and only if its fixtures pass."""
    access = team_access_or_404(request, slug)
    version = version_or_404(access, number)
    try:
        publication = services.rule_set_version_publish(version=version, actor=Actor.of_request(request))
    except ApplicationError as exc:
        messages.error(request, exc.message)
        version.refresh_from_db()
        return render_version(request, access, version, status=exc.status_code)
    if publication.kind == RuleSetPublication.Kind.ROLLBACK:
        previous = publication.previous_version.number if publication.previous_version else None
        messages.success(request, f"Rolled back to version {version.number} (from version {previous}).")
    else:
        messages.success(request, f"Published version {version.number}; it is now active.")
    return redirect("policies:version", slug=access.team.slug, number=version.number)


@login_required
@require_safe
def policies_diff(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Rule by rule, between any two versions (``?from=A&to=B``)."""
    access = team_access_or_404(request, slug)
    before, after = request.GET.get("from", ""), request.GET.get("to", "")
    if not (before.isdigit() and after.isdigit()):
        raise Http404("choose two versions to compare")
    try:
        diff = selectors.rule_set_versions_diff(team_id=access.team.id, before=int(before), after=int(after))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return fragment_or_page(
        request, access, "policies/_diff.html", f"Version {before} → {after}", {"diff": diff}
    )


@login_required
@require_safe
def policies_impact(request: AuthenticatedHttpRequest, slug: str, number: int) -> HttpResponse:
    """What would change if this version were active: the team's recent decisions replayed."""
    access = team_access_or_404(request, slug)
    version = version_or_404(access, number)
    preview = selectors.rule_set_impact_preview(team_id=access.team.id, document=version.document)
    return fragment_or_page(
        request,
        access,
        "policies/_impact.html",
        f"Impact of version {version.number}",
        {"version": version, "preview": preview},
    )
