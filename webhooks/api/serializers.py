"""Input and output of /v1/webhooks. Field names are the issue's (snake_case, as the endpoint's
settings are named there); unknown fields are refused, so a misspelt ``min_severty`` is a 400,
not a setting silently left at its default."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from common.api import iso
from webhooks import services
from webhooks.models import SEVERITY_ORDER, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.selectors import DELIVERIES_LISTED_DEFAULT, DELIVERIES_LISTED_MAX, slack_interactivity_url


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (named in the error)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["unknown field"]})
        return super().to_internal_value(data)


class EndpointInput(StrictSerializer):
    """Create (POST) and replace (PUT): everything but ``name``, ``url`` and ``events`` has a
    default; a PagerDuty endpoint needs ``routing_key`` and may leave ``url`` out."""

    name = serializers.CharField(max_length=services.NAME_MAX)
    url = serializers.CharField(
        max_length=services.URL_MAX,
        required=False,
        allow_blank=True,
        help_text=(
            "http(s)://... for every format; syslog+udp://host:port or syslog+tcp://host:port for cef. "
            f"pagerduty defaults to {services.PAGERDUTY_EVENTS_URL}."
        ),
    )
    format = serializers.ChoiceField(
        choices=WebhookEndpoint.Format.values, default=WebhookEndpoint.Format.GENERIC
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.values), allow_empty=False, max_length=20
    )
    min_severity = serializers.ChoiceField(choices=list(SEVERITY_ORDER), default="info")
    enabled = serializers.BooleanField(default=True)
    routing_key = serializers.CharField(
        max_length=services.ROUTING_KEY_MAX, required=False, allow_blank=True, default=""
    )
    # Slack only. The two credentials are write-only: left out, they keep their value (a PUT
    # too); "" clears one.
    slack_signing_secret = serializers.CharField(
        max_length=services.SLACK_SECRET_MAX,
        required=False,
        allow_blank=True,
        help_text="The Slack app's signing secret: checks the Approve / Deny presses. Write-only.",
    )
    slack_bot_token = serializers.CharField(
        max_length=services.SLACK_TOKEN_MAX,
        required=False,
        allow_blank=True,
        help_text="xoxb-...: posts with chat.postMessage (with slack_channel) and retires buttons. Write-only.",
    )
    slack_channel = serializers.CharField(
        max_length=services.SLACK_CHANNEL_MAX, required=False, allow_blank=True, default=""
    )


class EndpointPatch(StrictSerializer):
    """Update (PATCH): only the fields given change."""

    name = serializers.CharField(max_length=services.NAME_MAX, required=False)
    url = serializers.CharField(max_length=services.URL_MAX, required=False, allow_blank=True)
    format = serializers.ChoiceField(choices=WebhookEndpoint.Format.values, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.values),
        allow_empty=False,
        max_length=20,
        required=False,
    )
    min_severity = serializers.ChoiceField(choices=list(SEVERITY_ORDER), required=False)
    enabled = serializers.BooleanField(required=False)
    routing_key = serializers.CharField(max_length=services.ROUTING_KEY_MAX, required=False, allow_blank=True)
    slack_signing_secret = serializers.CharField(
        max_length=services.SLACK_SECRET_MAX, required=False, allow_blank=True
    )
    slack_bot_token = serializers.CharField(
        max_length=services.SLACK_TOKEN_MAX, required=False, allow_blank=True
    )
    slack_channel = serializers.CharField(
        max_length=services.SLACK_CHANNEL_MAX, required=False, allow_blank=True
    )


class RotateInput(StrictSerializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0,
        max_value=int(services.ROTATION_OVERLAP_MAX.total_seconds()),
        default=int(services.ROTATION_OVERLAP_DEFAULT.total_seconds()),
        help_text="How long the old secret keeps signing (both signatures are sent meanwhile).",
    )


class TestInput(StrictSerializer):
    event = serializers.ChoiceField(
        choices=WebhookEvent.values, required=False, help_text="Default: the endpoint's first event."
    )


class DeliveryListQuery(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=DELIVERIES_LISTED_MAX, default=DELIVERIES_LISTED_DEFAULT, required=False
    )
    before = serializers.UUIDField(required=False, help_text="A delivery's id: the ones older than it.")


# --- output ----------------------------------------------------------------------------------


def endpoint_output(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as every answer shows it: never its secret (create and rotate add it once)."""
    return {
        "id": str(endpoint.id),
        "name": endpoint.name,
        "url": endpoint.url,
        "format": endpoint.format,
        "events": list(endpoint.events),
        "min_severity": endpoint.min_severity,
        "enabled": endpoint.enabled,
        "routing_key": endpoint.routing_key or None,
        "slack_channel": endpoint.slack_channel or None,
        "slack_signing_secret_set": bool(endpoint.slack_signing_secret),
        "slack_bot_token_set": bool(endpoint.slack_bot_token),
        "slack_interactivity_url": slack_interactivity_url(endpoint=endpoint),
        "disabled_reason": endpoint.disabled_reason or None,
        "failing_since": iso(endpoint.failing_since),
        "created_at": iso(endpoint.created_at),
    }


def attempt_output(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": iso(attempt.started_at),
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error or None,
        "response_snippet": attempt.response_snippet,
        "next_attempt_at": iso(attempt.next_attempt_at),
        "manual": attempt.manual,
    }


def delivery_output(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "severity": delivery.severity,
        "test": bool(delivery.message.get("test", False)),
        "status": delivery.status,
        "attempt_count": delivery.attempt_count,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
        "attempts": [attempt_output(a) for a in delivery.attempts.all()],
    }


# The schemas of the dicts above (documentation: the views build dicts).


class EndpointOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    url = serializers.CharField()
    format = serializers.ChoiceField(choices=WebhookEndpoint.Format.values)
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.values))
    min_severity = serializers.ChoiceField(choices=list(SEVERITY_ORDER))
    enabled = serializers.BooleanField()
    routing_key = serializers.CharField(allow_null=True)
    slack_channel = serializers.CharField(allow_null=True)
    slack_signing_secret_set = serializers.BooleanField()
    slack_bot_token_set = serializers.BooleanField()
    slack_interactivity_url = serializers.CharField(
        allow_null=True, help_text="Slack only: the Request URL to paste into the Slack app's Interactivity."
    )
    disabled_reason = serializers.ChoiceField(
        choices=[c for c in WebhookEndpoint.DisabledReason.values if c],
        allow_null=True,
        help_text="Why the engine disabled it: gone (the receiver answered 410), failing (every attempt failed for 5 days).",
    )
    failing_since = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class EndpointWithSecretOutput(EndpointOutput):
    secret = serializers.CharField(help_text="whsec_...: shown this once, never again.")


class RotatedOutput(serializers.Serializer):
    id = serializers.UUIDField()
    secret = serializers.CharField(help_text="The new whsec_... secret: shown this once.")
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


class AttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField()
    error = serializers.CharField(allow_null=True)
    response_snippet = serializers.CharField(allow_blank=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    manual = serializers.BooleanField()


class DeliveryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    webhook_id = serializers.CharField(help_text="The webhook-id header: the same on every attempt.")
    event = serializers.ChoiceField(choices=WebhookEvent.values)
    severity = serializers.CharField()
    test = serializers.BooleanField()
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.values)
    attempt_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    attempts = AttemptOutput(many=True)
