"""The team settings page (Django sessions): members and roles, approver groups, the team's
options and its members' personal keys.

Who sees what: the team's admins (and staff) see it all and change it; the other members see a
read-only page (who is in the team, its groups and options; no keys, no forms), and a form they
send anyway is refused (403, with the message on the page); anyone else gets a 404, as for any
team page (``team_access_or_404``). Every form works without JavaScript: a change redirects back
to the page (POST-redirect-GET) with a message; a refusal renders the page with the message and
its status code (400, 403, 404, 409), never a 500.

Thin on purpose: reads from ``team_settings.selectors``, writes through
``team_settings.services``, which check who may and write the trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from common.errors import ApplicationError, InvalidInput
from team_settings import selectors, services
from team_settings.forms import (
    GroupCreateForm,
    GroupForm,
    GroupMemberForm,
    GroupRenameForm,
    MemberAddForm,
    MemberForm,
    MemberRoleForm,
    OptionsForm,
)
from tenancy.actor import Actor
from tenancy.models import Membership
from tenancy.selectors import TeamAccess
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404

# What an action does with the valid form: the success message, and where on the page to land
# (None: the page is no longer the actor's, after they left the team).
Outcome = tuple[str, str | None]


def _render(request: AuthenticatedHttpRequest, access: TeamAccess, *, status: int = 200) -> HttpResponse:
    settings = selectors.team_settings_of(team=access.team, with_keys=access.is_admin)
    context: dict[str, Any] = {
        "team": access.team,
        "access": access,
        "settings": settings,
        "roles": Membership.Role.choices,
        "add_member_form": MemberAddForm(),
        "group_create_form": GroupCreateForm(),
        "options_form": OptionsForm(
            initial={
                "admins_may_approve": access.team.admins_may_approve,
                "require_policy_review": access.team.require_policy_review,
            }
        ),
    }
    return render(request, "team_settings/page.html", context, status=status)


@login_required
@require_safe
def settings_page(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The team's settings: editable for its admins, read-only for its other members."""
    return _render(request, team_access_or_404(request, slug))


def _problem_of(form: forms.Form) -> str:
    field, errors = next(iter(form.errors.items()))
    text = " ".join(str(error) for error in errors)
    return f"{field}: {text}" if field != "__all__" else text


def _act(
    request: AuthenticatedHttpRequest,
    slug: str,
    form_class: type[forms.Form],
    do: Callable[[TeamAccess, dict[str, Any], Actor], Outcome],
) -> HttpResponse:
    access = team_access_or_404(request, slug)
    actor = Actor.of_request(request)
    form = form_class(request.POST)
    try:
        if not form.is_valid():
            # Someone who may not change anything is told that, not what is wrong with the form.
            services.ensure_team_admin(team=access.team, actor=actor)
            raise InvalidInput(_problem_of(form))
        message, anchor = do(access, form.cleaned_data, actor)
    except ApplicationError as exc:
        messages.error(request, f"Nothing changed: {exc.message}")
        return _render(request, access, status=exc.status_code)
    messages.success(request, message)
    if anchor is None:
        return redirect("dashboard:home")
    return redirect(reverse("team_settings:page", args=[access.team.slug]) + f"#{anchor}")


@login_required
@require_POST
def member_add(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Add an existing person (by username or e-mail) in a role."""

    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        services.ensure_team_admin(team=access.team, actor=actor)
        user = selectors.user_find(name=data["user"])
        services.membership_add(team=access.team, user=user, role=data["role"], actor=actor)
        return f"Added {user.get_username()} to {access.team.slug} as {data['role']}.", "members"

    return _act(request, slug, MemberAddForm, do)


@login_required
@require_POST
def member_role(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        user = selectors.user_by_username(username=data["username"])
        services.membership_role_change(team=access.team, user=user, role=data["role"], actor=actor)
        return f"{user.get_username()} is now {data['role']} of {access.team.slug}.", "members"

    return _act(request, slug, MemberRoleForm, do)


@login_required
@require_POST
def member_remove(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Remove a member (their personal keys for the team are revoked with it)."""

    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        user = selectors.user_by_username(username=data["username"])
        services.membership_remove(team=access.team, user=user, actor=actor)
        message = f"Removed {user.get_username()} from {access.team.slug}; their keys for it are revoked."
        if user.pk == request.user.pk and not request.user.is_staff:
            return message, None
        return message, "members"

    return _act(request, slug, MemberForm, do)


@login_required
@require_POST
def group_create(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        group = services.approver_group_create(
            team=access.team, slug=data["slug"], name=data["name"], actor=actor
        )
        return f"Created the approver group {group.name} ({group.slug}).", f"group-{group.slug}"

    return _act(request, slug, GroupCreateForm, do)


@login_required
@require_POST
def group_rename(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        group = services.approver_group_rename(
            team=access.team, slug=data["group"], name=data["name"], actor=actor
        )
        return f"The approver group {group.slug} is named {group.name}.", f"group-{group.slug}"

    return _act(request, slug, GroupRenameForm, do)


@login_required
@require_POST
def group_delete(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        services.approver_group_delete(team=access.team, slug=data["group"], actor=actor)
        return f"Deleted the approver group {data['group']}.", "groups"

    return _act(request, slug, GroupForm, do)


@login_required
@require_POST
def group_member_add(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        user = selectors.user_by_username(username=data["username"])
        services.approver_group_member_add(team=access.team, slug=data["group"], user=user, actor=actor)
        return f"{user.get_username()} is in the approver group {data['group']}.", f"group-{data['group']}"

    return _act(request, slug, GroupMemberForm, do)


@login_required
@require_POST
def group_member_remove(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        user = selectors.user_by_username(username=data["username"])
        services.approver_group_member_remove(team=access.team, slug=data["group"], user=user, actor=actor)
        return (
            f"{user.get_username()} is not in the approver group {data['group']}.",
            f"group-{data['group']}",
        )

    return _act(request, slug, GroupMemberForm, do)


@login_required
@require_POST
def options(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        services.team_options_update(
            team=access.team,
            admins_may_approve=data["admins_may_approve"],
            require_policy_review=data["require_policy_review"],
            actor=actor,
        )
        return f"Saved the options of {access.team.slug}.", "options"

    return _act(request, slug, OptionsForm, do)


class _NoFields(forms.Form):
    pass


@login_required
@require_POST
def key_revoke(request: AuthenticatedHttpRequest, slug: str, key_id: uuid.UUID) -> HttpResponse:
    """Revoke a member's personal key for this team."""

    def do(access: TeamAccess, data: dict[str, Any], actor: Actor) -> Outcome:
        api_key, revoked = services.member_api_key_revoke(team=access.team, key_id=key_id, actor=actor)
        owner = api_key.user.get_username() if api_key.user is not None else "?"
        if not revoked:
            return f"{api_key.name} ({api_key.prefix}…) of {owner} was already revoked.", "keys"
        return f"Revoked {owner}'s key {api_key.name} ({api_key.prefix}…).", "keys"

    return _act(request, slug, _NoFields, do)
