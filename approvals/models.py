from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenancy.models import Team


class Approval(models.Model):
    """A tool call waiting for a human; raised by validate when a rule says require_approval."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="approvals")
    tool_name = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    rule_id = models.CharField(max_length=200, blank=True)
    rule_name = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    severity = models.CharField(max_length=16, blank=True)
    # Approver-group slugs of the team, copied from the rule when the approval was raised.
    approver_groups = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField()
    resolved_by = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The expiry sweep: pending approvals in deadline order.
            models.Index(
                fields=["expires_at"], condition=Q(status="pending"), name="approval_pending_expiry"
            ),
            models.Index(fields=["team", "status", "created_at"], name="approval_team_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="pending", resolved_at__isnull=True)
                | (~Q(status="pending") & Q(resolved_at__isnull=False)),
                name="approval_resolved_at_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"
