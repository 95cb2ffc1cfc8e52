"""Writes for approvals. Resolution, quorum and the browser queue arrive with the approvals issue."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from approvals.models import Approval
from policies.engine import Decision

logger = logging.getLogger(__name__)


def approval_build_for_decision(
    *,
    team_id: uuid.UUID,
    team_default_timeout_seconds: int | None,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    decision: Decision,
    now: datetime,
) -> Approval:
    """An unsaved pending approval for a require_approval decision; the decision writer saves it
    in the same transaction as the decision that raised it."""
    timeout = (
        decision.approval_timeout_seconds
        or team_default_timeout_seconds
        or settings.DEFAULT_APPROVAL_TIMEOUT_SECONDS
    )
    return Approval(
        id=uuid.uuid4(),
        team_id=team_id,
        tool_name=tool_name,
        arguments=arguments,
        context=context,
        rule_id=decision.rule_id or "",
        rule_name=decision.rule_name or "",
        reason=decision.reason or "",
        severity=decision.severity or "",
        approver_groups=list(decision.approvers),
        status=Approval.Status.PENDING,
        expires_at=now + timedelta(seconds=timeout),
        created_at=now,
    )


def approvals_expire_due(*, now: datetime | None = None) -> int:
    """Expire every pending approval past its deadline; returns how many changed.

    One conditional UPDATE: an approval resolved concurrently is no longer 'pending' and is
    left alone, so expiry and resolution can never both win.
    """
    now = now or timezone.now()
    expired = Approval.objects.filter(status=Approval.Status.PENDING, expires_at__lte=now).update(
        status=Approval.Status.EXPIRED, resolved_at=now, resolved_by="system:timeout"
    )
    if expired:
        logger.info("approval.expired count=%d", expired)
    return expired
