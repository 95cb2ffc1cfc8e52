"""Rule-set documents in, one normalized form out, with every problem found at once.

Accepted input, freely mixed in one document:

* Policy IR v1 (``veto/rules/policy_ir_schema.py`` in the SDK): rules with ``id``,
  ``name``, ``action`` (block|warn|log|allow|require_approval), ``tools``, ``agents``,
  ``conditions`` (AND) and ``condition_groups`` (OR of ANDs), ``severity``...
* The short form of the product's integration pages: ``name``, ``tool``, ``when``
  (an expression), ``action`` (allow|deny|require_approval), ``approvers``,
  ``timeout``, ``message``.

The normalized form is plain JSON (stored with each version) and is what
``compile_rule_set`` takes: every rule has ``id``, ``name``, ``action`` (``deny``
is spelled ``block``, as in the IR), ``tools`` (a list), ``severity`` and the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, NoReturn

from policies.engine.conditions import OPERATORS, ConditionError, compile_operator
from policies.engine.durations import parse_duration
from policies.engine.errors import ExpressionError, Problem, RuleSetError, RuleSetTooLarge
from policies.engine.expressions import compile_expression
from policies.engine.fixtures import EXPECTABLE
from policies.engine.source import DEFAULT_LIMITS, Limits, parse_source, source_lines

ACTIONS = ("block", "warn", "log", "allow", "require_approval")
ACTION_ALIASES = {"deny": "block"}
SEVERITIES = ("critical", "high", "medium", "low", "info")
DEFAULT_SEVERITY = "medium"

_TOP_LEVEL_KEYS = {"version", "name", "description", "mode", "rules", "output_rules", "settings", "fixtures"}
# How a version is enforced: strict answers what it decides; log and shadow record the real
# decision but answer allow, so a new rule set can be watched before it bites.
MODES = ("strict", "log", "shadow")
RATE_LIMIT_SCOPES = ("agent", "user", "session", "global")
# Actions a rate-limited rule may take once its limit is exceeded (allow would be meaningless).
RATE_LIMIT_ACTIONS = ("block", "require_approval", "warn", "log")
MAX_RATE_LIMIT_WINDOW_SECONDS = 7 * 24 * 3600
MAX_RATE_LIMIT_CALLS = 1_000_000
# Every decision a rule makes records its id and name, in this many characters each (the
# rule_id and rule_name columns of audit's decisions and of approvals): a longer one would be
# accepted here and then make every call the rule decides fail to be recorded.
RULE_ID_MAX = 200
RULE_NAME_MAX = 200
_SUITE_KEYS = {"suite", "tests"}
_TEST_KEYS = {"id", "tool", "arguments", "context", "expect", "description"}
_EXPECT_KEYS = {"decision", "rule_id"}
_RULE_KEYS = {
    # Policy IR v1
    "id",
    "name",
    "description",
    "enabled",
    "severity",
    "action",
    "tools",
    "agents",
    "conditions",
    "condition_groups",
    "tags",
    "metadata",
    # short form
    "tool",
    "when",
    "approvers",
    "timeout",
    "message",
    # approvals: quorum and what happens at the deadline
    "min_approvals",
    "on_timeout",
    "escalate_to",
    # sequence constraints over the session's call history, and this server's rate limits
    "blocked_by",
    "requires",
    "rate_limits",
}
_SEQUENCE_KEYS = {"tool", "conditions", "condition_groups", "within"}
_RATE_LIMIT_KEYS = {"scope", "window_seconds", "max_calls"}
_SETTINGS_KEYS = {"default_action", "fail_mode", "global_tags"}
_CONDITION_KEYS = {"field", "operator", "value"}


class _Collector:
    def __init__(self, lines: Mapping[str, int]) -> None:
        self.lines = lines
        self.problems: list[Problem] = []

    def unknown_keys(
        self,
        mapping: Mapping[str, Any],
        allowed: set[str],
        path: str,
        what: str,
        special: Mapping[str, str] = {},
    ) -> None:
        """A problem for each key of ``mapping`` not in ``allowed`` (``special`` keys get their own message)."""
        for key in mapping:
            if key in allowed:
                continue
            where = f"{path}.{key}" if path else str(key)
            self.add(where, (special or {}).get(key) or f"unknown {what} {key!r}")

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, _line_of(path, self.lines)))


def _line_of(path: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``path``, or of its nearest ancestor the map knows."""
    probe = path
    while probe:
        line = lines.get(probe)
        if line is not None:
            return line
        probe = probe.rsplit(".", 1)[0] if "." in probe else (probe.rsplit("[", 1)[0] if "[" in probe else "")
    return lines.get("")


def load_rule_set(
    text: str, *, content_type: str = "application/yaml", limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """Parse, check and normalize a document; raises ``RuleSetError`` listing every problem,
    each with a line (``RuleSetTooLarge`` for a document over ``limits``)."""
    data, lines = parse_source(text, content_type=content_type, limits=limits)
    try:
        return normalize_rule_set(data, lines=lines, limits=limits)
    except RuleSetError as exc:
        if "json" not in content_type:
            raise
        # JSON parses without a line map (fast); the refused document's problems get lines now.
        json_lines = source_lines(text, limits=limits)
        located = [replace(p, line=_line_of(p.path, json_lines) or p.line) for p in exc.problems]
        if isinstance(exc, RuleSetTooLarge):
            raise RuleSetTooLarge(
                located[0], limit=exc.limit, maximum=exc.maximum, actual=exc.actual
            ) from exc
        raise RuleSetError(located) from exc


def normalize_rule_set(
    data: Any, *, lines: Mapping[str, int] | None = None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """Check and normalize already-parsed data (see ``load_rule_set``); refuses more rules or
    fixture tests than ``limits`` allow before checking any of them."""
    problems = _Collector(lines or {})
    if isinstance(data, list):
        data = {"rules": data}
    if not isinstance(data, Mapping):
        problems.add("", "a rule set must be a mapping with a 'rules' list (or a list of rules)")
        raise RuleSetError(problems.problems)

    problems.unknown_keys(
        data,
        _TOP_LEVEL_KEYS,
        "",
        "key",
        {"extends": "unknown key 'extends' (built-in policy packs are not supported)"},
    )
    version = data.get("version", "1.0")
    if version not in ("1.0", 1.0, 1):
        problems.add("version", f'version must be "1.0", got {version!r}')

    normalized: dict[str, Any] = {"version": "1.0"}
    for key in ("name", "description"):
        if key in data:
            if isinstance(data[key], str):
                normalized[key] = data[key]
            else:
                problems.add(key, f"{key} must be a string")

    mode = data.get("mode", "strict")
    if mode not in MODES:
        problems.add("mode", f"mode must be strict, log or shadow, got {mode!r}")
        mode = "strict"
    normalized["mode"] = mode
    normalized["settings"] = _normalize_settings(data.get("settings"), problems)

    rules_raw = data.get("rules")
    if rules_raw is None:
        problems.add("rules", "a rule set needs a 'rules' list")
        rules_raw = []
    elif not isinstance(rules_raw, list):
        problems.add("rules", "rules must be a list")
        rules_raw = []
    elif len(rules_raw) > limits.max_rules:
        _refuse_over_limit(
            "rules",
            f"the rule set has {len(rules_raw)} rules; at most {limits.max_rules} are allowed",
            problems,
            limit="max_rules",
            maximum=limits.max_rules,
            actual=len(rules_raw),
        )

    _refuse_too_many_expression_chars(rules_raw, problems, limits)
    rules = []
    seen_ids: dict[str, int] = {}
    for index, raw in enumerate(rules_raw):
        rule = _normalize_rule(raw, f"rules[{index}]", problems)
        if rule is None:
            continue
        if rule["id"] in seen_ids:
            problems.add(
                f"rules[{index}].id",
                f"duplicate rule id {rule['id']!r} (also rules[{seen_ids[rule['id']]}])",
            )
        else:
            seen_ids[rule["id"]] = index
        rules.append(rule)
    normalized["rules"] = rules

    output_rules = data.get("output_rules")
    if output_rules is not None:
        if isinstance(output_rules, list):
            normalized["output_rules"] = output_rules
        else:
            problems.add("output_rules", "output_rules must be a list")

    if "fixtures" in data:
        _refuse_too_many_fixture_tests(data["fixtures"], problems, limits)
        normalized["fixtures"] = _normalize_fixtures(data["fixtures"], problems)

    if problems.problems:
        raise RuleSetError(problems.problems)
    return normalized


def _refuse_too_many_expression_chars(rules_raw: list[Any], problems: _Collector, limits: Limits) -> None:
    chars = sum(
        len(rule["when"])
        for rule in rules_raw
        if isinstance(rule, Mapping) and isinstance(rule.get("when"), str)
    )
    if chars > limits.max_expression_chars:
        _refuse_over_limit(
            "rules",
            f"the rules' when: expressions have {chars} characters together; at most "
            f"{limits.max_expression_chars} are allowed",
            problems,
            limit="max_expression_chars",
            maximum=limits.max_expression_chars,
            actual=chars,
        )


def _refuse_too_many_fixture_tests(raw: Any, problems: _Collector, limits: Limits) -> None:
    if not isinstance(raw, list):
        return
    count = sum(
        len(suite["tests"])
        for suite in raw
        if isinstance(suite, Mapping) and isinstance(suite.get("tests"), list)
    )
    if count > limits.max_fixture_tests:
        _refuse_over_limit(
            "fixtures",
            f"the rule set has {count} fixture tests; at most {limits.max_fixture_tests} are allowed",
            problems,
            limit="max_fixture_tests",
            maximum=limits.max_fixture_tests,
            actual=count,
        )


def _refuse_over_limit(
    path: str, message: str, problems: _Collector, *, limit: str, maximum: int, actual: int
) -> NoReturn:
    """One limit exceeded: refused whole, located at ``path``, before any rule is checked."""
    raise RuleSetTooLarge(
        Problem(path, message, _line_of(path, problems.lines)),
        limit=limit,
        maximum=maximum,
        actual=actual,
    )


def _normalize_fixtures(raw: Any, problems: _Collector) -> list[dict[str, Any]]:
    """Suites in the SDK's fixture format (see fixtures.py), checked like the rules."""
    if not isinstance(raw, list):
        problems.add("fixtures", "fixtures must be a list of suites ({suite, tests})")
        return []
    suites = []
    for i, suite in enumerate(raw):
        path = f"fixtures[{i}]"
        if not isinstance(suite, Mapping):
            problems.add(path, "a fixture suite must be a mapping with suite and tests")
            continue
        problems.unknown_keys(suite, _SUITE_KEYS, path, "fixture suite key")
        name = suite.get("suite")
        if not isinstance(name, str) or not name:
            problems.add(f"{path}.suite", "a suite needs a name")
        tests_raw = suite.get("tests")
        if not isinstance(tests_raw, list):
            problems.add(f"{path}.tests", "tests must be a list")
            tests_raw = []
        tests = []
        seen: set[str] = set()
        for j, test in enumerate(tests_raw):
            here = f"{path}.tests[{j}]"
            normalized_test = _normalize_fixture_test(test, here, problems)
            if normalized_test is None:
                continue
            if normalized_test["id"] in seen:
                problems.add(f"{here}.id", f"duplicate test id {normalized_test['id']!r} in this suite")
            seen.add(normalized_test["id"])
            tests.append(normalized_test)
        suites.append({"suite": name if isinstance(name, str) else "", "tests": tests})
    return suites


def _normalize_fixture_test(test: Any, path: str, problems: _Collector) -> dict[str, Any] | None:
    if not isinstance(test, Mapping):
        problems.add(path, "a fixture test must be a mapping with id, tool and expect")
        return None
    problems.unknown_keys(test, _TEST_KEYS, path, "fixture test key")
    for key in ("id", "tool"):
        if not isinstance(test.get(key), str) or not test.get(key):
            problems.add(f"{path}.{key}", f"{key} must be a non-empty string")
    arguments = test.get("arguments", {})
    if not isinstance(arguments, Mapping):
        problems.add(f"{path}.arguments", "arguments must be a mapping")
        arguments = {}
    context = test.get("context")
    if context is not None and not isinstance(context, Mapping):
        problems.add(f"{path}.context", "context must be a mapping")
        context = None
    expect = test.get("expect")
    if not isinstance(expect, Mapping):
        problems.add(f"{path}.expect", "expect must be a mapping with decision (and optionally rule_id)")
        expect = {}
    problems.unknown_keys(expect, _EXPECT_KEYS, f"{path}.expect", "expectation")
    decision = expect.get("decision", "allow")
    if decision not in EXPECTABLE:
        problems.add(f"{path}.expect.decision", f"decision must be one of {', '.join(EXPECTABLE)}")
    rule_id = expect.get("rule_id")
    if rule_id is not None and not isinstance(rule_id, str):
        problems.add(f"{path}.expect.rule_id", "rule_id must be a string")
    return {
        "id": str(test.get("id", "")),
        "tool": str(test.get("tool", "")),
        "arguments": dict(arguments),
        "context": dict(context) if context is not None else None,
        "expect": {"decision": decision, "rule_id": rule_id},
        **({"description": test["description"]} if isinstance(test.get("description"), str) else {}),
    }


def _normalize_settings(raw: Any, problems: _Collector) -> dict[str, Any]:
    settings: dict[str, Any] = {"default_action": "allow"}
    if raw is None:
        return settings
    if not isinstance(raw, Mapping):
        problems.add("settings", "settings must be a mapping")
        return settings
    problems.unknown_keys(raw, _SETTINGS_KEYS, "settings", "setting")
    if "default_action" in raw:
        action = ACTION_ALIASES.get(raw["default_action"], raw["default_action"])
        if action not in ("allow", "block", "require_approval"):
            problems.add("settings.default_action", "default_action must be allow, deny or require_approval")
        else:
            settings["default_action"] = action
    if "fail_mode" in raw:
        if raw["fail_mode"] not in ("open", "closed"):
            problems.add("settings.fail_mode", "fail_mode must be open or closed")
        else:
            settings["fail_mode"] = raw["fail_mode"]
    if "global_tags" in raw:
        tags = raw["global_tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problems.add("settings.global_tags", "global_tags must be a list of strings")
        else:
            settings["global_tags"] = tags
    return settings


def _string_list(value: Any, path: str, problems: _Collector, what: str) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        problems.add(path, f"{what} must be a list of non-empty strings")
        return None
    return list(value)


def _normalize_rule(raw: Any, path: str, problems: _Collector) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "a rule must be a mapping")
        return None
    problems.unknown_keys(
        raw,
        _RULE_KEYS,
        path,
        "rule key",
    )

    name = raw.get("name")
    rule_id = raw.get("id", name)
    if not isinstance(name, str) or not name.strip():
        if isinstance(rule_id, str) and rule_id.strip():
            name = rule_id
        else:
            problems.add(f"{path}.name", "a rule needs a non-empty name (or id)")
            name = rule_id = f"<{path}>"
    if not isinstance(rule_id, str) or not rule_id.strip():
        problems.add(f"{path}.id", "id must be a non-empty string")
        rule_id = str(name)

    if len(rule_id) > RULE_ID_MAX:
        # The id may have come from the name (no id given): say where it was written.
        problems.add(
            f"{path}.{'id' if 'id' in raw else 'name'}", f"a rule id may be at most {RULE_ID_MAX} characters"
        )
    if isinstance(name, str) and name is not rule_id and len(name) > RULE_NAME_MAX:
        problems.add(f"{path}.name", f"a rule name may be at most {RULE_NAME_MAX} characters")

    rule: dict[str, Any] = {"id": rule_id, "name": name}

    action_raw = raw.get("action")
    action = ACTION_ALIASES.get(action_raw, action_raw) if isinstance(action_raw, str) else action_raw
    if action_raw is None:
        problems.add(
            f"{path}.action", "a rule needs an action: allow, deny (block), require_approval, warn or log"
        )
    elif action not in ACTIONS:
        problems.add(
            f"{path}.action",
            f"unknown action {action_raw!r}; expected allow, deny (block), require_approval, warn or log",
        )
    rule["action"] = action if action in ACTIONS else "block"

    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(f"{path}.enabled", "enabled must be true or false")
    rule["enabled"] = enabled is not False

    severity = raw.get("severity", DEFAULT_SEVERITY)
    if severity not in SEVERITIES:
        problems.add(f"{path}.severity", f"severity must be one of {', '.join(SEVERITIES)}")
        severity = DEFAULT_SEVERITY
    rule["severity"] = severity

    for key in ("description", "message"):
        if key in raw:
            if isinstance(raw[key], str):
                rule[key] = raw[key]
            else:
                problems.add(f"{path}.{key}", f"{key} must be a string")

    tools: list[str] = []
    if "tools" in raw:
        tools = _string_list(raw["tools"], f"{path}.tools", problems, "tools") or []
    if "tool" in raw:
        tool = _string_list(raw["tool"], f"{path}.tool", problems, "tool") or []
        tools = tools + [t for t in tool if t not in tools]
    rule["tools"] = tools

    if "agents" in raw:
        agents = raw["agents"]
        if isinstance(agents, list) and all(isinstance(a, str) and a for a in agents):
            rule["agents"] = list(agents)
        elif isinstance(agents, Mapping) and set(agents) == {"not"} and isinstance(agents["not"], list):
            rule["agents"] = {"not": [a for a in agents["not"] if isinstance(a, str)]}
        else:
            problems.add(f"{path}.agents", "agents must be a list of agent ids or {not: [agent ids]}")

    if "when" in raw:
        when = raw["when"]
        if isinstance(when, bool):
            when = "true" if when else "false"
        if not isinstance(when, str):
            problems.add(f"{path}.when", "when must be an expression string")
        else:
            try:
                compile_expression(when)
            except ExpressionError as exc:
                where = f" at column {exc.column}" if exc.column else ""
                problems.add(f"{path}.when", f"{exc}{where}")
            rule["when"] = when

    if "conditions" in raw:
        rule["conditions"] = _normalize_conditions(raw["conditions"], f"{path}.conditions", problems)
    if "condition_groups" in raw:
        groups_raw = raw["condition_groups"]
        if not isinstance(groups_raw, list):
            problems.add(f"{path}.condition_groups", "condition_groups must be a list of condition lists")
        else:
            rule["condition_groups"] = [
                _normalize_conditions(group, f"{path}.condition_groups[{i}]", problems)
                for i, group in enumerate(groups_raw)
            ]

    if "approvers" in raw:
        rule["approvers"] = _string_list(raw["approvers"], f"{path}.approvers", problems, "approvers") or []
    if "timeout" in raw:
        try:
            rule["timeout_seconds"] = parse_duration(raw["timeout"])
        except ValueError as exc:
            problems.add(f"{path}.timeout", str(exc))
    if "min_approvals" in raw:
        needed = raw["min_approvals"]
        if isinstance(needed, bool) or not isinstance(needed, int) or not 1 <= needed <= 10:
            problems.add(f"{path}.min_approvals", "min_approvals must be a whole number from 1 to 10")
        else:
            rule["min_approvals"] = needed
    if "on_timeout" in raw and raw["on_timeout"] != "deny":
        problems.add(
            f"{path}.on_timeout",
            "on_timeout must be deny (the default); to hand the approval to another group at its "
            "deadline, use escalate_to: [group]",
        )
    if "escalate_to" in raw:
        rule["escalate_to"] = (
            _string_list(raw["escalate_to"], f"{path}.escalate_to", problems, "escalate_to") or []
        )
    approval_keys = ("approvers", "timeout", "min_approvals", "on_timeout", "escalate_to")
    if any(key in raw for key in approval_keys) and rule["action"] != "require_approval":
        problems.add(
            f"{path}.action",
            "approvers, timeout, min_approvals, on_timeout and escalate_to only apply to action require_approval",
        )

    for key in ("blocked_by", "requires"):
        if key in raw:
            rule[key] = _normalize_sequence(raw[key], f"{path}.{key}", problems)
    if "rate_limits" in raw:
        rule["rate_limits"] = _normalize_rate_limits(raw["rate_limits"], f"{path}.rate_limits", problems)
        if rule["action"] not in RATE_LIMIT_ACTIONS:
            problems.add(
                f"{path}.action",
                "a rule with rate_limits takes effect when a limit is exceeded, so its action must be "
                "block, require_approval, warn or log",
            )

    if "tags" in raw:
        rule["tags"] = _string_list(raw["tags"], f"{path}.tags", problems, "tags") or []
    if "metadata" in raw:
        if isinstance(raw["metadata"], Mapping):
            rule["metadata"] = dict(raw["metadata"])
        else:
            problems.add(f"{path}.metadata", "metadata must be a mapping")
    return rule


def _mapping_items(
    raw: Any,
    path: str,
    problems: _Collector,
    *,
    allowed: set[str],
    not_a_list: str,
    not_a_mapping: str,
    what: str = "key",
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(path, item)`` for each mapping in the list ``raw``, after reporting a non-list, each
    non-mapping item and each unknown key."""
    if not isinstance(raw, list):
        problems.add(path, not_a_list)
        return
    for index, item in enumerate(raw):
        here = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            problems.add(here, not_a_mapping)
            continue
        problems.unknown_keys(item, allowed, here, what)
        yield here, item


def _normalize_sequence(raw: Any, path: str, problems: _Collector) -> list[dict[str, Any]]:
    """``blocked_by`` / ``requires``: the SDK's SequenceConstraint list."""
    constraints = []
    for here, item in _mapping_items(
        raw,
        path,
        problems,
        allowed=_SEQUENCE_KEYS,
        not_a_list="must be a list of {tool, conditions, condition_groups, within}",
        not_a_mapping="a sequence constraint must be a mapping with at least a tool",
    ):
        tool = item.get("tool")
        if not isinstance(tool, str) or not tool:
            problems.add(f"{here}.tool", "tool must be the name of an earlier tool call")
        constraint: dict[str, Any] = {"tool": tool if isinstance(tool, str) else ""}
        if "conditions" in item:
            constraint["conditions"] = _normalize_conditions(
                item["conditions"], f"{here}.conditions", problems
            )
        if "condition_groups" in item:
            groups = item["condition_groups"]
            if not isinstance(groups, list):
                problems.add(f"{here}.condition_groups", "condition_groups must be a list of condition lists")
            else:
                constraint["condition_groups"] = [
                    _normalize_conditions(group, f"{here}.condition_groups[{i}]", problems)
                    for i, group in enumerate(groups)
                ]
        if "within" in item:
            within = item["within"]
            if isinstance(within, bool) or not isinstance(within, (int, float)) or within < 0:
                problems.add(f"{here}.within", "within must be a number of seconds, 0 or more")
            else:
                constraint["within"] = within
        constraints.append(constraint)
    return constraints


def _normalize_rate_limits(raw: Any, path: str, problems: _Collector) -> list[dict[str, Any]]:
    if raw == []:
        problems.add(path, "rate_limits must be a non-empty list of {scope, window_seconds, max_calls}")
    limits = []
    for here, item in _mapping_items(
        raw,
        path,
        problems,
        allowed=_RATE_LIMIT_KEYS,
        not_a_list="rate_limits must be a non-empty list of {scope, window_seconds, max_calls}",
        not_a_mapping="a rate limit must be a mapping with scope, window_seconds and max_calls",
    ):
        scope = item.get("scope", "global")
        if scope not in RATE_LIMIT_SCOPES:
            problems.add(
                f"{here}.scope", f"scope must be one of {', '.join(RATE_LIMIT_SCOPES)}, got {scope!r}"
            )
        window = item.get("window_seconds")
        if (
            isinstance(window, bool)
            or not isinstance(window, int)
            or not 1 <= window <= MAX_RATE_LIMIT_WINDOW_SECONDS
        ):
            problems.add(
                f"{here}.window_seconds",
                f"window_seconds must be a whole number from 1 to {MAX_RATE_LIMIT_WINDOW_SECONDS}",
            )
        max_calls = item.get("max_calls")
        if (
            isinstance(max_calls, bool)
            or not isinstance(max_calls, int)
            or not 1 <= max_calls <= MAX_RATE_LIMIT_CALLS
        ):
            problems.add(
                f"{here}.max_calls", f"max_calls must be a whole number from 1 to {MAX_RATE_LIMIT_CALLS}"
            )
        limits.append({"scope": scope, "window_seconds": window, "max_calls": max_calls})
    return limits


def _normalize_conditions(raw: Any, path: str, problems: _Collector) -> list[dict[str, Any]]:
    conditions: list[dict[str, Any]] = []
    for here, condition in _mapping_items(
        raw,
        path,
        problems,
        allowed=_CONDITION_KEYS,
        not_a_list="conditions must be a list",
        not_a_mapping="a condition must be a mapping with field, operator and value",
        what="condition key",
    ):
        field, operator = condition.get("field"), condition.get("operator")
        if not isinstance(field, str) or not field:
            problems.add(f"{here}.field", "field must be a dot path such as arguments.amount")
        if operator not in OPERATORS:
            problems.add(
                f"{here}.operator", f"unknown operator {operator!r}; expected one of: {', '.join(OPERATORS)}"
            )
        elif "value" not in condition:
            problems.add(f"{here}.value", "a condition needs a value")
        else:
            try:
                compile_operator(operator, condition["value"])
            except ConditionError as exc:
                problems.add(f"{here}.{exc.field}", str(exc))
        conditions.append({"field": field, "operator": operator, "value": condition.get("value")})
    return conditions
