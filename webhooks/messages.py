"""What a webhook says, before any format shapes it: one ``WebhookMessage`` per event per
endpoint, built once at dispatch from the committed rows and stored on the delivery
(``WebhookDelivery.message``), so every attempt and a hand re-send render the same content.

Pure data: the formats (webhooks/formats/) turn it into a request body; nothing here touches
the database. It carries what a reader of Slack or a SIEM needs (tool, outcome, rule, reason,
team, links), never a call's arguments or context (they may hold the very data a rule
protects).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class DecisionFacts:
    decision_id: str
    tool_name: str
    decision: str  # allow | deny | require_approval
    rule_id: str = ""
    rule_name: str = ""
    reason: str = ""
    agent_id: str = ""
    session_id: str = ""
    model: str = ""
    environment: str = ""
    source: str = ""  # server | client | inline_rules
    # The API key that made the call (its name), when known.
    api_key_name: str = ""


@dataclass(frozen=True, slots=True)
class ApprovalFacts:
    approval_id: str
    status: str  # pending | approved | denied | expired
    tool_name: str = ""
    rule_name: str = ""
    # Who decided it (a person's username), when it is decided by someone.
    decided_by: str = ""
    decided_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PolicyFacts:
    version: int
    published_by: str = ""
    kind: str = "publish"  # publish | rollback


@dataclass(frozen=True, slots=True)
class WebhookFailureFacts:
    endpoint_id: str
    endpoint_name: str
    reason: str  # gone | failing


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """One notification. ``event`` is a webhooks.models.WebhookEvent value; ``severity`` one of
    info/low/medium/high/critical (the rule's, for decisions); ``summary`` one human line."""

    event: str
    severity: str
    occurred_at: datetime
    team_slug: str
    team_name: str
    summary: str
    # Absolute links into the dashboard (the approval page, the decision page), when there are.
    links: dict[str, str] = field(default_factory=dict)
    decision: DecisionFacts | None = None
    approval: ApprovalFacts | None = None
    policy: PolicyFacts | None = None
    webhook: WebhookFailureFacts | None = None
    test: bool = False  # a test send (POST /v1/webhooks/{id}/test)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (datetimes as ISO 8601 strings); ``from_json`` is its inverse."""
        return _jsonable(asdict(self))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WebhookMessage:
        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        approval = raw.get("approval")
        return cls(
            event=raw["event"],
            severity=raw["severity"],
            occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            team_slug=raw["team_slug"],
            team_name=raw["team_name"],
            summary=raw["summary"],
            links=dict(raw.get("links") or {}),
            decision=DecisionFacts(**raw["decision"]) if raw.get("decision") else None,
            approval=(
                ApprovalFacts(
                    **{
                        **approval,
                        "decided_at": when(approval.get("decided_at")),
                        "expires_at": when(approval.get("expires_at")),
                    }
                )
                if approval
                else None
            ),
            policy=PolicyFacts(**raw["policy"]) if raw.get("policy") else None,
            webhook=WebhookFailureFacts(**raw["webhook"]) if raw.get("webhook") else None,
            test=bool(raw.get("test", False)),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
