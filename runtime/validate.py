"""Validate: from the caller's key to the rule set, the engine, the decision row and its approval.

This is where a governed tool call is decided (``tool_call_validate``). The team's per-tool
policy is checked first, then the active rule set (with the session state some rules need),
and the decision is recorded by ``runtime.decisions`` before the answer goes back.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.utils import timezone
from redis.exceptions import RedisError

from common import metrics
from policies.engine import CompiledRuleSet, Decision, EnforcementMode, HistoryEntry, ToolCall
from policies.engine.evaluator import DecisionKind
from policies.engine.session_constraints import Tally, UncountableAmount, tallies_for_call
from policies.engine.tool_rate_limits import tool_policy_rate_limit_check
from policies.rate_limiter import CountedCall, rate_limiter
from policies.selectors import (
    NO_TOOL_POLICIES,
    TOOL_POLICY_RULE_PREFIX,
    ActiveRuleSet,
    ActiveToolPolicy,
    TeamToolPolicies,
    active_rule_set,
    active_tool_policies,
)
from policies.session_counters import session_counters
from policies.session_history import session_history, session_of
from runtime.decisions import decision_record
from runtime.llm_exceptions import judge_exception
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
    """``constraint_refusal`` by the team's active policy for the tool, from the process cache."""
    policies = await active_tool_policies(team_id=team_id)
    return constraint_refusal(policies.by_tool.get(tool_name), arguments)


def constraint_refusal(
    policy: ActiveToolPolicy | None, arguments: dict[str, Any]
) -> ToolPolicyRefusal | None:
    """The denial (or, for constraints with ``action: require_approval``, the hold) when the team's
    active policy for the tool has constraints the call fails; None otherwise."""
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
        rule_id=TOOL_POLICY_RULE_PREFIX + policy.tool_name,
        rule_name=_policy_rule_name(policy),
        severity="medium",
        matched_condition=f"{first.parameter} {first.constraint_type} {first.expected!r}",
    )
    return ToolPolicyRefusal(decision, tuple(f.as_dict() for f in failures))


def _policy_rule_name(policy: ActiveToolPolicy) -> str:
    return f"{policy.tool_name} policy v{policy.version}"[:200]


def _policy_decision(
    policy_tool: str, policy: ActiveToolPolicy | None, kind: DecisionKind, reason: str, condition: str
) -> Decision:
    """A decision made by a tool policy's session constraints or rate limits."""
    return Decision(
        decision=kind,
        reason=reason,
        mode="deterministic",
        rule_id=TOOL_POLICY_RULE_PREFIX + policy_tool,
        rule_name=_policy_rule_name(policy) if policy is not None else f"{policy_tool} policy"[:200],
        severity="high" if kind == "deny" else "medium",
        matched_condition=condition,
        rate_limited=condition.startswith("rateLimits"),
    )


async def _ask_about_exceptions(
    policy: ActiveToolPolicy, refusal: ToolPolicyRefusal, arguments: dict[str, Any]
) -> tuple[ToolPolicyRefusal | None, Mapping[str, Any] | None]:
    """(the refusal that stands, or None; the verdict's metadata when an exception was granted)."""
    assert policy.llm_config is not None
    refused = refusal.decision
    verdict = await judge_exception(
        cache_key=f"{policy.id}:v{policy.version}",
        tool_name=policy.tool_name,
        llm_config=dict(policy.llm_config),
        arguments=arguments,
        failed_reason=refused.reason or "",
    )
    metadata = {
        "llm": {
            "applies": verdict.applies,
            "exception": verdict.exception,
            "reasoning": verdict.reasoning,
            "model": verdict.model,
            "cached": verdict.cached,
            "error": verdict.error,
        }
    }
    if verdict.applies:
        return None, metadata
    if verdict.error is not None:
        why = f"the exception check failed closed ({verdict.error})"
    else:
        why = f"no listed exception applies: {verdict.reasoning}"
    decision = replace(refused, mode="llm", reason=f"{refused.reason} ({why})"[:2000], metadata=metadata)
    return ToolPolicyRefusal(decision, refusal.failed_constraints), None


def _granted(decision: Decision, metadata: Mapping[str, Any]) -> Decision:
    """A decision reached after a model granted an exception: recorded as mode llm, with the
    verdict; an allow says which exception let the call through."""
    reason = decision.reason
    if decision.decision == "allow":
        verdict = metadata["llm"]
        reason = f"Allowed under the policy's exception {verdict['exception']!r}: {verdict['reasoning']}"[
            :2000
        ]
    return replace(decision, mode="llm", reason=reason, metadata={**(decision.metadata or {}), **metadata})


@dataclass(slots=True)
class _Counted:
    """What deciding one call counted, to hand back if the call ends up refused or unanswered:
    rate-limit slots (rule set and tool policy) and session-constraint tallies."""

    slots: list[CountedCall] = field(default_factory=list)
    tallies: list[Tally] = field(default_factory=list)
    held: uuid.UUID | None = None  # the approval the tallies are held for

    async def refund_slots(self) -> None:
        await _refund_quietly(rate_limiter(), self.slots)
        self.slots = []

    async def give_back(self, team_id: uuid.UUID, context: dict[str, Any]) -> None:
        """The call was never answered (its record failed): nothing it counted stands."""
        await self.refund_slots()
        if self.tallies:
            try:
                await session_counters().release(
                    team_id, _agent_of(context), session_of(context), self.tallies
                )
            except RedisError:
                logger.warning("session_counters.release_failed team=%s", team_id, exc_info=True)
            self.tallies = []


def _agent_of(context: dict[str, Any]) -> str | None:
    agent_id = context.get("agent_id")
    return agent_id if isinstance(agent_id, str) and agent_id else None


async def _tool_rate_limits(
    *, team_id: uuid.UUID, policy: ActiveToolPolicy | None, call: ToolCall, counted: _Counted
) -> Decision | None:
    """The tool policy's own rate limits, through the rule sets' limiter (one implementation): the
    denial when one is exceeded (or the store is unreachable: fail closed), else None."""
    if policy is None or not policy.rate_limits:
        return None
    check = tool_policy_rate_limit_check(policy.tool_name, str(policy.id), policy.rate_limits, call)
    try:
        exceeded, counted_call = await rate_limiter().hit(team_id, check)
    except RedisError:
        logger.warning("rate_limiter.unavailable team=%s", team_id, exc_info=True)
        return _policy_decision(
            policy.tool_name,
            policy,
            "deny",
            "Rate limit check failed (fail-closed): the server's state store is unreachable",
            "rateLimits",
        )
    if counted_call is not None:
        counted.slots.append(counted_call)
    if exceeded is None:
        return None
    reason = exceeded.exceeded_reason(f"{policy.tool_name} policy")
    return _policy_decision(policy.tool_name, policy, "deny", reason, f"rateLimits {exceeded.scope}")


async def _session_constraints(
    *,
    team_id: uuid.UUID,
    policies: TeamToolPolicies,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    decision: Decision,
    hold: uuid.UUID | None,
    counted: _Counted,
) -> Decision:
    """Count a call the rest allowed or held against the session constraints it is under (its own
    policy's and the counters it moves). Over a limit, the limit's ``maxAction`` decides: deny,
    or hold for approval (then counted anyway, so that a denial can give it back). Held calls
    are counted under ``hold`` (their approval's id). The store unreachable denies."""
    limits = policies.session_limits_for(tool_name)
    if not limits:
        return decision
    policy = policies.by_tool.get(tool_name)
    tallies = tallies_for_call(limits, arguments)
    if isinstance(tallies, UncountableAmount):
        return _policy_decision(
            tallies.limit.policy_tool,
            policies.by_tool.get(tallies.limit.policy_tool),
            "deny",
            tallies.reason,
            f"sessionConstraints {tallies.limit.kind} {tallies.limit.argument}",
        )
    counters = session_counters()
    agent_id, session_id = _agent_of(context), session_of(context)
    holding = decision.decision == "require_approval"
    try:
        over = await counters.count(team_id, agent_id, session_id, tallies, hold=hold if holding else None)
        if over is not None and over.tally.limit.action == "require_approval":
            # Over the limit, and the policy asks a person: held, and counted under the hold.
            await counters.count(team_id, agent_id, session_id, tallies, hold=hold, force=True)
    except RedisError:
        logger.warning("session_counters.unavailable team=%s", team_id, exc_info=True)
        return _policy_decision(
            tool_name,
            policy,
            "deny",
            "Session constraint check failed (fail-closed): the server's state store is unreachable",
            "sessionConstraints",
        )
    limit_condition = (
        "" if over is None else f"sessionConstraints {over.tally.limit.kind} {over.tally.limit.field}"
    )
    if over is None:
        counted.tallies = list(tallies)
        counted.held = hold if holding else None
        return decision
    owner = policies.by_tool.get(over.tally.limit.policy_tool)
    if over.tally.limit.action == "deny":
        return _policy_decision(over.tally.limit.policy_tool, owner, "deny", over.reason, limit_condition)
    counted.tallies = list(tallies)
    counted.held = hold
    if holding:
        # Already held by the rule set (its approvers and timeout stand): say why it is held too.
        return replace(decision, reason=f"{decision.reason} {over.reason}".strip())
    return _policy_decision(
        over.tally.limit.policy_tool, owner, "require_approval", over.reason, limit_condition
    )


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
    counted: _Counted,
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
    try:
        check = next(steps)
        while True:
            try:
                exceeded, counted_call = await limiter.hit(team_id, check)
            except RedisError:
                logger.warning("rate_limiter.unavailable team=%s", team_id, exc_info=True)
                if not fail_open:
                    return _state_unavailable_decision("rate limit", rules)
                exceeded, counted_call = None, None
            if counted_call is not None:
                counted.slots.append(counted_call)
            check = steps.send(exceeded)
    except StopIteration as finished:
        decision: Decision = finished.value
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
    # The team's per-tool policies apply to its own rules, not to inline API-mode rules.
    policies = await active_tool_policies(team_id=team_id) if rules is None else NO_TOOL_POLICIES
    policy = policies.by_tool.get(tool_name)
    now = timezone.now()
    # The tool's policy first: failed constraints deny (or hold), its rate limits deny; then the
    # rule set; then what is left is counted against the session constraints it is under.
    refusal = constraint_refusal(policy, arguments)
    # Mode llm: a refused call may fall under one of the policy's listed exceptions; a model says
    # whether it does (runtime.llm_exceptions: the answer is parsed, never obeyed; any failure
    # keeps the refusal). A granted exception waives only the constraints: the rest still decides.
    granted: Mapping[str, Any] | None = None
    if refusal is not None and policy is not None and policy.mode == "llm" and policy.llm_config:
        refusal, granted = await _ask_about_exceptions(policy, refusal, arguments)
    enforcement: EnforcementMode = "strict"
    counted = _Counted()
    # A held call's approval id is known before its record, so its session counts can be kept
    # under it (given back if the approval is denied or expires).
    approval_id = uuid.uuid4()
    if refusal is not None:
        decision = answer = refusal.decision
    else:
        call = ToolCall(tool_name=tool_name, arguments=arguments, context=context, now=now)
        limited = await _tool_rate_limits(team_id=team_id, policy=policy, call=call, counted=counted)
        if limited is not None:
            decision = answer = limited
        else:
            decision = await _decide_with_session_state(
                team_id=team_id,
                rules=active.rules,
                tool_name=tool_name,
                arguments=arguments,
                context=context,
                now=now,
                counted=counted,
            )
            enforcement = active.rules.mode
            answer = enforced_answer(decision, mode=enforcement)
            if answer.decision != "deny":
                counted_as = answer if enforcement == "strict" else replace(decision, decision="allow")
                limited_session = await _session_constraints(
                    team_id=team_id,
                    policies=policies,
                    tool_name=tool_name,
                    arguments=arguments,
                    context=context,
                    decision=counted_as,
                    hold=approval_id,
                    counted=counted,
                )
                if limited_session is not counted_as:
                    # The session constraints decided: a tool policy's, always strict.
                    decision = answer = limited_session
                    enforcement = "strict"
    if granted is not None:
        decision = _granted(decision, granted)
        answer = _granted(answer, granted)
    if answer.decision == "deny":
        # A refused call must not use up the allowance it was counted against.
        await counted.refund_slots()
    default_timeout = None
    if answer.decision == "require_approval":
        default_timeout = await team_default_approval_timeout(team_id=team_id)
    latency_ms = (time.perf_counter() - started) * 1000.0
    try:
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
            approval_id=approval_id,
        )
    except BaseException:
        # Unanswered (the caller hears a 503 and fails closed): nothing it counted stands.
        await counted.give_back(team_id, context)
        raise
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
