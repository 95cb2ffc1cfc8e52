"""What a Slack message says once its approval is decided: the approval message of the
``slack`` format with its buttons replaced by the outcome (webhooks.formats.slack), built from
the approval as it now stands."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from approvals.models import Approval
from webhooks.formats import slack
from webhooks.messages import ApprovalFacts, WebhookMessage
from webhooks.models import WebhookEvent

_EVENT_OF_STATUS: dict[str, WebhookEvent] = {
    Approval.Status.APPROVED.value: WebhookEvent.APPROVAL_RESOLVED,
    Approval.Status.DENIED.value: WebhookEvent.APPROVAL_RESOLVED,
    Approval.Status.EXPIRED.value: WebhookEvent.APPROVAL_EXPIRED,
}


def approval_outcome_message(approval: Approval) -> dict[str, Any]:
    """The Slack message (``text`` + ``blocks``) that replaces one carrying ``approval``'s buttons."""
    team = approval.team
    status = str(approval.status)
    link = settings.VETO_PUBLIC_URL + reverse("approvals:detail", args=[approval.pk])
    message = WebhookMessage(
        event=str(_EVENT_OF_STATUS.get(str(approval.status), WebhookEvent.REQUIRE_APPROVAL)),
        severity=approval.severity or "medium",
        occurred_at=approval.resolved_at or approval.created_at,
        team_slug=team.slug,
        team_name=team.name,
        summary=f"{approval.tool_name}: {status}"
        + (f" by {approval.resolved_by}" if approval.resolved_by else ""),
        links={"approval": link},
        approval=ApprovalFacts(
            approval_id=str(approval.pk),
            status=status,
            tool_name=approval.tool_name,
            rule_name=approval.rule_name,
            decided_by=approval.resolved_by,
            decided_at=approval.resolved_at,
            expires_at=approval.expires_at,
        ),
    )
    return slack.outcome_message(message)


def ephemeral_message(text: str) -> dict[str, Any]:
    return {"text": text}
