"""Recording decisions: the row for each decision, and the pending approval a require_approval
decision raises, both handed to the decision writer (runtime/writer.py) in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from approvals.models import Approval
from audit.models import DecisionRecord, context_columns
from policies.engine import Decision
from runtime.writer import DecisionRow, decision_writer
from tenancy.principal import ApiKeyPrincipal


def approval_build_for_decision(
    *,
    team_id: uuid.UUID,
    team_default_timeout_seconds: int | None,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    decision: Decision,
    now: datetime,
    decision_id: uuid.UUID | None = None,
    approval_id: uuid.UUID | None = None,
) -> Approval:
    """An unsaved pending approval for a require_approval decision; the decision writer saves it
    in the same transaction as the decision that raised it."""
    timeout = (
        decision.approval_timeout_seconds
        or team_default_timeout_seconds
        or settings.DEFAULT_APPROVAL_TIMEOUT_SECONDS
    )
    return Approval(
        id=approval_id or uuid.uuid4(),
        team_id=team_id,
        decision_id=decision_id,
        min_approvals=decision.min_approvals,
        escalate_to=list(decision.escalate_to),
        timeout_seconds=timeout,
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


@dataclass(frozen=True, slots=True)
class RecordedDecision:
    decision_id: uuid.UUID
    approval_id: uuid.UUID | None


def _decision_row(
    *,
    principal: ApiKeyPrincipal,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    decision: str,
    reason: str,
    mode: str,
    source: str,
    latency_ms: float,
    now: datetime,
    rule_id: str = "",
    rule_name: str = "",
    severity: str = "",
    rule_set_version: int | None = None,
    approval_id: uuid.UUID | None = None,
    enforcement: str = DecisionRecord.Enforcement.STRICT,
    decision_id: uuid.UUID | None = None,
    rules_hash: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> DecisionRow:
    return {
        "id": decision_id or uuid.uuid4(),
        "team_id": principal.team_id,
        "tool_name": tool_name,
        "arguments": arguments,
        "context": context,
        "decision": decision,
        "rule_id": rule_id,
        "rule_name": rule_name,
        "reason": reason,
        "severity": severity,
        "mode": mode,
        "source": source,
        "latency_ms": latency_ms,
        "rule_set_version": rule_set_version,
        "approval_id": approval_id,
        "enforcement": enforcement,
        "api_key_id": principal.key_id,
        "created_at": now,
        "rules_hash": rules_hash,
        "metadata": dict(metadata) if metadata else None,
        **context_columns(context),
    }


async def decision_record(
    *,
    principal: ApiKeyPrincipal,
    team_default_timeout_seconds: int | None,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    decision: Decision,
    rule_set_version: int | None,
    latency_ms: float,
    now: datetime,
    enforcement: str = DecisionRecord.Enforcement.STRICT,
    inline_rules_hash: str | None = None,
    approval_id: uuid.UUID | None = None,
) -> RecordedDecision:
    """Record a server-made decision (and, for require_approval, its pending approval) durably;
    returns once both are committed. Its ``mode`` is the one that decided (``Decision.mode``: the
    rule set's, the tool policy's), as a client decision records the one the SDK sends.

    ``inline_rules_hash``: the caller's own rules decided (API mode); recorded as source
    ``inline_rules`` with that hash, never as a decision of the team's rules.

    Under ``log`` or ``shadow`` enforcement the caller was answered allow: the real decision is
    recorded, marked, and no approval is opened (nobody waits for one).

    ``approval_id``: the id its approval gets, chosen by the caller (validate counts a held call's
    session constraints under it before the record exists).
    """
    approval = None
    decision_id = uuid.uuid4()
    if decision.decision == "require_approval" and enforcement == DecisionRecord.Enforcement.STRICT:
        approval = approval_build_for_decision(
            decision_id=decision_id,
            team_id=principal.team_id,
            team_default_timeout_seconds=team_default_timeout_seconds,
            tool_name=tool_name,
            arguments=arguments,
            context=context,
            decision=decision,
            now=now,
            approval_id=approval_id,
        )
    row = _decision_row(
        principal=principal,
        tool_name=tool_name,
        arguments=arguments,
        context=context,
        decision=decision.decision,
        reason=decision.reason or "",
        mode=decision.mode,
        source=DecisionRecord.Source.SERVER
        if inline_rules_hash is None
        else DecisionRecord.Source.INLINE_RULES,
        rules_hash=inline_rules_hash or "",
        latency_ms=latency_ms,
        now=now,
        rule_id=decision.rule_id or "",
        rule_name=decision.rule_name or "",
        severity=decision.severity or "",
        rule_set_version=rule_set_version,
        approval_id=approval.id if approval is not None else None,
        enforcement=enforcement,
        decision_id=decision_id,
        metadata=decision.metadata,
    )
    await decision_writer().write(row, approval)
    return RecordedDecision(row["id"], row["approval_id"])


async def client_decision_record(
    *,
    principal: ApiKeyPrincipal,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    decision: str,
    reason: str,
    mode: str,
    latency_ms: float,
    now: datetime,
) -> uuid.UUID:
    """Record a decision the SDK made locally (``POST /v1/decisions``), durably, before returning.

    An SDK in shadow mode says so in the context (``shadow: true``); the row is marked alike."""
    shadow = context.get("shadow") is True
    row = _decision_row(
        principal=principal,
        tool_name=tool_name,
        arguments=arguments,
        context=context,
        decision=decision,
        reason=reason,
        mode=mode,
        source=DecisionRecord.Source.CLIENT,
        latency_ms=latency_ms,
        now=now,
        enforcement=DecisionRecord.Enforcement.SHADOW if shadow else DecisionRecord.Enforcement.STRICT,
    )
    await decision_writer().write(row)
    return row["id"]
