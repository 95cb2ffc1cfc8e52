from __future__ import annotations

import uuid

from django.conf import settings
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
    # The decision row that raised this approval (audit.DecisionRecord; no FK, see audit).
    decision_id = models.UUIDField(null=True, blank=True)
    # Approver-group slugs of the team, copied from the rule when the approval was raised
    # (replaced by ``escalate_to`` if it is escalated).
    approver_groups = models.JSONField(default=list)
    # Distinct eligible people who must approve; one eligible deny denies at once.
    min_approvals = models.PositiveSmallIntegerField(default=1)
    # Groups that take over, once, when the deadline passes undecided (empty: expire, SDK denies).
    escalate_to = models.JSONField(default=list)
    escalated_at = models.DateTimeField(null=True, blank=True)
    # The deadline's length, so an escalation can grant the next group as long.
    timeout_seconds = models.PositiveIntegerField(default=3600)
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
            # The lists at 100,000 pending (migration 0004, benchmarks/scale_10m.py): newest first,
            # by tool, the decided ones by resolution, the pending ones per team by deadline.
            models.Index(fields=["team", "-created_at"], name="approval_team_time"),
            models.Index(fields=["team", "tool_name", "-created_at"], name="approval_team_tool_time"),
            models.Index(
                fields=["team", "-resolved_at"], condition=~Q(status="pending"), name="approval_team_resolved"
            ),
            models.Index(
                fields=["team", "expires_at"], condition=Q(status="pending"), name="approval_pending_team"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(min_approvals__gte=1), name="approval_needs_one_approval"),
            models.CheckConstraint(
                condition=Q(status="pending", resolved_at__isnull=True)
                | (~Q(status="pending") & Q(resolved_at__isnull=False)),
                name="approval_resolved_at_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"


class ApprovalVote(models.Model):
    """One person's approval towards the quorum. Unique per person: the same approver twice
    is still one approval."""

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["approval", "user"], name="approval_vote_once_per_person")
        ]

    def __str__(self) -> str:
        return f"{self.approval_id}: approved by {self.user_id}"


class ApprovalEvent(models.Model):
    """The approval's trail: every action on it, refused ones included. Appended, never edited;
    names are copied so the trail still reads after a user is gone."""

    class Action(models.TextChoices):
        APPROVE = "approve", "Approved (vote)"
        DENY = "deny", "Denied"
        APPROVED = "approved", "Quorum reached: approved"
        EXPIRED = "expired", "Expired"
        ESCALATED = "escalated", "Escalated"
        REFUSED = "refused", "Refused (not allowed to decide)"

    class Channel(models.TextChoices):
        WEB = "web", "Browser"
        API = "api", "API"
        SLACK = "slack", "Slack"  # a button on a Slack message (webhooks/slack)
        SYSTEM = "system", "System"

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=200)
    comment = models.TextField(blank=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["approval", "created_at"], name="approval_event_trail")]

    def __str__(self) -> str:
        return f"{self.approval_id}: {self.action} by {self.actor_name}"
