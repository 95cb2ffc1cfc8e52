"""What each chain entry announces (common.events): built the same way when it is published and
when a consumer resumes from the chain (``audit.selectors.team_events_after``), so a resumed
event equals the one that was missed.

One entry, one event; a decision that raised an approval also announces ``approval.created``
at its sequence. Only ids and small enum-like values travel: never a call's arguments or
context, nor a trail entry's comments.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from audit.models import AuditEvent, ChainStream
from common.events import Event, EventType

# The governance trail's approval actions (``details["action"]`` of an ``approval.action`` entry,
# as approvals.models.ApprovalEvent.Action spells them) and the event each is.
APPROVAL_ACTION_EVENTS: dict[str, EventType] = {
    "approve": EventType.APPROVAL_VOTED,
    "approved": EventType.APPROVAL_RESOLVED,
    "deny": EventType.APPROVAL_RESOLVED,
    "expired": EventType.APPROVAL_EXPIRED,
    "escalated": EventType.APPROVAL_ESCALATED,
    "refused": EventType.APPROVAL_REFUSED,
}
_RESOLVED_STATUS = {"approved": "approved", "deny": "denied"}


def decision_events(row: Mapping[str, Any]) -> list[Event]:
    """The events of a committed decision row (its ``sequence`` assigned): ``decision.created``,
    and ``approval.created`` when it raised one."""
    team_id = row["team_id"]
    sequence = row["sequence"]
    occurred_at = row["created_at"]
    decision_id = str(row["id"])
    approval_id = row.get("approval_id")
    decision = Event(
        EventType.DECISION_CREATED,
        team_id,
        ChainStream.DECISIONS.value,
        sequence,
        occurred_at,
        {
            "decision_id": decision_id,
            "decision": row["decision"],
            "approval_id": str(approval_id) if approval_id else None,
        },
    )
    if not approval_id:
        return [decision]
    approval = Event(
        EventType.APPROVAL_CREATED,
        team_id,
        ChainStream.DECISIONS.value,
        sequence,
        occurred_at,
        {"approval_id": str(approval_id), "decision_id": decision_id},
    )
    return [decision, approval]


def trail_event(
    *, team_id: uuid.UUID, sequence: int, kind: str, details: Mapping[str, Any], occurred_at: datetime
) -> Event:
    """The event of one governance-trail entry (``events`` stream)."""
    data: dict[str, str | int | bool | None]
    if kind == AuditEvent.Kind.APPROVAL_ACTION:
        action = str(details.get("action"))
        event_type = APPROVAL_ACTION_EVENTS[action]
        data = {"approval_id": details.get("approval_id"), "action": action}
        if action in _RESOLVED_STATUS:
            data["status"] = _RESOLVED_STATUS[action]
    elif kind == AuditEvent.Kind.RULE_SET_PUBLISHED:
        event_type = EventType.POLICY_PUBLISHED
        data = {"version": details.get("version"), "publication": details.get("publication")}
    elif kind == AuditEvent.Kind.TOOL_POLICY_CHANGED:
        event_type = EventType.TOOL_POLICY_CHANGED
        data = {
            "tool_name": details.get("tool"),
            "change": details.get("change"),
            "version": details.get("version"),
        }
    elif kind == AuditEvent.Kind.TEAM_CHANGED:
        # ``user_id`` (a string, as the live path compares it) names the person whose membership,
        # role, groups or keys changed; None for a change of the whole team (its options, a group).
        event_type = EventType.TEAM_CHANGED
        user_id = details.get("user_id")
        data = {"change": details.get("change"), "user_id": None if user_id is None else str(user_id)}
    elif kind == AuditEvent.Kind.WEBHOOK_FAILED:
        event_type = EventType.WEBHOOK_FAILED
        data = {"endpoint_id": details.get("endpoint_id"), "reason": details.get("reason")}
    else:
        raise ValueError(f"no event for a trail entry of kind {kind!r}")
    return Event(event_type, team_id, ChainStream.EVENTS.value, sequence, occurred_at, data)
