"""The tool-policy actions of the policies page: create, replace, (de)activate and delete a tool's
policy with a JSON body in the SDK's shape. The same services as /v1/policies, with the person
as the actor: on a team that requires review this is the only way to change a tool policy."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from common.edge import refuse_nul
from common.errors import ApplicationError, InvalidInput
from policies import services
from policies.permissions import ensure_may_change_tool_policies
from policies.views.page import ToolPolicyForm, render_page, tool_policy_or_404
from tenancy.actor import Actor
from tenancy.selectors import TeamAccess
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"the body is not JSON: {name} is not a JSON number", code="malformed_json")


def _json_body(text: str) -> Any:
    """The form's body, read as strictly as the API reads one (``common.parsers``: no NaN or
    Infinity, no NUL, which PostgreSQL cannot store: ``common.edge.refuse_nul``)."""
    refuse_nul(text.encode("utf-8"), text=True)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", code="malformed_json"
        ) from exc
    except RecursionError as exc:
        raise InvalidInput(
            "the body is not JSON this server reads: it nests too deeply", code="malformed_json"
        ) from exc


def _body_of(text: str, *, actor: Actor, team_id: uuid.UUID, tool_name: str | None) -> Any:
    """The form's body for the service. One that is not JSON is refused only once the sender
    may change the policy (the service's rule, asked here first), as the API's edge checks the
    key before it parses: whoever may not change it is told that, not what is wrong with it."""
    try:
        return _json_body(text)
    except InvalidInput:
        ensure_may_change_tool_policies(actor=actor, team_id=team_id, tool_name=tool_name)
        raise


def _errors_of(exc: ApplicationError) -> list[dict[str, Any]]:
    """Every problem of a refused body with its path (the services list them in ``details``)."""
    if isinstance(exc.details, dict) and isinstance(exc.details.get("errors"), list):
        return exc.details["errors"]
    return []


def _tool_policies_page(access: TeamAccess) -> HttpResponse:
    return redirect(reverse("policies:page", args=[access.team.slug]) + "#tool-policies")


@login_required
@require_POST
def policies_tool_policy_create(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Create a tool policy from a JSON body in the SDK's shape; it is active at once."""
    access = team_access_or_404(request, slug)
    text = request.POST.get("body", "")
    actor = Actor.of_request(request)
    try:
        data = _body_of(text, actor=actor, team_id=access.team.id, tool_name=None)
        policy = services.tool_policy_create(team_id=access.team.id, data=data, actor=actor)
    except ApplicationError as exc:
        messages.error(request, f"Tool policy not created: {exc.message}")
        form = ToolPolicyForm(None, text, _errors_of(exc))
        return render_page(request, access, refused=form, status=exc.status_code)
    messages.success(request, f"Created the policy of {policy.tool_name} (version 1); it applies now.")
    return _tool_policies_page(access)


@login_required
@require_POST
def policies_tool_policy_replace(
    request: AuthenticatedHttpRequest, slug: str, policy_id: uuid.UUID
) -> HttpResponse:
    """Replace the fields of a tool policy that a JSON body sets (``PUT /v1/policies/{tool}``'s:
    a field left out stays, null clears it); a person may loosen it, also on a review team."""
    access = team_access_or_404(request, slug)
    policy = tool_policy_or_404(access, policy_id)
    text = request.POST.get("body", "")
    actor = Actor.of_request(request)
    try:
        data = _body_of(text, actor=actor, team_id=access.team.id, tool_name=policy.tool_name)
        updated = services.tool_policy_update(policy=policy, data=data, actor=actor)
    except ApplicationError as exc:
        messages.error(request, f"Policy of {policy.tool_name} not changed: {exc.message}")
        form = ToolPolicyForm(policy.id, text, _errors_of(exc))
        return render_page(request, access, refused=form, status=exc.status_code)
    messages.success(request, f"Replaced the policy of {updated.tool_name}: now version {updated.version}.")
    return _tool_policies_page(access)


@login_required
@require_POST
def policies_tool_policy_set_active(
    request: AuthenticatedHttpRequest, slug: str, policy_id: uuid.UUID, *, is_active: bool
) -> HttpResponse:
    access = team_access_or_404(request, slug)
    policy = tool_policy_or_404(access, policy_id)
    try:
        services.tool_policy_set_active(policy=policy, is_active=is_active, actor=Actor.of_request(request))
    except ApplicationError as exc:
        messages.error(request, f"Policy of {policy.tool_name} not changed: {exc.message}")
        return render_page(request, access, status=exc.status_code)
    if is_active:
        messages.success(request, f"The policy of {policy.tool_name} is active: validate enforces it.")
    else:
        messages.success(request, f"The policy of {policy.tool_name} is inactive: validate ignores it.")
    return _tool_policies_page(access)


@login_required
@require_POST
def policies_tool_policy_delete(
    request: AuthenticatedHttpRequest, slug: str, policy_id: uuid.UUID
) -> HttpResponse:
    access = team_access_or_404(request, slug)
    policy = tool_policy_or_404(access, policy_id)
    try:
        services.tool_policy_delete(policy=policy, actor=Actor.of_request(request))
    except ApplicationError as exc:
        messages.error(request, f"Policy of {policy.tool_name} not deleted: {exc.message}")
        return render_page(request, access, status=exc.status_code)
    messages.success(
        request, f"Deleted the policy of {policy.tool_name}; the rule set alone decides its calls now."
    )
    return _tool_policies_page(access)
