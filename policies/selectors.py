"""Reads for policies, including the compiled active rule set on validate's hot path."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from django.conf import settings
from django.db.models import QuerySet

from audit.models import DecisionRecord
from common.cache import TtlCache
from common.database import run_in_db_thread
from common.edge import SOURCE_MEDIA_TYPES
from common.errors import NotFound
from common.events import Event
from policies.engine import EMPTY_RULE_SET, CompiledRuleSet, compile_rule_set, diff_documents
from policies.engine.constraints import SERVER_ONLY_CONSTRAINT_KEYS, CompiledConstraints, compile_constraints
from policies.engine.evaluator import RateLimit
from policies.engine.replay import Replayer
from policies.engine.session_constraints import SessionLimit, counter_limits, limits_of_policy
from policies.engine.source import STORED_LIMITS, parse_source
from policies.engine.tool_rate_limits import TOOL_POLICY_RULE_PREFIX, tool_policy_rate_limits
from policies.explain import (
    Explanation,
    explain_constraints,
    explain_rule,
    not_explained,
    rule_in_document,
    rule_not_found,
)
from policies.models import PolicyDraft, RegisteredTool, RuleSetPublication, RuleSetVersion, ToolPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActiveRuleSet:
    version_id: uuid.UUID | None
    version_number: int | None
    rules: CompiledRuleSet


_NO_RULES = ActiveRuleSet(None, None, EMPTY_RULE_SET)
# Re-checking is one indexed query; compiling happens only when the version changed.
_active: TtlCache[uuid.UUID, ActiveRuleSet] = TtlCache(lambda: settings.RULE_SET_RECHECK_SECONDS)
_compile_lock = threading.Lock()


def forget_cached_rule_sets(*, team_id: uuid.UUID | None = None) -> None:
    if team_id is None:
        _active.clear()
    else:
        _active.forget(team_id)


def _active_version_from_database(team_id: uuid.UUID) -> ActiveRuleSet | tuple[uuid.UUID, int, Any]:
    """The compiled copy while it is still the active version; otherwise the new version's id,
    number and document, still to be compiled."""
    row = RuleSetVersion.objects.filter(team_id=team_id, is_active=True).values_list("id", "number").first()
    if row is None:
        return _NO_RULES
    stale = _active.get_stale(team_id)
    if isinstance(stale, ActiveRuleSet) and stale.version_id == row[0]:
        return stale  # still active: keep the compiled copy
    document = RuleSetVersion.objects.values_list("document", flat=True).get(pk=row[0])
    return row[0], row[1], document


def _compiled(found: ActiveRuleSet | tuple[uuid.UUID, int, Any]) -> ActiveRuleSet:
    if isinstance(found, ActiveRuleSet):
        return found
    version_id, number, document = found
    with _compile_lock:  # one compile at a time per process: big sets are CPU, not waiting
        return ActiveRuleSet(version_id, number, compile_rule_set(document))


def _active_rule_set_from_database(team_id: uuid.UUID) -> ActiveRuleSet:
    return _compiled(_active_version_from_database(team_id))


async def _load_active_rule_set(team_id: uuid.UUID) -> ActiveRuleSet:
    # Two steps, because only the first is the database. The rows are read under the request's
    # database deadline (a hung database must fail fast and open the breaker); the compile is CPU
    # and runs after it, on a thread, with no deadline: a large set that takes longer than
    # DATABASE_REQUEST_TIMEOUT to compile used to be reported as a database outage, opened the
    # breaker for every team on the process, and was thrown away to be compiled again (and time
    # out again) by the next request. The load is shared and shielded (TtlCache), so a caller
    # that gives up does not waste the compile either.
    found = await run_in_db_thread(_active_version_from_database, team_id)
    if isinstance(found, ActiveRuleSet):
        return found
    return await asyncio.to_thread(_compiled, found)


async def active_rule_set(*, team_id: uuid.UUID) -> ActiveRuleSet:
    """The team's active version, compiled once per version per process and re-checked every
    RULE_SET_RECHECK_SECONDS (one indexed query, off the event loop), and at once when a
    publish is announced (``forget_cached_policies_of_event``)."""
    return await _active.get_or_load(team_id, lambda: _load_active_rule_set(team_id))


def registered_tools_of_team(*, team_id: uuid.UUID) -> QuerySet[RegisteredTool]:
    return RegisteredTool.objects.filter(team_id=team_id).order_by("name")


def rule_set_versions_of_team(*, team_id: uuid.UUID) -> QuerySet[RuleSetVersion]:
    return RuleSetVersion.objects.filter(team_id=team_id).order_by("-number")


def rule_set_publications_of_team(*, team_id: uuid.UUID) -> QuerySet[RuleSetPublication]:
    return RuleSetPublication.objects.filter(team_id=team_id).select_related("version", "previous_version")


def rule_set_version_get(*, team_id: uuid.UUID, number: int) -> RuleSetVersion:
    """The team's version ``number``; another team's numbers do not exist from here."""
    try:
        return RuleSetVersion.objects.get(team_id=team_id, number=number)
    except RuleSetVersion.DoesNotExist as exc:
        raise NotFound(f"rule set version {number} not found") from exc


def rule_set_versions_diff(*, team_id: uuid.UUID, before: int, after: int) -> dict[str, Any]:
    old = rule_set_version_get(team_id=team_id, number=before)
    new = rule_set_version_get(team_id=team_id, number=after)
    return {"from": old.number, "to": new.number, **diff_documents(old.document, new.document)}


IMPACT_PREVIEW_DEFAULT = 10_000
IMPACT_PREVIEW_MAX = 50_000
IMPACT_EXAMPLES_PER_CHANGE = 5


def rule_set_impact_preview(
    *, team_id: uuid.UUID, document: Mapping[str, Any], limit: int = IMPACT_PREVIEW_DEFAULT
) -> dict[str, Any]:
    """Replay the team's most recent server decisions against a candidate and report what
    would change (allow → deny, deny → allow, → require_approval, ...), with examples.

    Each call is replayed at the time it was made, so time windows judge it as they would
    have then, and in order, with the session histories and rate windows the candidate would
    have built (``engine.replay``). Client-side decisions are left out: the SDK made those from per-tool
    policies, not from this rule set.
    """
    candidate = compile_rule_set(document)
    recent = (
        DecisionRecord.objects.filter(team_id=team_id, source=DecisionRecord.Source.SERVER)
        # Calls a per-tool policy refused never reached the rule set, and still would not.
        .exclude(rule_id__startswith=TOOL_POLICY_RULE_PREFIX)
        .order_by("-created_at")
        .values_list("id", "tool_name", "arguments", "context", "decision", "rule_id", "created_at")[:limit]
    )
    transitions: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    # Oldest first, so sequence rules and rate limits see the calls in the order they came.
    calls = list(recent)[::-1]
    replayer = Replayer(candidate, history_limit=settings.SESSION_HISTORY_LIMIT)
    replayed = 0
    for decision_id, tool_name, arguments, context, old, old_rule, created_at in calls:
        replayed += 1
        new = replayer.decide(tool_name, arguments or {}, context or {}, created_at)
        if new.decision == old:
            continue
        key = (old, new.decision)
        transitions[key] += 1
        if len(examples[key]) < IMPACT_EXAMPLES_PER_CHANGE:
            examples[key].append(
                {
                    "decisionId": str(decision_id),
                    "toolName": tool_name,
                    "arguments": arguments,
                    "was": {"decision": old, "ruleId": old_rule or None},
                    "wouldBe": {"decision": new.decision, "ruleId": new.rule_id, "reason": new.reason},
                    "createdAt": created_at.isoformat(),
                }
            )
    return {
        "replayed": replayed,
        "changed": sum(transitions.values()),
        "changes": [
            {"from": old, "to": new, "count": count, "examples": examples[(old, new)]}
            for (old, new), count in transitions.most_common()
        ],
    }


@dataclass(frozen=True, slots=True)
class RuleSetRepresentation:
    version: int
    body: bytes
    content_type: str
    etag: str  # strong: it names these exact bytes


def _represent(source_text: str, source_format: str, wanted: str) -> bytes:
    if wanted == source_format:
        return source_text.encode("utf-8")
    if wanted == RuleSetVersion.SourceFormat.JSON:
        # The loader's reading (dates stay text), as the stored document has it.
        data, _ = parse_source(source_text, limits=STORED_LIMITS)
        return json.dumps(data, indent=2).encode("utf-8")
    return yaml.safe_dump(json.loads(source_text), sort_keys=False, allow_unicode=True).encode("utf-8")


def active_rule_set_representation(*, team_id: uuid.UUID, wanted: str | None) -> RuleSetRepresentation | None:
    """The active version as served to sync jobs: the source as uploaded, or converted to the
    wanted format (``yaml`` or ``json``; None means as uploaded)."""
    row = (
        RuleSetVersion.objects.filter(team_id=team_id, is_active=True)
        .values_list("number", "source_text", "source_format")
        .first()
    )
    if row is None:
        return None
    number, source_text, source_format = row
    fmt = wanted or source_format
    body = _represent(source_text, source_format, fmt)
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    return RuleSetRepresentation(number, body, SOURCE_MEDIA_TYPES[fmt], etag)


def forget_cached_policies_of_event(event: Event) -> None:
    """``policy.published`` or ``tool_policy.changed`` (common.events, in every process): drop the
    team's compiled rule set and tool policies (the periodic re-check is the fallback if an event
    is lost)."""
    forget_cached_rule_sets(team_id=event.team_id)
    forget_cached_tool_policies(team_id=event.team_id)


# --- Per-tool policies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActiveToolPolicy:
    id: uuid.UUID
    tool_name: str
    version: int
    constraints: CompiledConstraints
    mode: str = ToolPolicy.Mode.DETERMINISTIC
    # The limits of the tool's own session constraints (policies.engine.session_constraints).
    session_limits: tuple[SessionLimit, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    llm_config: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TeamToolPolicies:
    """A team's active tool policies, and for each tool the session counters (of any of them)
    its calls raise or lower."""

    by_tool: Mapping[str, ActiveToolPolicy]
    counters_by_tool: Mapping[str, tuple[SessionLimit, ...]]

    def session_limits_for(self, tool_name: str) -> tuple[SessionLimit, ...]:
        """Everything a call of ``tool_name`` counts against: its own policy's session
        constraints, then the counters it moves."""
        policy = self.by_tool.get(tool_name)
        own = policy.session_limits if policy is not None else ()
        return own + self.counters_by_tool.get(tool_name, ())


NO_TOOL_POLICIES = TeamToolPolicies({}, {})

# team -> its active tool policies. Dropped on every write (``tool_policy.changed``: this
# process at commit, the others on the event); the re-check bounds staleness if one is lost.
_tool_policies: TtlCache[uuid.UUID, TeamToolPolicies] = TtlCache(lambda: settings.RULE_SET_RECHECK_SECONDS)


def forget_cached_tool_policies(*, team_id: uuid.UUID | None = None) -> None:
    if team_id is None:
        _tool_policies.clear()
    else:
        _tool_policies.forget(team_id)


def _active_tool_policies_from_database(team_id: uuid.UUID) -> TeamToolPolicies:
    rows = list(
        ToolPolicy.objects.filter(team_id=team_id, is_active=True).values_list(
            "id",
            "tool_name",
            "version",
            "constraints",
            "mode",
            "session_constraints",
            "rate_limits",
            "llm_config",
        )
    )
    by_tool = {
        tool_name: ActiveToolPolicy(
            policy_id,
            tool_name,
            version,
            compile_constraints(constraints),
            mode=mode,
            session_limits=limits_of_policy(tool_name, session),
            rate_limits=tool_policy_rate_limits(rate_limits or []),
            llm_config=llm_config,
        )
        for policy_id, tool_name, version, constraints, mode, session, rate_limits, llm_config in rows
    }
    counters = counter_limits((row[1], row[5]) for row in rows)
    return TeamToolPolicies(by_tool, counters)


async def active_tool_policies(*, team_id: uuid.UUID) -> TeamToolPolicies:
    """The team's active policies, from a per-process cache holding all of them: validate's hot
    path asks the database at most once per team per RULE_SET_RECHECK_SECONDS, never once per
    call."""
    return await _tool_policies.get_or_load(
        team_id, lambda: run_in_db_thread(_active_tool_policies_from_database, team_id)
    )


async def active_tool_policy(*, team_id: uuid.UUID, tool_name: str) -> ActiveToolPolicy | None:
    """The team's active policy for ``tool_name`` (see ``active_tool_policies``)."""
    return (await active_tool_policies(team_id=team_id)).by_tool.get(tool_name)


def tool_policies_of_team(
    *,
    team_id: uuid.UUID,
    tool_name: str | None = None,
    mode: str | None = None,
    is_active: bool | None = None,
) -> QuerySet[ToolPolicy]:
    policies = ToolPolicy.objects.filter(team_id=team_id)
    if tool_name is not None:
        policies = policies.filter(tool_name=tool_name)
    if mode is not None:
        policies = policies.filter(mode=mode)
    if is_active is not None:
        policies = policies.filter(is_active=is_active)
    return policies.order_by("tool_name")


def tool_policy_get(*, team_id: uuid.UUID, tool_name: str) -> ToolPolicy:
    try:
        return ToolPolicy.objects.get(team_id=team_id, tool_name=tool_name)
    except ToolPolicy.DoesNotExist as exc:
        raise NotFound(f"no policy for tool {tool_name!r}") from exc


def tool_policy_get_by_id(*, team_id: uuid.UUID, policy_id: uuid.UUID) -> ToolPolicy:
    """The team's policy ``policy_id`` (the pages address policies by id: tool names may hold
    any character); another team's policies do not exist from here."""
    try:
        return ToolPolicy.objects.get(team_id=team_id, pk=policy_id)
    except ToolPolicy.DoesNotExist as exc:
        raise NotFound("tool policy not found") from exc


def active_rule_set_for_reading(*, team_id: uuid.UUID) -> ActiveRuleSet:
    """The team's active rule set, compiled (reusing this process's compiled copy when it is
    still the active version), for synchronous readers outside the hot path."""
    return _active_rule_set_from_database(team_id)


def active_tool_policies_for_reading(*, team_id: uuid.UUID) -> TeamToolPolicies:
    """The team's active tool policies read now (not the hot path's cache), for sync readers."""
    return _active_tool_policies_from_database(team_id)


def tool_policy_server_marker(
    *, policy: ToolPolicy, rule_set: ActiveRuleSet, team_policies: TeamToolPolicies = NO_TOOL_POLICIES
) -> dict[str, Any] | None:
    """What a served policy says in ``sessionConstraints`` so that the SDK asks the server, or
    None when the SDK may decide the tool's calls on its own.

    Why: the SDK's PolicyCache (``veto.cloud.policy_cache``, ``Veto._try_local_deterministic``)
    decides a call locally, without asking the server, when the tool's policy is
    deterministic and its ``sessionConstraints`` and ``rateLimits`` are both null. It then
    checks only the policy's constraints, so the team's rule set would silently not apply
    to that tool. The SDK's only switch for "ask the server" is a non-null
    ``sessionConstraints`` (or ``rateLimits``), so that is what the server sends when
    anything besides the constraints can decide the tool's calls:

    * the active rule set has a rule that can apply to the tool (one naming it, or a global
      one: ``CompiledRuleSet.rules_for``), or its ``default_action`` is not ``allow``:
      ``{"evaluatedBy": "server", "ruleSet": {"version", "ruleIds", "defaultAction"}}``;
    * the policy is inactive (its constraints must not be applied at all):
      ``{"evaluatedBy": "server", "policyActive": false}``;
    * a constraint holds failing calls for approval, which the SDK's local validator cannot
      (it would deny): ``{"evaluatedBy": "server", "approvalConstraints": true}``;
    * a constraint uses a check the SDK's local validator does not know (``notRegex``,
      ``notEnum``): ``{"evaluatedBy": "server", "serverOnlyConstraints": true}``;
    * the tool's calls move a session counter of one of the team's policies (its own or
      another tool's: ``close_file`` lowering ``open_file``'s count), which only the server
      keeps: ``{"evaluatedBy": "server", "sessionCounters": ["open_file.open_files"]}``.
      (The policy's own session constraints are served beside the marker and are non-null by
      themselves; the same goes for its own ``rateLimits`` and for ``mode: llm``.)

    Only a tool governed by nothing but its active constraints is decided locally; the SDK
    then logs the decision to ``POST /v1/decisions``. The SDK caches a fetched policy (fresh
    60 s, served stale up to 300 s), so a publish that adds the first rule for such a tool
    reaches the SDK's choice within that time; the server's own answer changes at once. The
    marker keys are the server's: sending a fetched policy back ignores them.
    """
    marker: dict[str, Any] = {}
    if not policy.is_active:
        marker["policyActive"] = False
    if any(c.get("action") == "require_approval" for c in policy.constraints or []):
        marker["approvalConstraints"] = True
    if any(key in c for c in policy.constraints or [] for key in SERVER_ONLY_CONSTRAINT_KEYS):
        marker["serverOnlyConstraints"] = True
    moved = team_policies.counters_by_tool.get(policy.tool_name, ())
    if moved:
        marker["sessionCounters"] = sorted({f"{limit.policy_tool}.{limit.counter}" for limit in moved})
    rules = rule_set.rules.rules_for(policy.tool_name)
    if rules or rule_set.rules.default_action != "allow":
        marker["ruleSet"] = {
            "version": rule_set.version_number,
            "ruleIds": [rule.id for rule in rules],
            "defaultAction": rule_set.rules.default_action,
        }
    if not marker:
        return None
    return {"evaluatedBy": "server", **marker}


# --- Policy drafts -------------------------------------------------------------------------------


def policy_drafts_of_team(
    *, team_id: uuid.UUID, status: str | None = None, created_by_agent_id: str | None = None
) -> QuerySet[PolicyDraft]:
    drafts = PolicyDraft.objects.filter(team_id=team_id)
    if status is not None:
        drafts = drafts.filter(status=status)
    if created_by_agent_id is not None:
        drafts = drafts.filter(created_by_agent_id=created_by_agent_id)
    return drafts.select_related("result_version").order_by("-created_at")


def policy_draft_get(*, team_id: uuid.UUID, draft_id: uuid.UUID) -> PolicyDraft:
    """The team's draft; another team's drafts do not exist from here."""
    try:
        return PolicyDraft.objects.select_related("result_version").get(team_id=team_id, pk=draft_id)
    except PolicyDraft.DoesNotExist as exc:
        raise NotFound("policy draft not found") from exc


# --- Why a decision was made (the decision page, the approval page) -------------------------------


def decision_explanation(*, decision: DecisionRecord) -> Explanation:
    """The rule that made ``decision``, found where the decision says it was (its rule-set
    version, or the tool's policy), explained for the call's arguments; or why it cannot be.

    Nothing is trusted to still exist: a version, a rule or a policy that is gone says so."""
    rule_id, rule_name = decision.rule_id, decision.rule_name
    if decision.source == DecisionRecord.Source.CLIENT:
        return not_explained(
            rule_id=rule_id,
            rule_name=rule_name,
            message="Decided by the SDK on the agent's side: the server was told the outcome, not the rule's condition.",
        )
    if decision.source == DecisionRecord.Source.INLINE_RULES:
        return not_explained(
            rule_id=rule_id,
            rule_name=rule_name,
            message=(
                "Decided by rules sent with the request (API mode), which the server does not keep: "
                f"only their hash is recorded ({decision.rules_hash or 'none'})."
            ),
        )
    if not rule_id:
        version = f"version {decision.rule_set_version}" if decision.rule_set_version else "no rule set"
        return not_explained(
            rule_id="", rule_name="", message=f"No rule matched ({version}): the rule set's default decided."
        )
    if rule_id.startswith(TOOL_POLICY_RULE_PREFIX):
        return _tool_policy_explanation(decision)
    where = (
        f"version {decision.rule_set_version}"
        if decision.rule_set_version
        else "any rule-set version (the decision names none)"
    )
    document = (
        RuleSetVersion.objects.filter(team_id=decision.team_id, number=decision.rule_set_version)
        .order_by()  # the model's ordering (team, -number) would join the team for nothing
        .values_list("document", flat=True)
        .first()
        if decision.rule_set_version
        else None
    )
    rule = rule_in_document(document, rule_id) if isinstance(document, Mapping) else None
    if rule is None:
        if decision.rule_set_version and document is None:
            where = f"version {decision.rule_set_version} (the version no longer exists)"
        return rule_not_found(rule_id=rule_id, rule_name=rule_name, where=where)
    return explain_rule(
        rule,
        tool_name=decision.tool_name,
        arguments=decision.arguments if isinstance(decision.arguments, Mapping) else {},
        context=decision.context if isinstance(decision.context, Mapping) else {},
        now=decision.created_at,
    )


def _tool_policy_explanation(decision: DecisionRecord) -> Explanation:
    tool_name = decision.rule_id[len(TOOL_POLICY_RULE_PREFIX) :]
    policy = ToolPolicy.objects.filter(team_id=decision.team_id, tool_name=tool_name).first()
    if policy is None:
        return rule_not_found(
            rule_id=decision.rule_id,
            rule_name=decision.rule_name,
            where=f"the team's tool policies (the policy for {tool_name!r} was deleted)",
        )
    # runtime.validate names the rule "<tool> policy v<version>": the version that decided.
    decided_version = decision.rule_name.rsplit(" v", 1)[-1] if " policy v" in decision.rule_name else ""
    note = ""
    if decided_version and decided_version != str(policy.version):
        note = (
            f"The policy decided at version {decided_version} and is at version {policy.version} now: "
            "the constraints shown are today's."
        )
    return explain_constraints(
        policy.constraints if isinstance(policy.constraints, list) else [],
        rule_id=decision.rule_id,
        rule_name=decision.rule_name or f"{tool_name} policy",
        arguments=decision.arguments if isinstance(decision.arguments, Mapping) else {},
        note=note,
    )


def approval_explanation(
    *, team_id: uuid.UUID, decision_id: uuid.UUID | None, rule_id: str, rule_name: str
) -> Explanation:
    """The explanation of the decision that raised an approval (the approval keeps its id)."""
    decision = DecisionRecord.objects.filter(team_id=team_id, pk=decision_id).first() if decision_id else None
    if decision is None:
        return not_explained(
            rule_id=rule_id,
            rule_name=rule_name,
            message="The decision that raised this approval is not in the team's records.",
        )
    return decision_explanation(decision=decision)
