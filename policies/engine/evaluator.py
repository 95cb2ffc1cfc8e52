"""A compiled rule set: normalized document in, ``Decision`` per call out.

Precedence is the SDK's local mode (``veto.core.veto.Veto._validate_with_local``):
the rules that apply to a call are the global ones (no ``tools``) followed by the
tool's own, each group in document order; the first matching ``block`` or
``require_approval`` rule decides; otherwise the first matching ``allow`` rule
does; ``warn`` and ``log`` rules are noted and never decide; with no decision,
the rule set's ``settings.default_action`` applies (``allow`` by default).

A rule with ``blocked_by`` / ``requires`` also needs its sequence test to fire (see
``sequences``); a rule with ``rate_limits`` fires only when the call would exceed a limit.
Counting calls is state the engine does not hold: ``decide`` asks its caller (a generator
yielding ``RateLimitCheck``), so the engine stays pure and the counter can live in Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from policies.engine.conditions import _to_float, compile_operator
from policies.engine.expressions import compile_when
from policies.engine.rule_bounds import Bound, Measure, usable_threshold
from policies.engine.rule_index import (
    NO_GUARDS,
    Guard,
    GuardChooser,
    GuardOptions,
    Guards,
    RuleIndex,
    arguments_read,
    best_guards,
    literal_key,
)
from policies.engine.sequences import HistoryEntry, compile_sequence_constraints, sequence_tools

DecisionKind = Literal["allow", "deny", "require_approval"]
# What strict mode answers when log or shadow mode turns it into allow.
StrictDecisionKind = Literal["deny", "require_approval"]
# A version's mode (document.MODES).
EnforcementMode = Literal["strict", "log", "shadow"]
# How a decision was reached, in the SDK's words (a policy's ``mode``, the ``mode`` the SDK
# records with a decision it made itself): by deterministic checks (rules, constraints) or by an
# LLM's judgement. Recorded with every decision, separately from the version's EnforcementMode.
EvaluationMode = Literal["deterministic", "llm"]
_DAY_ORDER = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SDK_CONTEXT_FIELDS = ("session_id", "agent_id", "user_id", "role")
# Names in the SDK's local evaluation context that are not arguments.
_OVERRIDDEN_FIELDS = frozenset({"tool_name", "arguments", "custom", *_SDK_CONTEXT_FIELDS})


@dataclass(slots=True)
class ToolCall:
    tool_name: str
    arguments: Mapping[str, Any]
    # The SDK's call context: call_id, timestamp, session_id, agent_id, user_id, role, custom{...}.
    context: Mapping[str, Any] = field(default_factory=dict)
    # When the call is evaluated; time windows and ``context.time`` read this, never the client's clock.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Earlier calls of the same session, for ``blocked_by`` / ``requires`` (any order).
    history: Sequence[HistoryEntry] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    decision: DecisionKind
    reason: str | None
    # What decided: the evaluator's mode (CompiledRuleSet.evaluation_mode,
    # constraints.CompiledConstraints.evaluation_mode), never assumed by whoever records it.
    mode: EvaluationMode
    rule_id: str | None = None
    rule_name: str | None = None
    severity: str | None = None
    matched_condition: str | None = None
    approvers: tuple[str, ...] = ()
    approval_timeout_seconds: int | None = None
    # Distinct people who must approve; any one eligible deny denies.
    min_approvals: int = 1
    # Groups the approval moves to (once) when its deadline passes undecided.
    escalate_to: tuple[str, ...] = ()
    # Rules with action warn/log that matched: they never decide but are worth recording.
    noted_rule_ids: tuple[str, ...] = ()
    # Set when a rule's rate limit was exceeded: that is why this rule fired.
    rate_limited: bool = False
    # Under log or shadow mode the answer is allow; this keeps what strict mode would answer.
    strict_decision: StrictDecisionKind | None = None
    # What else decided, for the record and the answer's metadata: a language model's verdict on a
    # mode llm policy's exceptions ({"llm": {...}}, runtime/validate.py). JSON-ready.
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: str  # agent | user | session | global
    window_seconds: int
    max_calls: int

    def exceeded_reason(self, what: str | None) -> str:
        """The reason of a call this limit refused, in the SDK's wording, so agents and dashboards
        read the same sentence (rule sets' limits and tool policies' alike)."""
        return (
            f"Rate limit exceeded: max {self.max_calls} calls per {self.window_seconds}s "
            f"(scope: {self.scope}). {what}"
        )


@dataclass(frozen=True, slots=True)
class RateLimitCheck:
    """A question the engine asks its caller: count this call against the rule's limits.

    ``buckets`` pairs each limit with the key of the counter it uses (as the SDK builds it:
    ``{rule_id}:{scope}:{scope_id}:{tool}``, falling back to ``global`` when the call lacks the
    scope's id). The caller answers True when any limit is exceeded (and then counts nothing),
    else False, having counted the call against every limit atomically.
    """

    rule_id: str
    buckets: tuple[tuple[RateLimit, str], ...]


class CallView:
    """What conditions read from one call, built lazily once per call."""

    __slots__ = ("call", "arguments", "agent_id", "_context", "_fields", "_env")

    def __init__(self, call: ToolCall) -> None:
        self.call = call
        arguments = call.arguments
        # Readers index a plain dict (JSON objects always are); anything else is copied once.
        self.arguments: dict[str, Any] = arguments if arguments.__class__ is dict else dict(arguments)
        agent_id = call.context.get("agent_id")
        self.agent_id: str | None = agent_id if isinstance(agent_id, str) else None
        self._context: dict[str, Any] | None = None
        self._fields: dict[str, Any] | None = None
        self._env: dict[str, Any] | None = None

    @property
    def context(self) -> dict[str, Any]:
        """The call context with ``custom`` fields also at the top level (explicit top-level wins),
        plus the SDK's built-ins ``time`` and ``day_of_week`` taken from the server's clock."""
        if self._context is None:
            raw = self.call.context
            custom = raw.get("custom")
            merged: dict[str, Any] = dict(custom) if isinstance(custom, Mapping) else {}
            merged.update(raw)
            now = self.call.now
            merged["time"] = now.isoformat()
            merged["day_of_week"] = _DAY_ORDER[(now.weekday() + 1) % 7]
            self._context = merged
        return self._context

    @property
    def fields(self) -> dict[str, Any]:
        """The SDK's local evaluation context: arguments at the top level, plus tool_name,
        arguments, session_id, agent_id, user_id, role and custom."""
        if self._fields is None:
            raw = self.call.context
            fields: dict[str, Any] = dict(self.call.arguments)
            fields["tool_name"] = self.call.tool_name
            fields["arguments"] = self.call.arguments
            for name in _SDK_CONTEXT_FIELDS:
                fields[name] = raw.get(name)
            fields["custom"] = raw.get("custom")
            self._fields = fields
        return self._fields

    @property
    def env(self) -> dict[str, Any]:
        """The names ``when:`` expressions see."""
        if self._env is None:
            self._env = {
                "args": self.call.arguments,
                "context": self.context,
                "tool_name": self.call.tool_name,
            }
        return self._env


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for segment in path:
        # JSON objects are dicts: test that first, the Mapping ABC check is several times slower.
        if value.__class__ is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(segment)
    return value


def _compile_field(path: str) -> Callable[[CallView], Any]:
    """A reader for one IR field path, resolved as the SDK resolves it (see CallView)."""
    if path == "context":
        return lambda view: view.context
    if path.startswith("context."):
        rest = tuple(path[len("context.") :].split("."))
        return lambda view: _dig(view.context, rest)
    head, _, tail = path.partition(".")
    if head == "arguments":
        if not tail:
            return lambda view: view.arguments
        if "." not in tail:
            return lambda view: view.arguments.get(tail)
        nested = tuple(tail.split("."))
        return lambda view: _dig(view.arguments, nested)
    if head not in _OVERRIDDEN_FIELDS:
        # A bare name is an argument (the SDK spreads arguments at the top of its context).
        if not tail:
            return lambda view: view.arguments.get(head)
        nested = tuple(path.split("."))
        return lambda view: _dig(view.arguments, nested)
    segments = tuple(path.split("."))
    return lambda view: _dig(view.fields, segments)


def field_value(path: str, call: ToolCall) -> Any:
    """What an IR condition's ``field`` reads from ``call``, exactly as a rule reads it."""
    return _compile_field(path)(CallView(call))


Check = Callable[[CallView], bool]


def _always(view: CallView) -> bool:
    return True


def _all_of(checks: list[Check]) -> Check:
    """One closure for an AND of checks (no generator per evaluation)."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda view: first(view) and second(view)
    if len(checks) == 3:
        first, second, third = checks
        return lambda view: first(view) and second(view) and third(view)
    frozen = tuple(checks)

    def every(view: CallView) -> bool:
        for check in frozen:
            if not check(view):
                return False
        return True

    return every


def _argument_name(path: str) -> str | None:
    """The argument a path names directly (``arguments.x`` or a bare ``x``), if it does."""
    head, _, tail = path.partition(".")
    if head == "arguments" and tail and "." not in tail:
        return tail
    if not tail and head not in _OVERRIDDEN_FIELDS and head != "context":
        return head
    return None


def _argument_head(path: str) -> str | None:
    """The argument whose absence makes ``path`` read None (``arguments.x.y`` and ``x.y``: ``x``)."""
    if path == "context" or path.startswith("context."):
        return None
    head, _, tail = path.partition(".")
    if head == "arguments":
        return tail.partition(".")[0] or None
    return None if head in _OVERRIDDEN_FIELDS else head


# Operators true only for a measure above or below their value: (measure, at least).
_BOUNDS: dict[str, tuple[Measure, bool]] = {
    "greater_than": ("number", True),
    "less_than": ("number", False),
    "length_greater_than": ("size", True),
}


def _compile_condition(condition: Mapping[str, Any]) -> tuple[Check, Guards]:
    """The check, and its guard (see rule_index): the argument without which it is false (its
    field reads None then, and the operator says no to None), and for ``equals``/``in`` on the
    argument itself the values it can hold."""
    operator, expected = condition["operator"], condition["value"]
    test = compile_operator(operator, expected)
    head = _argument_head(condition["field"])
    guards = NO_GUARDS
    if head is not None and not test(None):
        guards = (Guard(head),)
    name = _argument_name(condition["field"])
    if guards and name is not None and operator in ("equals", "in"):
        # equals compares strings case-insensitively and the rest with ==, in is membership by
        # the same equality: the keys of rule_index describe exactly that (or more).
        keys = [literal_key(item) for item in (expected if operator == "in" else [expected])]
        if all(key is not None for key in keys):
            guards = (Guard(name, frozenset(keys)),)
    bound = _BOUNDS.get(operator)
    if guards and name is not None and bound is not None:
        # The threshold as the operator reads it (compile_operator refused any other).
        threshold = _to_float(expected)
        if threshold is not None and usable_threshold(threshold):
            guards = (Guard(name, bound=Bound(bound[0], bound[1], threshold)),)
    if name is not None:  # the common case, one closure instead of two
        return (lambda view: test(view.arguments.get(name))), guards
    read = _compile_field(condition["field"])
    return (lambda view: test(read(view))), guards


def _compile_all(conditions: list[Mapping[str, Any]]) -> tuple[Check, GuardOptions]:
    """An AND of conditions, and the guards of those that have one."""
    compiled = [_compile_condition(c) for c in conditions]
    return _all_of([check for check, _ in compiled]), tuple(guards for _, guards in compiled if guards)


def _compile_agent_scope(agents: Any) -> Check | None:
    if agents is None:
        return None
    if isinstance(agents, list):
        allowed = frozenset(agents)
        return lambda view: view.agent_id is not None and view.agent_id in allowed
    excluded = frozenset(agents.get("not", ()))
    return lambda view: view.agent_id is None or view.agent_id not in excluded


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    name: str
    action: str
    severity: str
    reason: str
    matched_condition: str | None
    approvers: tuple[str, ...]
    timeout_seconds: int | None
    min_approvals: int
    escalate_to: tuple[str, ...]
    # Agent scope, conditions, `when` and sequence constraints, folded into one closure.
    matches: Check
    rate_limits: tuple[RateLimit, ...] = ()
    # Each is a guard of the rule: it cannot match a call that meets none of that option's
    # guards (no options: any call may match). The index (rule_index.RuleIndex) files the rule
    # under one and skips it for calls that do not meet it.
    guard_options: GuardOptions = ()


def _compile_rule(rule: Mapping[str, Any]) -> CompiledRule:
    checks: list[Check] = []
    agent_scope = _compile_agent_scope(rule.get("agents"))
    if agent_scope is not None:
        checks.append(agent_scope)
    # The SDK reads ``conditions`` when present and non-empty, else ``condition_groups``.
    conditions = rule.get("conditions") or []
    groups = [g for g in rule.get("condition_groups") or [] if g]
    # Guards of the parts of the rule's AND (conditions or groups, when): each is an option.
    options: list[Guards] = []
    if conditions:
        check, condition_options = _compile_all(conditions)
        checks.append(check)
        options.extend(condition_options)
    elif groups:
        compiled = [_compile_all(g) for g in groups]
        compiled_groups = tuple(check for check, _ in compiled)
        # An OR of groups holds only where one group does: it is guarded by the union of one
        # guard per group (each group's best), if every group has one.
        if all(group_options for _, group_options in compiled):
            chosen = (best_guards(group_options) for _, group_options in compiled)
            options.append(tuple(dict.fromkeys(guard for guards in chosen for guard in guards)))

        def any_group(view: CallView) -> bool:
            for group in compiled_groups:
                if group(view):
                    return True
            return False

        checks.append(any_group)
    when = rule.get("when")
    if when is not None:
        evaluate, when_options = compile_when(when)
        checks.append(lambda view: evaluate(view.env))
        options.extend(when_options)
    sequence_fires = compile_sequence_constraints(rule)
    if sequence_fires is not None:
        checks.append(lambda view: sequence_fires(view.call.history, view.call.now))

    name = rule["name"]
    if rule["action"] == "allow":
        default_reason = f"Allowed by rule: {name}"
    else:
        default_reason = f"Matched rule: {name}"
    reason = rule.get("message") or rule.get("description") or default_reason
    return CompiledRule(
        id=rule["id"],
        name=name,
        action=rule["action"],
        severity=rule.get("severity", "medium"),
        reason=reason,
        matched_condition=when if when is not None else _describe_conditions(conditions, groups),
        approvers=tuple(rule.get("approvers") or ()),
        timeout_seconds=rule.get("timeout_seconds"),
        min_approvals=rule.get("min_approvals", 1),
        escalate_to=tuple(rule.get("escalate_to") or ()),
        matches=_all_of(checks),
        rate_limits=tuple(RateLimit(**limit) for limit in rule.get("rate_limits") or ()),
        guard_options=tuple(options),
    )


def _describe_conditions(
    conditions: list[Mapping[str, Any]], groups: list[list[Mapping[str, Any]]]
) -> str | None:
    def one(c: Mapping[str, Any]) -> str:
        return f"{c['field']} {c['operator']} {c['value']!r}"

    if conditions:
        return " AND ".join(one(c) for c in conditions)
    if groups:
        return " OR ".join("(" + " AND ".join(one(c) for c in g) + ")" for g in groups)
    return None


def _bucket_key(rule_id: str, limit: RateLimit, call: ToolCall) -> str:
    """The SDK's key (``veto.rate_limiting.evaluator.build_scope_key``): a missing id counts globally."""
    scope_id: Any = "global"
    if limit.scope != "global":
        scope_id = call.context.get(f"{limit.scope}_id")
        if not isinstance(scope_id, str) or not scope_id:
            scope_id = "global"
    return f"{rule_id}:{limit.scope}:{scope_id}:{call.tool_name}"


# Answers a RateLimitCheck with the limit that was exceeded, or None once the call is counted.
RateLimitAnswer = RateLimit | None
DecisionSteps = Generator[RateLimitCheck, RateLimitAnswer, Decision]


def _never_limited(check: RateLimitCheck) -> RateLimitAnswer:
    return None


class CompiledRuleSet:
    """Evaluate calls against one rule-set version. Immutable; safe to share across threads.

    ``indexed=False`` visits every rule that applies to a call's tool, as the engine did before
    the argument index: the reference the index is tested against."""

    # Rules are expressions and operators over the call: the same call always gets the same answer.
    evaluation_mode: EvaluationMode = "deterministic"

    def __init__(self, document: Mapping[str, Any], *, indexed: bool = True) -> None:
        global_rules: list[CompiledRule] = []
        by_tool: dict[str, list[CompiledRule]] = {}
        history_tools: set[str] = set()
        uses_history: set[str] = set()  # rule ids with sequence constraints
        for rule in document.get("rules", []):
            if not rule.get("enabled", True):
                continue
            compiled = _compile_rule(rule)
            looked_back_for = sequence_tools(rule)
            if looked_back_for:
                history_tools |= looked_back_for
                uses_history.add(compiled.id)
            tools = rule.get("tools") or []
            if tools:
                for tool in tools:
                    by_tool.setdefault(tool, []).append(compiled)
            else:
                global_rules.append(compiled)
        # Each tool's rules are the global ones, then its own, in document order (see the module's
        # docstring); the index skips those a call's arguments show cannot match, and ``matches``
        # has no side effects, so the decision is the one visiting every rule gives
        # (policies/tests/test_rule_index.py).
        chooser = GuardChooser()
        self._global = self._index(tuple(global_rules), (), indexed, chooser)
        self._by_tool: dict[str, RuleIndex[CompiledRule]] = {
            tool: self._index(self._global.rules + tuple(rules), rules, indexed, chooser)
            for tool, rules in by_tool.items()
        }
        self._global_needs_history = any(r.id in uses_history for r in self._global.rules)
        self._tools_needing_history = frozenset(
            tool for tool, index in self._by_tool.items() if any(r.id in uses_history for r in index.rules)
        )
        # Calls of these tools must be remembered per session for later rules to look back on.
        self.history_tools: frozenset[str] = frozenset(history_tools)
        settings = document.get("settings") or {}
        self.default_action: str = settings.get("default_action", "allow")
        self.mode: EnforcementMode = document.get("mode", "strict")
        # When state a rule needs (session history, rate counters) is unreachable: deny or not.
        self.fail_mode: str = settings.get("fail_mode", "closed")
        self.rule_count = sum(1 for r in document.get("rules", []) if r.get("enabled", True))

    @staticmethod
    def _index(
        rules: tuple[CompiledRule, ...], own: Sequence[CompiledRule], indexed: bool, chooser: GuardChooser
    ) -> RuleIndex[CompiledRule]:
        """The index of a tool's rules; ``own`` are the tool's own (not global) rules, whose
        arguments hint at which arguments the tool's calls carry (rule_index.guard_weight)."""
        tool_reads = arguments_read([rule.guard_options for rule in own])
        return RuleIndex(
            rules,
            [rule.guard_options for rule in rules],
            tool_reads=tool_reads,
            indexed=indexed,
            chooser=chooser,
        )

    def rules_for(self, tool_name: str) -> tuple[CompiledRule, ...]:
        """Every rule that can apply to a call of this tool, in the order they are tried."""
        return self._by_tool.get(tool_name, self._global).rules

    def rules_to_visit(self, call: ToolCall) -> Sequence[CompiledRule]:
        """The rules deciding ``call`` tries, in order: ``rules_for`` its tool, less those the
        index shows cannot match it (by the arguments it has and their values)."""
        return self._by_tool.get(call.tool_name, self._global).candidates(CallView(call).arguments)

    def needs_history(self, tool_name: str) -> bool:
        """Whether deciding a call of this tool reads the session's earlier calls."""
        return self._global_needs_history or tool_name in self._tools_needing_history

    def evaluate(
        self, call: ToolCall, rate_limiter: Callable[[RateLimitCheck], RateLimitAnswer] = _never_limited
    ) -> Decision:
        """Decide ``call``; ``rate_limiter`` answers rate-limit questions synchronously (by default
        no limit is ever exceeded). Callers with asynchronous counters drive ``decide`` instead."""
        steps = self.decide(call)
        try:
            check = next(steps)
            while True:
                check = steps.send(rate_limiter(check))
        except StopIteration as finished:
            return finished.value

    def decide(self, call: ToolCall) -> DecisionSteps:
        """The decision as a generator: it yields a ``RateLimitCheck`` for each matching rule with
        rate limits, in rule order, and returns the ``Decision``. A rate-limited rule fires only
        when the answer names an exceeded limit; otherwise the call was counted and it passes."""
        view = CallView(call)
        first_allow: CompiledRule | None = None
        noted: list[str] = []
        for rule in self._by_tool.get(call.tool_name, self._global).candidates(view.arguments):
            if not rule.matches(view):
                continue
            exceeded: RateLimit | None = None
            if rule.rate_limits:
                exceeded = yield RateLimitCheck(
                    rule.id, tuple((limit, _bucket_key(rule.id, limit, call)) for limit in rule.rate_limits)
                )
                if exceeded is None:
                    continue
            action = rule.action
            if action == "block" or action == "require_approval":
                return self._decide(
                    rule, "deny" if action == "block" else "require_approval", noted, exceeded
                )
            if action == "allow":
                if first_allow is None:
                    first_allow = rule
            else:
                noted.append(rule.id)
        if first_allow is not None:
            return self._decide(first_allow, "allow", noted, None)
        return self._default(noted)

    def _decide(
        self, rule: CompiledRule, kind: DecisionKind, noted: list[str], exceeded: RateLimit | None
    ) -> Decision:
        reason = rule.reason
        if exceeded is not None:
            reason = exceeded.exceeded_reason(reason)
        return Decision(
            decision=kind,
            reason=reason,
            mode=self.evaluation_mode,
            rule_id=rule.id,
            rule_name=rule.name,
            severity=rule.severity,
            matched_condition=rule.matched_condition,
            approvers=rule.approvers if kind == "require_approval" else (),
            approval_timeout_seconds=rule.timeout_seconds if kind == "require_approval" else None,
            min_approvals=rule.min_approvals if kind == "require_approval" else 1,
            escalate_to=rule.escalate_to if kind == "require_approval" else (),
            noted_rule_ids=tuple(noted),
            rate_limited=exceeded is not None,
        )

    def _default(self, noted: list[str]) -> Decision:
        if self.default_action == "block":
            kind: DecisionKind = "deny"
        elif self.default_action == "require_approval":
            kind = "require_approval"
        else:
            kind = "allow"
        return Decision(
            decision=kind,
            reason=f"No rule matched; the rule set's default is {kind}",
            mode=self.evaluation_mode,
            noted_rule_ids=tuple(noted),
        )


def compile_rule_set(document: Mapping[str, Any], *, indexed: bool = True) -> CompiledRuleSet:
    """Compile a normalized document (see ``document.normalize_rule_set``); ``indexed=False``
    is the reference evaluation the index is tested against (see ``CompiledRuleSet``)."""
    return CompiledRuleSet(document, indexed=indexed)


EMPTY_RULE_SET = CompiledRuleSet({"rules": []})
