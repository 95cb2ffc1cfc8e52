"""Writes for the decision record."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from approvals.services import approval_build_for_decision
from audit.chain import verify_links
from audit.checkpoints import checkpoint_problem
from audit.models import ChainStream, DecisionRecord, Verification
from audit.selectors import chain_anchor, chain_entry_hash, chain_links
from audit.writer import DecisionRow, decision_writer
from policies.engine import Decision
from tenancy.principal import ApiKeyPrincipal


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
) -> RecordedDecision:
    """Record a server-made decision (and, for require_approval, its pending approval) durably;
    returns once both are committed.

    ``inline_rules_hash``: the caller's own rules decided (API mode); recorded as source
    ``inline_rules`` with that hash, never as a decision of the team's rules.

    Under ``log`` or ``shadow`` enforcement the caller was answered allow: the real decision is
    recorded, marked, and no approval is opened (nobody waits for one).
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
        )
    row = _decision_row(
        principal=principal,
        tool_name=tool_name,
        arguments=arguments,
        context=context,
        decision=decision.decision,
        reason=decision.reason or "",
        mode="deterministic",
        source=DecisionRecord.Source.SERVER if inline_rules_hash is None else DecisionRecord.Source.INLINE_RULES,
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


def chain_verify(*, team_id: uuid.UUID, stream: str = ChainStream.DECISIONS, since: int = 1) -> Verification:
    """Check the team's chain (from ``since``; the entry before it anchors the check) and record
    the run, so the audit page can show the last one."""
    started = time.perf_counter()
    first, anchor_hash = chain_anchor(team_id=team_id, stream=stream)
    if since <= first:
        since, expected_prev = first, anchor_hash  # archived entries are proven by their file
    else:
        expected_prev = chain_entry_hash(team_id=team_id, stream=stream, sequence=since - 1) or ""
    result = verify_links(
        chain_links(team_id=team_id, stream=stream, since=since),
        expected_prev_hash=expected_prev,
        expected_sequence=since,
    )
    # The links cannot show a cut tail or a chain rewritten with fresh hashes; the latest signed
    # checkpoint can.
    checkpoint = checkpoint_problem(team_id=team_id, stream=stream) if result.ok else None
    return Verification.objects.create(
        team_id=team_id,
        stream=stream,
        ok=result.ok and checkpoint is None,
        count=result.count,
        head_sequence=result.head_sequence,
        head_hash=result.head_hash,
        broken_at=result.broken_at if checkpoint is None else checkpoint[0],
        problem=result.problem or (checkpoint[1] if checkpoint else ""),
        seconds=time.perf_counter() - started,
    )
