from __future__ import annotations

from typing import Any

from approvals.models import Approval
from common.api import iso


def approval_output(approval: Approval) -> dict[str, Any]:
    """The shape ``VetoCloudClient.poll_approval`` and ``VetoAdmin.getApproval`` read."""
    return {
        "_id": str(approval.id),
        "id": str(approval.id),
        "projectId": str(approval.team_id),
        "status": approval.status,
        "toolName": approval.tool_name,
        "arguments": approval.arguments,
        "ruleId": approval.rule_id or None,
        "ruleName": approval.rule_name or None,
        "reason": approval.reason or None,
        "severity": approval.severity or None,
        "approverGroups": approval.approver_groups,
        "expiresAt": iso(approval.expires_at),
        "resolvedBy": approval.resolved_by or None,
        "resolvedAt": iso(approval.resolved_at),
        "createdAt": iso(approval.created_at),
    }
