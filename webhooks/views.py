"""The webhook settings pages (Django sessions), under /dashboard/teams/<slug>/settings/webhooks/:
the team's endpoints with their state, a form to add one, and per endpoint its settings, its
secret's rotation, a test send, deletion (confirmed) and its delivery log with re-sends.

Who sees what: the team's admins and staff. Other members get a 403 page saying so (an endpoint's
URL is a credential); anyone else a 404, as for any team page. Every form works without
JavaScript: a change redirects back (POST-redirect-GET) with a message, except the two that show
a new secret, which answer with the page itself (the secret is in no URL, no session, no later
page: shown once) and ``Cache-Control: no-store``. A refusal renders the page with the message
and its status (400, 403, 404, 409), never a 500.

Thin on purpose: reads from ``webhooks.selectors``, writes through ``webhooks.services``, which
check who may and write the trail.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST, require_safe

from common.errors import ApplicationError, InvalidInput
from tenancy.actor import Actor
from tenancy.selectors import TeamAccess
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404
from webhooks import selectors, services
from webhooks.forms import DeleteForm, EndpointForm, NoFields, RotateForm
from webhooks.models import WebhookDelivery, WebhookEndpoint

LOG_SIZE = 50


def endpoint_state(endpoint: WebhookEndpoint) -> tuple[str, str]:
    """(css class, words) for the endpoint's state, saying why it is disabled."""
    if endpoint.enabled:
        if endpoint.failing_since is not None:
            return "status-pending", f"enabled, failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
        return "status-approved", "enabled"
    if endpoint.disabled_reason == WebhookEndpoint.DisabledReason.GONE:
        return "status-denied", "disabled: the receiver answered 410 Gone"
    if endpoint.disabled_reason == WebhookEndpoint.DisabledReason.FAILING:
        window = timedelta(seconds=getattr(settings, "VETO_WEBHOOK_FAILURE_WINDOW_SECONDS", 5 * 86400))
        days = window.total_seconds() / 86400
        span = (
            f"{days:g} day{'s' if days != 1 else ''}" if days >= 1 else f"{window.total_seconds():g} seconds"
        )
        return "status-denied", f"disabled after {span} of failures"
    return "status-denied", "disabled by hand"


def _admin_access(request: AuthenticatedHttpRequest, slug: str) -> TeamAccess:
    access = team_access_or_404(request, slug)
    services.ensure_webhook_manager(team=access.team, actor=Actor.of_request(request))
    return access


def _problem_of(form: Any) -> str:
    field, errors = next(iter(form.errors.items()))
    text = " ".join(str(error) for error in errors)
    return f"{field}: {text}" if field != "__all__" else text


def _list_context(access: TeamAccess, *, form: EndpointForm | None = None) -> dict[str, Any]:
    endpoints = list(selectors.endpoints_of_team(team_id=access.team.id))
    return {
        "team": access.team,
        "access": access,
        "rows": [(e, *endpoint_state(e)) for e in endpoints],
        "form": form or EndpointForm(),
    }


def _detail_context(
    access: TeamAccess, endpoint: WebhookEndpoint, *, form: EndpointForm | None = None, **extra: Any
) -> dict[str, Any]:
    state_class, state = endpoint_state(endpoint)
    return {
        "team": access.team,
        "access": access,
        "endpoint": endpoint,
        "state_class": state_class,
        "state": state,
        "form": form or EndpointForm.of(endpoint),
        "rotate_form": RotateForm(),
        "delete_form": DeleteForm(),
        "live_secrets": len(selectors.live_secrets_of(endpoint=endpoint)),
        "slack_interactivity_url": selectors.slack_interactivity_url(endpoint=endpoint),
        **_log_context(endpoint),
        **extra,
    }


def _log_context(endpoint: WebhookEndpoint) -> dict[str, Any]:
    deliveries = selectors.deliveries_of_endpoint(endpoint=endpoint, limit=LOG_SIZE)
    return {
        "deliveries": deliveries,
        "any_pending": any(d.status == WebhookDelivery.Status.PENDING for d in deliveries),
    }


def _refused(request: AuthenticatedHttpRequest, slug: str, exc: ApplicationError) -> HttpResponse:
    """The refusal as a page: the list (or a bare page, for someone who may not see it)."""
    messages.error(request, f"Nothing changed: {exc.message}")
    access = team_access_or_404(request, slug)
    if not services.may_manage_webhooks(team=access.team, actor=Actor.of_request(request)):
        context = {"team": access.team, "access": access}
        return render(request, "webhooks/refused.html", context, status=exc.status_code)
    return render(request, "webhooks/page.html", _list_context(access), status=exc.status_code)


def _endpoint_url(access: TeamAccess, endpoint_id: uuid.UUID, anchor: str = "") -> str:
    url = reverse("webhooks:detail", args=[access.team.slug, endpoint_id])
    return url + (f"#{anchor}" if anchor else "")


def _endpoint_of(access: TeamAccess, webhook_id: uuid.UUID) -> WebhookEndpoint:
    return selectors.endpoint_get_for_team(team_id=access.team.id, endpoint_id=webhook_id)


@login_required
@require_safe
def page(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The team's endpoints and a form to add one."""
    try:
        access = _admin_access(request, slug)
    except ApplicationError as exc:
        return _refused(request, slug, exc)
    return render(request, "webhooks/page.html", _list_context(access))


@login_required
@require_POST
def create(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    form = EndpointForm(request.POST)
    try:
        access = _admin_access(request, slug)
        if not form.is_valid():
            raise InvalidInput(_problem_of(form))
        created = services.webhook_endpoint_create(
            team=access.team,
            actor=Actor.of_request(request),
            values=form.values(keep_blank_credentials=False),
        )
    except ApplicationError as exc:
        if exc.status_code != 400:
            return _refused(request, slug, exc)
        # Bad input: the form again, as it was filled in, with what is wrong.
        messages.error(request, f"Nothing changed: {exc.message}")
        return render(request, "webhooks/page.html", _list_context(access, form=form), status=400)
    messages.success(request, f"Created the webhook endpoint {created.endpoint.name}.")
    context = _detail_context(access, created.endpoint, new_secret=created.secret)
    response = render(request, "webhooks/detail.html", context, status=201)
    add_never_cache_headers(response)
    return response


@login_required
@require_safe
def detail(request: AuthenticatedHttpRequest, slug: str, webhook_id: uuid.UUID) -> HttpResponse:
    """One endpoint: its settings, secret, test send, deletion and delivery log."""
    try:
        access = _admin_access(request, slug)
        endpoint = _endpoint_of(access, webhook_id)
    except ApplicationError as exc:
        return _refused(request, slug, exc)
    return render(request, "webhooks/detail.html", _detail_context(access, endpoint))


@login_required
@require_safe
def deliveries(request: AuthenticatedHttpRequest, slug: str, webhook_id: uuid.UUID) -> HttpResponse:
    """The delivery log alone: what the endpoint's page reloads while a delivery is pending."""
    try:
        access = _admin_access(request, slug)
        endpoint = _endpoint_of(access, webhook_id)
    except ApplicationError as exc:
        return _refused(request, slug, exc)
    context = {"team": access.team, "endpoint": endpoint, **_log_context(endpoint)}
    return render(request, "webhooks/_deliveries.html", context)


@login_required
@require_POST
def update(request: AuthenticatedHttpRequest, slug: str, webhook_id: uuid.UUID) -> HttpResponse:
    form = EndpointForm(request.POST)
    try:
        access = _admin_access(request, slug)
        endpoint = _endpoint_of(access, webhook_id)
        if not form.is_valid():
            raise InvalidInput(_problem_of(form))
        updated = services.webhook_endpoint_update(
            endpoint=endpoint,
            actor=Actor.of_request(request),
            changes=form.values(keep_blank_credentials=True),
        )
    except ApplicationError as exc:
        if exc.status_code != 400:
            return _refused(request, slug, exc)
        messages.error(request, f"Nothing changed: {exc.message}")
        return render(
            request, "webhooks/detail.html", _detail_context(access, endpoint, form=form), status=400
        )
    messages.success(request, f"Saved {updated.name}.")
    return redirect(_endpoint_url(access, updated.id, "settings"))


@login_required
@require_POST
def delete(request: AuthenticatedHttpRequest, slug: str, webhook_id: uuid.UUID) -> HttpResponse:
    form = DeleteForm(request.POST)
    try:
        access = _admin_access(request, slug)
        endpoint = _endpoint_of(access, webhook_id)
        if not form.is_valid():
            raise InvalidInput(
                "tick the box to confirm: the endpoint and its delivery log are deleted for good"
            )
        services.webhook_endpoint_delete(endpoint=endpoint, actor=Actor.of_request(request))
    except ApplicationError as exc:
        if exc.status_code != 400:
            return _refused(request, slug, exc)
        messages.error(request, f"Nothing changed: {exc.message}")
        return render(request, "webhooks/detail.html", _detail_context(access, endpoint), status=400)
    messages.success(request, f"Deleted the webhook endpoint {endpoint.name}.")
    return redirect("webhooks:page", access.team.slug)


@login_required
@require_POST
def rotate_secret(request: AuthenticatedHttpRequest, slug: str, webhook_id: uuid.UUID) -> HttpResponse:
    form = RotateForm(request.POST)
    try:
        access = _admin_access(request, slug)
        endpoint = _endpoint_of(access, webhook_id)
        if not form.is_valid():
            raise InvalidInput(_problem_of(form))
        rotated = services.webhook_secret_rotate(
            endpoint=endpoint,
            actor=Actor.of_request(request),
            overlap=timedelta(hours=form.cleaned_data["overlap_hours"]),
        )
    except ApplicationError as exc:
        return _refused(request, slug, exc)
    if rotated.old_expires_at is not None and form.cleaned_data["overlap_hours"] > 0:
        until = f"the old one keeps signing until {rotated.old_expires_at:%Y-%m-%d %H:%M} UTC"
    else:
        until = "the old one no longer signs"
    messages.success(request, f"New signing secret for {rotated.endpoint.name}: {until}.")
    context = _detail_context(access, rotated.endpoint, new_secret=rotated.secret)
    response = render(request, "webhooks/detail.html", context)
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def test_send(request: AuthenticatedHttpRequest, slug: str, webhook_id: uuid.UUID) -> HttpResponse:
    try:
        access = _admin_access(request, slug)
        endpoint = _endpoint_of(access, webhook_id)
        delivery = services.webhook_test_send(endpoint=endpoint, actor=Actor.of_request(request))
    except ApplicationError as exc:
        return _refused(request, slug, exc)
    messages.success(request, f"Sent a test {delivery.event} message to {endpoint.name}: see the log below.")
    return redirect(_endpoint_url(access, endpoint.id, "deliveries"))


@login_required
@require_POST
def resend(
    request: AuthenticatedHttpRequest, slug: str, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> HttpResponse:
    NoFields(request.POST)
    try:
        access = _admin_access(request, slug)
        endpoint = _endpoint_of(access, webhook_id)
        delivery = selectors.delivery_get_for_endpoint(endpoint=endpoint, delivery_id=delivery_id)
        services.webhook_delivery_resend(delivery=delivery, actor=Actor.of_request(request))
    except ApplicationError as exc:
        return _refused(request, slug, exc)
    messages.success(request, f"Sending {delivery.webhook_id} again.")
    return redirect(_endpoint_url(access, endpoint.id, f"delivery-{delivery.id}"))
