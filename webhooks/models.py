"""A team's webhook endpoints, their signing secrets, and what was (or is to be) delivered.

Delivery state is rows, not tasks: a delivery is due when ``next_attempt_at`` has passed, and a
periodic sweep sends whatever a lost task left behind, so a broker or worker outage only delays.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from tenancy.models import Team

# The SDK's severities (policies/engine/document.py SEVERITIES), lowest first: an endpoint
# receives events of its ``min_severity`` and above.
SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")


class WebhookEvent(models.TextChoices):
    """What an endpoint may subscribe to (issue 13). Each is derived from one event of the
    team's order (common.events): a decision's outcome, an approval's end, a publish."""

    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"
    BUDGET_EXCEEDED = "budget_exceeded"  # a rate limit or budget rule tripping
    APPROVAL_RESOLVED = "approval.resolved"
    APPROVAL_EXPIRED = "approval.expired"
    POLICY_PUBLISHED = "policy.published"
    WEBHOOK_FAILED = "webhook.failed"  # an endpoint disabled after failing (to the others)


# The values alone, as the API's choice fields take them (named once in the OpenAPI schema:
# SPECTACULAR_SETTINGS ENUM_NAME_OVERRIDES).
WEBHOOK_EVENT_VALUES = list(WebhookEvent.values)


class WebhookEndpoint(models.Model):
    class Format(models.TextChoices):
        GENERIC = "generic"  # JSON signed per Standard Webhooks
        SLACK = "slack"  # Block Kit
        PAGERDUTY = "pagerduty"  # Events API v2
        CEF = "cef"  # one CEF line: HTTP POST, or syslog (syslog+udp:// / syslog+tcp:// urls)

    class Severity(models.TextChoices):
        INFO = "info"
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"
        CRITICAL = "critical"

    class DisabledReason(models.TextChoices):
        NONE = "", "enabled or disabled by hand"
        GONE = "gone", "the receiver answered 410 Gone"
        FAILING = "failing", "every attempt failed for the failure window (5 days)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhook_endpoints")
    name = models.CharField(max_length=200)
    url = models.CharField(max_length=2000)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.GENERIC)
    # A list of WebhookEvent values.
    events = models.JSONField(default=list)
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    enabled = models.BooleanField(default=True)
    # PagerDuty's integration key (Events API v2 ``routing_key``); blank for other formats.
    routing_key = models.CharField(max_length=64, blank=True, default="")
    # Slack (format slack), all optional. The app's signing secret checks the Approve / Deny
    # presses at /slack/interactivity/<endpoint id>/ (without it the buttons are refused); a bot
    # token (xoxb-) reads the presser's e-mail (users.info, to find the member) and lets a
    # message's buttons be replaced by the outcome when the approval is decided anywhere; with a
    # channel too, messages are posted with chat.postMessage instead of to ``url``.
    slack_signing_secret = models.CharField(max_length=200, blank=True, default="")
    slack_bot_token = models.CharField(max_length=200, blank=True, default="")
    slack_channel = models.CharField(max_length=100, blank=True, default="")
    disabled_reason = models.CharField(max_length=16, choices=DisabledReason.choices, blank=True, default="")
    # The first failed attempt since the last success (None when the last attempt succeeded):
    # an endpoint failing every attempt for the failure window is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    # The cursors: the last sequence of each of the team's streams (audit.models.ChainStream)
    # already turned into deliveries for this endpoint. Set to the streams' heads when the
    # endpoint is created (it receives what happens from then on), advanced under a row lock.
    decisions_cursor = models.BigIntegerField(default=0)
    events_cursor = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["team", "enabled"], name="webhook_endpoint_team")]

    def __str__(self) -> str:
        return f"{self.name} ({self.format}) of {self.team_id}"


class WebhookSecret(models.Model):
    """A signing secret, ``whsec_`` + base64 of 24-64 random bytes (Standard Webhooks). While
    more than one is live (a rotation's overlap), every delivery carries a signature by each."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="secrets")
    secret = models.CharField(max_length=120)
    created_at = models.DateTimeField(default=timezone.now)
    # None: current. A rotated-out secret keeps signing until then.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:  # never the secret itself
        return f"secret of {self.endpoint_id} from {self.created_at:%Y-%m-%d}"


class WebhookDelivery(models.Model):
    """One message to one endpoint. Its ``id`` gives the ``webhook-id`` header, the same on
    every attempt and a hand re-send, so a receiver can deduplicate."""

    class Status(models.TextChoices):
        PENDING = "pending"  # due at next_attempt_at
        DELIVERED = "delivered"  # a 2xx answer
        FAILED = "failed"  # the schedule ran out, or the receiver refused for good (400, 410)
        CANCELLED = "cancelled"  # the endpoint was disabled or deleted before it succeeded

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    # Where it comes from: "<stream>:<sequence>:<event>" for an event of the team's order (so a
    # dispatch that runs twice cannot make two), "test:<uuid>" for a test send.
    source_key = models.CharField(max_length=200)
    severity = models.CharField(max_length=16, default="info")
    # The message as built at dispatch time (webhooks.messages.WebhookMessage.as_json): every
    # attempt renders the same content.
    message = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "source_key"], name="webhook_delivery_once"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint_id} ({self.status})"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class WebhookAttempt(models.Model):
    """One try of a delivery: the delivery log the API and the settings page show."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    latency_ms = models.FloatField(default=0.0)
    # None when no HTTP answer came (refused, timed out, blocked by the SSRF guard).
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    # The start of the answer's body, capped (RESPONSE_SNIPPET_MAX characters).
    response_snippet = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    manual = models.BooleanField(default=False)  # a re-send by hand

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"


RESPONSE_SNIPPET_MAX = 1024


class SlackMessage(models.Model):
    """A Slack message that carries an approval's buttons, known by its channel and ``ts``
    (from chat.postMessage, or from a press on it), so that once the approval is decided
    anywhere, or expires, its buttons are replaced by the outcome (chat.update with the bot
    token, else the press's ``response_url`` while Slack still takes it)."""

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="slack_messages")
    approval_id = models.UUIDField()
    channel = models.CharField(max_length=100)
    ts = models.CharField(max_length=40)
    response_url = models.CharField(max_length=2000, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # When its buttons were replaced by the outcome (None: still showing them, as far as we know).
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "channel", "ts"], name="slack_message_once"),
        ]
        indexes = [models.Index(fields=["approval_id"], name="slack_message_approval")]

    def __str__(self) -> str:
        return f"Slack message {self.channel}/{self.ts} for approval {self.approval_id}"
