"""The message of an approval's end (resolved or expired), built from the approval row: what the
endpoint's dispatch sends for ``approval.resolved`` / ``approval.expired`` and what a Slack
message shows once its buttons are retired (webhooks/slack/outcome.py). One builder, so both
say the same thing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import reverse

from approvals.models import Approval
from policies.engine.document import DEFAULT_SEVERITY
from tenancy.models import Team
from webhooks.messages import ApprovalFacts, WebhookMessage
from webhooks.models import WebhookEvent


def dashboard_link(name: str, **kwargs: Any) -> str:
    """An absolute link into the dashboard, as the team's people reach it (VETO_PUBLIC_URL)."""
    return settings.VETO_PUBLIC_URL + reverse(name, kwargs=kwargs)


def approval_end_message(
    approval: Approval, *, team: Team, webhook_event: str, occurred_at: datetime, status: str | None = None
) -> WebhookMessage:
    """``webhook_event`` is APPROVAL_RESOLVED or APPROVAL_EXPIRED; ``status`` the outcome the
    event names (else the row's)."""
    if webhook_event == WebhookEvent.APPROVAL_EXPIRED:
        status = Approval.Status.EXPIRED
        summary = f"Approval expired: {approval.tool_name} in {team.name}"
        decided_by = ""
    else:
        status = str(status or approval.status)
        decided_by = approval.resolved_by
        by = f" by {decided_by}" if decided_by else ""
        summary = f"Approval {status}{by}: {approval.tool_name} in {team.name}"
    links = {"approval": dashboard_link("approvals:detail", approval_id=approval.id)}
    if approval.decision_id:
        links["decision"] = dashboard_link("dashboard:decision", slug=team.slug, decision_id=approval.decision_id)
    return WebhookMessage(
        event=webhook_event,
        severity=approval.severity or DEFAULT_SEVERITY,
        occurred_at=occurred_at,
        team_slug=team.slug,
        team_name=team.name,
        summary=summary,
        links=links,
        approval=ApprovalFacts(
            approval_id=str(approval.id),
            status=status,
            tool_name=approval.tool_name,
            rule_name=approval.rule_name,
            decided_by=decided_by,
            decided_at=approval.resolved_at if status != Approval.Status.EXPIRED else occurred_at,
            expires_at=approval.expires_at,
        ),
    )
