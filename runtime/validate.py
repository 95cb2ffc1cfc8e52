"""Validate: from the caller's key to the rule set, the engine, the decision row and its approval.

This is where a governed tool call is decided (``tool_call_validate``). The team's per-tool
policy is checked first, then the active rule set (with the session state some rules need),
and the decision is recorded by ``runtime.decisions`` before the answer goes back.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.utils import timezone
from redis.exceptions import RedisError

from common import metrics
from policies.engine import CompiledRuleSet, Decision, EnforcementMode, HistoryEntry, ToolCall
from policies.rate_limiter import CountedCall, rate_limiter
from policies.selectors import TOOL_POLICY_RULE_PREFIX, ActiveRuleSet, active_rule_set, active_tool_policy
from policies.session_history import session_history, session_of
from runtime.decisions import decision_record
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import team_default_approval_timeout

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolPolicyRefusal:
    decision: Decision
    failed_constraints: tuple[dict[str, Any], ...]


async def tool_policy_refusal(
    *, team_id: uuid.UUID, tool_name: str, arguments: dict[str, Any]
) -> ToolPolicyRefusal | None:
    """The denial (or, for constraints with ``action: require_approval``, the hold) when the team's
    active policy for the tool has constraints the call fails; None otherwise. Reads only process caches (see ``selectors.active_tool_policy``)."""
    policy = await active_tool_policy(team_id=team_id, tool_name=tool_name)
    if policy is None or not policy.constraints:
        return None
    failures = policy.constraints.check(arguments)
    if not failures:
        return None
    # Any failing deny constraint denies; only when every failure asks for approval is the call
    # held for a person (the team's approvers decide it: no group is named).
    holding = all(f.action == "require_approval" for f in failures)
    first = failures[0]
    decision = Decision(
        decision="require_approval" if holding else "deny",
        reason=first.reason,  # the SDK's own words, as when it decides locally
        mode=policy.constraints.evaluation_mode,
        rule_id=TOOL_POLICY_RULE_PREFIX + tool_name,
        rule_name=f"{tool_name} policy v{policy.version}"[:200],
        severity="medium",
        matched_condition=f"{first.parameter} {first.constraint_type} {first.expected!r}",
    )
    return ToolPolicyRefusal(decision, tuple(f.as_dict() for f in failures))


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    decision: Decision
    decision_id: uuid.UUID
    approval_id: uuid.UUID | None
    rule_set_version: int | None
    latency_ms: float
    # Per-tool policy constraints the call failed (the SDK's failed_constraints entries).
    failed_constraints: tuple[dict[str, Any], ...] = ()
    # The rule-set version's mode: under log/shadow ``decision`` is the answer (allow).
    enforcement: EnforcementMode = "strict"


async def _decide_with_session_state(
    *,
    team_id: uuid.UUID,
    rules: CompiledRuleSet,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    now: datetime,
) -> Decision:
    """Evaluate with the state some rules need: the session's earlier calls (``blocked_by`` /
    ``requires``) and shared rate-limit counters. Rule sets without such rules pay nothing.

    When that state is unreachable, the rule set's ``settings.fail_mode`` decides: ``closed``
    (the default) denies the call, ``open`` decides as if there were no history and no limits.
    """
    session_id = session_of(context)
    fail_open = rules.fail_mode == "open"
    history: list[HistoryEntry] = []
    if session_id is not None and rules.needs_history(tool_name):
        try:
            history = await session_history().recent(team_id, session_id)
        except RedisError:
            logger.warning("session_history.unavailable team=%s", team_id, exc_info=True)
            if not fail_open:
                return _state_unavailable_decision("session history", rules)
    call = ToolCall(tool_name=tool_name, arguments=arguments, context=context, now=now, history=history)
    steps = rules.decide(call)
    limiter = rate_limiter()
    counted: list[CountedCall] = []
    try:
        check = next(steps)
        while True:
            try:
                exceeded, counted_call = await limiter.hit(team_id, check)
            except RedisError:
                logger.warning("rate_limiter.unavailable team=%s", team_id, exc_info=True)
                if not fail_open:
                    await _refund_quietly(limiter, counted)
                    return _state_unavailable_decision("rate limit", rules)
                exceeded, counted_call = None, None
            if counted_call is not None:
                counted.append(counted_call)
            check = steps.send(exceeded)
    except StopIteration as finished:
        decision: Decision = finished.value
    if counted and decision.decision == "deny":
        # A refused call must not use up the allowance it was counted against.
        await _refund_quietly(limiter, counted)
    if session_id is not None and tool_name in rules.history_tools and decision.decision != "deny":
        try:
            await session_history().append(
                team_id, session_id, HistoryEntry(tool_name, arguments, decision.decision, now)
            )
        except RedisError:
            logger.warning("session_history.append_failed team=%s", team_id, exc_info=True)
    return decision


async def _refund_quietly(limiter: Any, counted: list[CountedCall]) -> None:
    if not counted:
        return
    try:
        await limiter.refund(counted)
    except RedisError:  # the slots expire with their window anyway
        logger.warning("rate_limiter.refund_failed", exc_info=True)


def _state_unavailable_decision(what: str, rules: CompiledRuleSet) -> Decision:
    """The rule set's ``fail_mode: closed`` decides: its mode is the rule set's."""
    return Decision(
        decision="deny",
        reason=f"{what.capitalize()} check failed (fail-closed): the server's state store is unreachable",
        mode=rules.evaluation_mode,
        severity="high",
    )


def enforced_answer(decision: Decision, *, mode: EnforcementMode) -> Decision:
    """What the caller is told under the version's mode. ``strict`` answers the decision;
    ``log`` and ``shadow`` answer allow and say what strict would have done (the record keeps
    the real decision). Wording and metadata follow the SDK's own log and shadow modes."""
    if mode == "strict" or decision.decision == "allow":
        return decision
    would = "be denied" if decision.decision == "deny" else "require approval"
    label = "LOG MODE" if mode == "log" else "SHADOW MODE"
    return replace(
        decision,
        decision="allow",
        reason=f"[{label}] Would {would}: {decision.reason}",
        approvers=(),
        approval_timeout_seconds=None,
        strict_decision=decision.decision,
    )


async def tool_call_validate(
    *,
    principal: ApiKeyPrincipal,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    started: float,
    rules: CompiledRuleSet | None = None,
    rules_hash: str | None = None,
) -> ValidationOutcome:
    """Decide a tool call against the team's active rule set (or ``rules``, given inline by an
    SDK in API mode, ``rules_hash`` being their SHA-256) and record the decision durably (with
    its pending approval, when one is required) before returning.

    The common case touches no database on this coroutine: the compiled rule set and the key
    come from process caches and the write goes to the group-commit writer.
    """
    if rules is not None and not rules_hash:
        # A decision by inline rules must never be recorded as one by the team's rules.
        raise ValueError("inline rules are recorded with their hash: pass rules_hash")
    team_id = principal.team_id
    active = await active_rule_set(team_id=team_id) if rules is None else ActiveRuleSet(None, None, rules)
    now = timezone.now()
    # The team's per-tool policy first (not with inline API-mode rules): failed constraints deny.
    refusal = None
    if rules is None:
        refusal = await tool_policy_refusal(team_id=team_id, tool_name=tool_name, arguments=arguments)
    enforcement: EnforcementMode = "strict"
    if refusal is not None:
        decision = answer = refusal.decision
    else:
        decision = await _decide_with_session_state(
            team_id=team_id,
            rules=active.rules,
            tool_name=tool_name,
            arguments=arguments,
            context=context,
            now=now,
        )
        enforcement = active.rules.mode
        answer = enforced_answer(decision, mode=enforcement)
    default_timeout = None
    if answer.decision == "require_approval":
        default_timeout = await team_default_approval_timeout(team_id=team_id)
    latency_ms = (time.perf_counter() - started) * 1000.0
    recorded = await decision_record(
        principal=principal,
        team_default_timeout_seconds=default_timeout,
        tool_name=tool_name,
        arguments=arguments,
        context=context,
        decision=decision,
        rule_set_version=active.version_number,
        latency_ms=latency_ms,
        now=now,
        enforcement=enforcement,
        inline_rules_hash=None if rules is None else rules_hash,
    )
    # Two increments of memory-mapped values, ~3 µs together (README, "Metrics").
    metrics.DECISIONS[answer.decision].inc()
    metrics.VALIDATE_SECONDS.observe(time.perf_counter() - started)
    return ValidationOutcome(
        decision=answer,
        decision_id=recorded.decision_id,
        approval_id=recorded.approval_id,
        rule_set_version=active.version_number,
        latency_ms=latency_ms,
        failed_constraints=refusal.failed_constraints if refusal is not None else (),
        enforcement=enforcement,
    )
