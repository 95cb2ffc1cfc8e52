"""Reads of a team's webhook endpoints and their delivery log. Another team's endpoint or
delivery is not found (a 404), as an unknown one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Min, Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from common.errors import NotFound
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSecret

# The most deliveries one answer lists (the API's ?limit=, the page's log).
DELIVERIES_LISTED_MAX = 200
DELIVERIES_LISTED_DEFAULT = 50


def endpoints_of_team(*, team_id: uuid.UUID) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(team_id=team_id).select_related("team").order_by("created_at", "id")


def endpoint_get_for_team(*, team_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = endpoints_of_team(team_id=team_id).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("webhook endpoint not found")
    return endpoint


def delivery_get_for_endpoint(*, endpoint: WebhookEndpoint, delivery_id: uuid.UUID) -> WebhookDelivery:
    delivery = (
        WebhookDelivery.objects.filter(endpoint=endpoint, pk=delivery_id)
        .select_related("endpoint__team")
        .first()
    )
    if delivery is None:
        raise NotFound("delivery not found")
    return delivery


def deliveries_of_endpoint(
    *, endpoint: WebhookEndpoint, limit: int = DELIVERIES_LISTED_DEFAULT, before: uuid.UUID | None = None
) -> list[WebhookDelivery]:
    """The newest ``limit`` deliveries, each with its attempts (oldest first), in two queries;
    ``before``: those older than that delivery of the endpoint (the next page)."""
    queryset = WebhookDelivery.objects.filter(endpoint=endpoint)
    if before is not None:
        anchor = queryset.filter(pk=before).values_list("created_at", flat=True).first()
        if anchor is None:
            raise NotFound("delivery not found (before)")
        # The list's own order (-created_at, -id) as a keyset: ties on the time go by id.
        queryset = queryset.filter(Q(created_at__lt=anchor) | Q(created_at=anchor, id__lt=before))
    attempts = WebhookAttempt.objects.order_by("number")
    return list(
        queryset.order_by("-created_at", "-id").prefetch_related(Prefetch("attempts", queryset=attempts))[
            :limit
        ]
    )


def live_secrets_of(*, endpoint: WebhookEndpoint) -> list[WebhookSecret]:
    """The secrets that sign now: the current one, and any rotated out whose overlap runs."""
    now = timezone.now()
    return list(
        WebhookSecret.objects.filter(endpoint=endpoint)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("created_at", "id")
    )


def slack_interactivity_url(*, endpoint: WebhookEndpoint) -> str | None:
    """Where a Slack endpoint's app sends button presses (its "Request URL"); None for others."""
    if endpoint.format != WebhookEndpoint.Format.SLACK:
        return None
    return settings.VETO_PUBLIC_URL + reverse("slack-interactivity", args=[endpoint.id])


@dataclass(frozen=True)
class DeliveryBacklog:
    """What /metrics reports of the outbox, all teams together."""

    due: int  # pending deliveries whose time has come and that no worker holds
    oldest_due_seconds: float  # how late the most overdue of them is (0 when none is due)
    endpoints_failing: int  # enabled endpoints whose last attempts failed (failing_since set)


def delivery_backlog(*, now: datetime | None = None) -> DeliveryBacklog:
    """Read on the ``webhook_delivery_due`` index (status, next_attempt_at). A delivery a worker
    has claimed has its ``next_attempt_at`` pushed a lease ahead, so in-flight sends are not due."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
    oldest = due.aggregate(oldest=Min("next_attempt_at"))["oldest"]
    return DeliveryBacklog(
        due=due.count(),
        oldest_due_seconds=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
        endpoints_failing=WebhookEndpoint.objects.filter(enabled=True, failing_since__isnull=False).count(),
    )
