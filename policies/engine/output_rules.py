"""A per-tool policy's ``outputRules``: checked so that every stored rule is one the SDK applies.

The SDK's admin model (``veto.admin.OutputRule``) is ``{id, name, action: block | redact | log,
tools?, output_conditions?: [{field, operator, value}], redact_with?}``. Its own policy language
(``veto.rules.policy_ir_schema`` OutputRule) adds ``description`` (the reason a block gives),
``enabled`` and ``output_condition_groups``, which its ``OutputValidator`` reads too; those are
accepted here as well. Nothing else is, so a key that would be stored and then do nothing is
refused with its path.

Where the SDK applies output rules (veto 0.15.2), which is why this module only checks them:

* ``veto.core.output_validator.OutputValidator.validate(tool_name, output)`` runs after the tool
  returns: from ``Interceptor`` (``veto.core.interceptor``, the guarded call path), from the
  wrapped tool's ``_validate_output_or_throw`` (``Veto.wrap``), and from ``Veto.validate_output``
  (the OpenAI Agents guardrails call that). Its rules come from ``Veto._get_output_rules_for_tool``:
  the rules without ``tools`` plus those naming the tool.
* Those rules are local only: ``Veto._load_output_rules`` reads ``output_rules`` from the policy
  YAML files of the rules directory (``Veto.init``), ``Veto.from_rules(output_rules=...)`` takes
  them inline. The cloud policy's ``outputRules`` is never read: ``PolicyCache`` keeps only
  ``toolName``, ``mode``, ``constraints`` and whether ``sessionConstraints``/``rateLimits`` are
  null, and ``/v1/tools/validate`` carries no output. Tool outputs never reach this server.

So a policy's output rules are stored and served back as the SDK's admin client (``VetoAdmin``)
wrote them, for a client that copies them into its local rules; this server enforces none.

How the SDK evaluates one rule, and what that makes refusable here:

* ``output_conditions`` are ANDed; when there are none, ``output_condition_groups`` are ORed
  (each group ANDed); the SDK never reads the groups when conditions are set, so giving both is
  refused. A rule with neither matches every output (a block rule then blocks every output);
  an empty group would too, and is refused as a likely mistake.
* Operators and values are the rule language's (``policies.engine.conditions``, which follows
  the SDK's ``condition_evaluator``); a condition with an ``expression`` never matches on an
  output (the validator passes no expression evaluator), so it is refused.
* ``matches`` runs Python's ``re`` behind the SDK's ReDoS heuristic (a refused pattern never
  matches: a block rule that silently fails open), case-insensitively for matching and
  case-sensitively for redaction. A pattern is accepted when RE2 compiles it (the server-side
  safety check every pattern here takes) and the SDK would run it.
* ``block`` wins over the others; ``redact`` replaces what each ``matches`` condition's pattern
  finds in the output field it names (``output``, ``output.a.b`` or a top-level key of a dict
  output) with ``redact_with`` (default ``[REDACTED]``), and ignores the other conditions'
  fields; ``log`` only logs. So ``redact_with`` belongs to ``redact`` only, and a redact rule
  without a ``matches`` condition on an output field would redact nothing.

Pure Python: no Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.engine.conditions import OPERATORS, ConditionError, compile_operator
from policies.engine.constraints import _sdk_would_run, check_tool_name
from policies.engine.document import RULE_ID_MAX, RULE_NAME_MAX
from policies.engine.problems import ProblemSink

# (constraints.normalize_tool_policy imports this module when it is called, not when it loads,
# so importing constraints here makes no cycle.)

# Weakest first: loosening.py reads a later action as a stricter one.
OUTPUT_ACTIONS = ("log", "redact", "block")
# What the SDK writes in place of a redacted match when a rule sets no redact_with.
DEFAULT_REDACT_WITH = "[REDACTED]"
MAX_OUTPUT_RULES = 100
MAX_OUTPUT_CONDITIONS = 50
MAX_OUTPUT_CONDITION_GROUPS = 20
MAX_OUTPUT_RULE_TOOLS = 100
MAX_OUTPUT_FIELD_LENGTH = 500
MAX_REDACT_WITH_LENGTH = 1000
MAX_OUTPUT_RULE_DESCRIPTION_LENGTH = 2000
OUTPUT_RULE_KEYS = (
    "id",
    "name",
    "description",
    "enabled",
    "action",
    "tools",
    "output_conditions",
    "output_condition_groups",
    "redact_with",
)
OUTPUT_CONDITION_KEYS = ("field", "operator", "value")
# Fields the SDK's redaction skips: they name the call, not the output (veto OutputValidator._to_output_path),
# or, for context.*, its built-in clock rather than the output.
_NOT_REDACTABLE_FIELDS = frozenset({"tool_name", "toolName", "context"})


def _redacts_something(condition: Mapping[str, Any]) -> bool:
    field = condition.get("field")
    return (
        condition.get("operator") == "matches"
        and isinstance(field, str)
        and field not in _NOT_REDACTABLE_FIELDS
        and not field.startswith("context.")
    )


def _check_pattern(pattern: str, path: str, problems: ProblemSink) -> None:
    refusal = _sdk_would_run(pattern)
    if refusal is not None:
        problems.add(path, f"regular expression {pattern!r} {refusal}")


def _normalize_condition(raw: Any, path: str, problems: ProblemSink) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "an output condition must be an object with field, operator and value")
        return None
    if "expression" in raw:
        problems.add(
            f"{path}.expression",
            "the SDK evaluates no expressions on tool outputs (such a condition never matches); "
            "use field, operator and value",
        )
        return None
    for key in raw:
        if key not in OUTPUT_CONDITION_KEYS:
            problems.add(
                f"{path}.{key}",
                f"unknown output condition key {key!r}; expected {', '.join(OUTPUT_CONDITION_KEYS)}",
            )
    field, operator = raw.get("field"), raw.get("operator")
    if not isinstance(field, str) or not field:
        problems.add(f"{path}.field", "field must be a dot path such as output or output.email")
    elif len(field) > MAX_OUTPUT_FIELD_LENGTH:
        problems.add(f"{path}.field", f"field may be at most {MAX_OUTPUT_FIELD_LENGTH} characters")
    if operator not in OPERATORS:
        problems.add(
            f"{path}.operator", f"unknown operator {operator!r}; expected one of: {', '.join(OPERATORS)}"
        )
    elif "value" not in raw:
        problems.add(f"{path}.value", "an output condition needs a value")
    else:
        value = raw["value"]
        try:
            # The rule language's own check of the value, RE2 for matches included.
            compile_operator(operator, value)
        except ConditionError as exc:
            problems.add(f"{path}.{exc.field}", str(exc))
        else:
            if operator == "matches":
                _check_pattern(value, f"{path}.value", problems)
    return {"field": field, "operator": operator, "value": raw.get("value")}


def _normalize_conditions(raw: Any, path: str, problems: ProblemSink) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.add(path, "must be a list of {field, operator, value}")
        return []
    if len(raw) > MAX_OUTPUT_CONDITIONS:
        problems.add(path, f"at most {MAX_OUTPUT_CONDITIONS} conditions")
        return []
    conditions = []
    for index, item in enumerate(raw):
        condition = _normalize_condition(item, f"{path}[{index}]", problems)
        if condition is not None:
            conditions.append(condition)
    return conditions


def _normalize_groups(raw: Any, path: str, problems: ProblemSink) -> list[list[dict[str, Any]]]:
    if not isinstance(raw, list):
        problems.add(path, "output_condition_groups must be a list of condition lists")
        return []
    if len(raw) > MAX_OUTPUT_CONDITION_GROUPS:
        problems.add(path, f"at most {MAX_OUTPUT_CONDITION_GROUPS} condition groups")
        return []
    groups = []
    for index, group in enumerate(raw):
        here = f"{path}[{index}]"
        if group == []:
            problems.add(here, "an empty condition group matches every output; leave it out")
            continue
        groups.append(_normalize_conditions(group, here, problems))
    return groups


def _normalize_tools(raw: Any, path: str, problems: ProblemSink) -> list[str]:
    if not isinstance(raw, list):
        problems.add(path, "tools must be a list of tool names (none: every tool)")
        return []
    if len(raw) > MAX_OUTPUT_RULE_TOOLS:
        problems.add(path, f"at most {MAX_OUTPUT_RULE_TOOLS} tools")
        return []
    for index, name in enumerate(raw):
        for problem in check_tool_name(name, f"{path}[{index}]"):
            problems.add(problem.path, problem.message)
    return [name for name in raw if isinstance(name, str)]


def _check_text(raw: Mapping[str, Any], key: str, limit: int, path: str, problems: ProblemSink) -> None:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        problems.add(f"{path}.{key}", f"{key} must be a non-empty string")
    elif len(value) > limit:
        problems.add(f"{path}.{key}", f"{key} may be at most {limit} characters")


def _normalize_rule(raw: Any, path: str, problems: ProblemSink) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "an output rule must be an object with id, name and action")
        return None
    for key, value in raw.items():
        if value is not None and key not in OUTPUT_RULE_KEYS:
            problems.add(
                f"{path}.{key}",
                f"unknown output rule key {key!r}; expected one of {', '.join(OUTPUT_RULE_KEYS)}",
            )
    _check_text(raw, "id", RULE_ID_MAX, path, problems)
    _check_text(raw, "name", RULE_NAME_MAX, path, problems)
    action = raw.get("action")
    if action not in OUTPUT_ACTIONS:
        problems.add(f"{path}.action", f"action must be one of block, redact, log, got {action!r}")
    rule: dict[str, Any] = {"id": raw.get("id"), "name": raw.get("name"), "action": action}

    if raw.get("description") is not None:
        _check_text(raw, "description", MAX_OUTPUT_RULE_DESCRIPTION_LENGTH, path, problems)
        rule["description"] = raw["description"]
    enabled = raw.get("enabled")
    if enabled is not None:
        if not isinstance(enabled, bool):
            problems.add(f"{path}.enabled", "enabled must be true or false")
        rule["enabled"] = enabled
    if raw.get("tools") is not None:
        tools = _normalize_tools(raw["tools"], f"{path}.tools", problems)
        if tools:  # none and an empty list both mean every tool to the SDK
            rule["tools"] = tools

    conditions: list[dict[str, Any]] = []
    if raw.get("output_conditions") is not None:
        conditions = _normalize_conditions(raw["output_conditions"], f"{path}.output_conditions", problems)
        if conditions:
            rule["output_conditions"] = conditions
    groups: list[list[dict[str, Any]]] = []
    if raw.get("output_condition_groups") is not None:
        here = f"{path}.output_condition_groups"
        groups = _normalize_groups(raw["output_condition_groups"], here, problems)
        if groups and conditions:
            problems.add(
                here,
                "the SDK reads output_condition_groups only when output_conditions is empty; "
                "give one or the other",
            )
        if groups:
            rule["output_condition_groups"] = groups

    if raw.get("redact_with") is not None:
        redact_with = raw["redact_with"]
        if action != "redact":
            problems.add(f"{path}.redact_with", f"redact_with is used only by action redact, not {action!r}")
        elif not isinstance(redact_with, str):
            problems.add(f"{path}.redact_with", "redact_with must be a string")
        elif len(redact_with) > MAX_REDACT_WITH_LENGTH:
            problems.add(
                f"{path}.redact_with", f"redact_with may be at most {MAX_REDACT_WITH_LENGTH} characters"
            )
        rule["redact_with"] = redact_with
    if action == "redact" and not any(
        _redacts_something(c) for c in [*conditions, *(c for group in groups for c in group)]
    ):
        problems.add(
            f"{path}.output_conditions",
            "a redact rule replaces what its matches conditions find in the output fields they name; "
            "without a matches condition on an output field it redacts nothing",
        )
    return rule


def normalize_output_rules(raw: Any, path: str, problems: ProblemSink) -> list[dict[str, Any]] | None:
    """Check a policy's ``outputRules``, reporting every problem to ``problems`` with its path
    (``outputRules[1].output_conditions[0].operator``). Returns the stored form, None for null
    or an empty list: the rules in order, each with ``id``, ``name``, ``action`` and only the
    other keys it sets (``description``, ``enabled``, ``tools``, ``output_conditions``,
    ``output_condition_groups``, ``redact_with``), as the SDK reads them."""
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        problems.add(path, "outputRules must be a list of output rules or null")
        return None
    if len(raw) > MAX_OUTPUT_RULES:
        problems.add(path, f"at most {MAX_OUTPUT_RULES} output rules per policy")
        return None
    rules = []
    first_with_id: dict[str, int] = {}
    for index, item in enumerate(raw):
        here = f"{path}[{index}]"
        rule = _normalize_rule(item, here, problems)
        if rule is None:
            continue
        rule_id = rule["id"]
        if isinstance(rule_id, str) and rule_id:
            if rule_id in first_with_id:
                problems.add(
                    f"{here}.id", f"id {rule_id!r} is already used by {path}[{first_with_id[rule_id]}]"
                )
            else:
                first_with_id[rule_id] = index
        rules.append(rule)
    return rules or None
