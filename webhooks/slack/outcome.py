"""What a Slack message says once its approval is decided: the approval message of the
``slack`` format with its buttons replaced by the outcome (webhooks.formats.slack), built from
the approval as it now stands by the same builder the endpoint's dispatch uses."""

from __future__ import annotations

from typing import Any

from approvals.models import Approval
from webhooks.approval_messages import approval_end_message
from webhooks.formats import slack
from webhooks.models import WebhookEvent


def approval_outcome_message(approval: Approval) -> dict[str, Any]:
    """The Slack message (``text`` + ``blocks``) that replaces one carrying ``approval``'s buttons."""
    expired = approval.status == Approval.Status.EXPIRED
    message = approval_end_message(
        approval,
        team=approval.team,
        webhook_event=WebhookEvent.APPROVAL_EXPIRED if expired else WebhookEvent.APPROVAL_RESOLVED,
        occurred_at=approval.resolved_at or approval.created_at,
    )
    return slack.outcome_message(message)


def ephemeral_message(text: str) -> dict[str, Any]:
    return {"text": text}
