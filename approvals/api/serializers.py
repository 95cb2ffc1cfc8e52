from __future__ import annotations

from typing import Any

from rest_framework import serializers

from approvals.forms import MAX_COMMENT_CHARS
from approvals.models import Approval, ApprovalEvent
from approvals.selectors import RAISED, TrailEntry
from common.api import iso


def approval_output(approval: Approval) -> dict[str, Any]:
    """The shape ``VetoCloudClient.poll_approval`` and ``VetoAdmin.getApproval`` read, plus the rest."""
    return {
        "_id": str(approval.id),
        "id": str(approval.id),
        "projectId": str(approval.team_id),
        "status": approval.status,
        "toolName": approval.tool_name,
        "arguments": approval.arguments,
        "context": approval.context,
        "decisionId": str(approval.decision_id) if approval.decision_id else None,
        "ruleId": approval.rule_id or None,
        "ruleName": approval.rule_name or None,
        "reason": approval.reason or None,
        "severity": approval.severity or None,
        "approverGroups": approval.approver_groups,
        "minApprovals": approval.min_approvals,
        "escalateTo": approval.escalate_to,
        "escalatedAt": iso(approval.escalated_at),
        "expiresAt": iso(approval.expires_at),
        "resolvedBy": approval.resolved_by or None,
        "resolvedAt": iso(approval.resolved_at),
        "resolutionComment": approval.resolution_comment or None,
        "createdAt": iso(approval.created_at),
    }


def trail_entry_output(entry: TrailEntry) -> dict[str, Any]:
    """One line of ``GET /v1/approvals/{id}/trail``: who did what, through which channel, when."""
    return {
        "action": entry.action,
        "actor": entry.actor,
        "comment": entry.comment or None,
        "channel": entry.channel,
        "createdAt": iso(entry.created_at),
    }


# What a trail line can say happened (the raise, then ApprovalEvent's actions).
TRAIL_ACTIONS = [RAISED, *ApprovalEvent.Action.values]


class TrailEntryOutput(serializers.Serializer):
    """The schema of ``trail_entry_output`` (documentation only: the view builds dicts)."""

    action = serializers.ChoiceField(choices=TRAIL_ACTIONS)
    actor = serializers.CharField()
    comment = serializers.CharField(allow_null=True)
    channel = serializers.ChoiceField(choices=ApprovalEvent.Channel.values)
    createdAt = serializers.DateTimeField()


# The most approvals one answer lists (GET /v1/approvals?limit=, GET /v1/approvals/pending).
APPROVALS_LISTED_MAX = 500


class ApprovalListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=Approval.Status.choices, required=False)
    toolName = serializers.CharField(required=False, max_length=200)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=APPROVALS_LISTED_MAX, default=100)


class ResolveInput(serializers.Serializer):
    action = serializers.ChoiceField(choices=["approve", "deny"])
    # A personal key resolves as its owner: this may be left out, and when given must name them
    # (username or e-mail; VetoAdmin always sends it).
    resolvedBy = serializers.CharField(max_length=200, required=False)
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_COMMENT_CHARS, default=""
    )


class BatchResolveItem(ResolveInput):
    id = serializers.CharField(max_length=64)


class BatchResolveInput(serializers.Serializer):
    # The stubs omit max_length for many=True; DRF hands it to the ListSerializer it builds.
    approvals = BatchResolveItem(many=True, allow_empty=False, max_length=100)  # type: ignore[call-arg]
