"""The "My API keys" page (Django sessions + htmx): a signed-in person's own keys, per team they
belong to; create one (its token shown this once) and revoke one.

Thin on purpose: reads from ``tenancy.selectors``, writes through ``tenancy.services`` (which
decides the scopes a person may hold). Every form works without JavaScript; htmx swaps the
page's section in place. Another person's key is a 404, as is one that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

from common.errors import ApplicationError, NotFound
from tenancy import selectors, services
from tenancy.forms import PersonalApiKeyForm
from tenancy.models import ApiKey, Membership, Team
from tenancy.web import AuthenticatedHttpRequest


@dataclass
class TeamKeys:
    team: Team
    role: str | None  # None: they left the team (its keys were revoked with it)
    allowed_scopes: list[str]
    keys: list[ApiKey] = field(default_factory=list)


def _team_keys(request: AuthenticatedHttpRequest, memberships: list[Membership]) -> list[TeamKeys]:
    by_team = {
        m.team_id: TeamKeys(
            team=m.team,
            role=m.role,
            allowed_scopes=sorted(
                selectors.personal_key_scopes_allowed(role=m.role, is_staff=request.user.is_staff)
            ),
        )
        for m in memberships
    }
    for api_key in selectors.personal_api_keys_of(user=request.user):
        if api_key.team_id not in by_team:
            by_team[api_key.team_id] = TeamKeys(team=api_key.team, role=None, allowed_scopes=[])
        by_team[api_key.team_id].keys.append(api_key)
    return sorted(by_team.values(), key=lambda t: (t.role is None, t.team.slug))


def _wants_fragment(request: AuthenticatedHttpRequest) -> bool:
    # A history restore asks for the whole page even though it comes from htmx.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render(
    request: AuthenticatedHttpRequest,
    memberships: list[Membership],
    *,
    form: PersonalApiKeyForm | None = None,
    created: tuple[ApiKey, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "teams": _team_keys(request, memberships),
        "form": form or PersonalApiKeyForm(memberships=memberships),
        "created_key": created[0] if created else None,
        "created_token": created[1] if created else None,
    }
    template = "tenancy/_my_api_keys.html" if _wants_fragment(request) else "tenancy/my_api_keys.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    if created is not None:
        # The token is in this page and nowhere else: no cache may keep a copy.
        patch_cache_control(response, no_store=True)
    return response


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def my_api_keys(request: AuthenticatedHttpRequest) -> HttpResponse:
    """GET: the person's keys per team. POST: create one (name, team, scopes)."""
    memberships = list(selectors.memberships_of(user=request.user))
    if request.method != "POST":
        return _render(request, memberships)
    form = PersonalApiKeyForm(request.POST, memberships=memberships)
    if not form.is_valid():
        messages.error(request, "No key created: see the form below.")
        return _render(request, memberships, form=form, status=400)
    team = next(m.team for m in memberships if m.team.slug == form.cleaned_data["team"])
    try:
        created = services.personal_api_key_create(
            user=request.user, team=team, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
        )
    except ApplicationError as exc:
        messages.error(request, f"No key created: {exc.message}")
        return _render(request, memberships, form=form, status=exc.status_code)
    messages.success(
        request, f"Created {created[0].name} for {team.slug}. Copy the key now: it is shown only once."
    )
    return _render(request, memberships, created=created, status=201)


@login_required
@require_POST
def my_api_key_revoke(request: AuthenticatedHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    try:
        api_key = selectors.personal_api_key_get(user=request.user, key_id=key_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    services.api_key_revoke(api_key=api_key)
    messages.success(request, f"Revoked {api_key.name} ({api_key.prefix}…).")
    if _wants_fragment(request):
        return _render(request, list(selectors.memberships_of(user=request.user)))
    return redirect("tenancy:my-api-keys")
