from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from tenancy.models import Team


class DecisionRecord(models.Model):
    """One governed tool call and what was decided. Written before the answer is sent; never edited.

    Deliberately no foreign keys besides the team: a record must outlive the API key that
    made the call and the approval it raised, and FK checks would cost every insert on the
    hot path. ``approval_id`` and ``api_key_id`` are copies of those ids.
    """

    class Outcome(models.TextChoices):
        ALLOW = "allow", "Allow"
        DENY = "deny", "Deny"
        REQUIRE_APPROVAL = "require_approval", "Require approval"

    class Enforcement(models.TextChoices):
        STRICT = "strict", "Strict"
        LOG = "log", "Log only"
        SHADOW = "shadow", "Shadow"

    class Source(models.TextChoices):
        SERVER = "server", "Server (validate)"
        CLIENT = "client", "Client (SDK local decision)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No separate index: every index below starts with team.
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="decisions", db_index=False)
    tool_name = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    decision = models.CharField(max_length=20, choices=Outcome.choices)
    rule_id = models.CharField(max_length=200, blank=True)
    rule_name = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    severity = models.CharField(max_length=16, blank=True)
    mode = models.CharField(max_length=32, default="deterministic")
    # The rule-set version's operating mode. Under log and shadow the row keeps the real
    # decision while the caller was answered allow: the record shows what strict would do.
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.STRICT)
    source = models.CharField(max_length=8, choices=Source.choices)
    latency_ms = models.FloatField(default=0.0)
    rule_set_version = models.PositiveIntegerField(null=True, blank=True)
    approval_id = models.UUIDField(null=True, blank=True)
    api_key_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="decision_team_time"),
            models.Index(fields=["team", "tool_name", "-created_at"], name="decision_team_tool_time"),
            models.Index(fields=["team", "decision", "-created_at"], name="decision_team_outcome_time"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}: {self.decision}"
