"""Per-tool policies: argument constraints, checked as the published SDK checks them locally.

A per-tool policy (``/v1/policies``) carries ``constraints``: for one argument each, numeric
bounds, string length, a regular expression, an allowed-value list, array size, presence.
The SDK fetches a policy (``GET /v1/policies/{toolName}``) and, when it may, decides with
``veto.deterministic.validator.validate_deterministic`` without asking the server; when it
does ask, the server must reach the same decision for the same reason. So this module
reproduces that validator exactly (checked by policies/tests/test_sdk_constraint_parity.py):

* constraints are checked in order, disabled ones skipped; the first failing one decides;
* an argument that is absent or null fails only ``required`` (absent) or ``notNull``
  (present and null), and is otherwise not checked further;
* numbers (not booleans) are checked against NaN/infinity, then ``greaterThan``,
  ``lessThan``, ``greaterThanOrEqual``, ``lessThanOrEqual``, ``minimum``, ``maximum``;
  strings against ``minLength``, ``maxLength``, ``regex`` (a search, not a full match),
  ``enum``; arrays against ``minItems``, ``maxItems``; other values always pass;
* reasons are the SDK's, word for word.

Where the two must differ, the difference is refused when the policy is written rather than
left to surprise at run time: regular expressions run on RE2 here (linear time), and a pattern
is accepted only if RE2 compiles it *and* the SDK would run it (Python's ``re`` compiles it,
the SDK's ReDoS heuristic accepts it, at most 256 characters). What remains different is
documented: RE2's ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII where Python's are Unicode,
and RE2's ``$`` does not match before a final newline.

Pure Python: no Django. ``normalize_tool_policy`` checks a whole request body and reports
every problem with its path (``constraints[1].regex``); ``compile_constraints`` turns stored
constraints into a checker.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, get_args

from policies.engine.errors import ExpressionError, Problem, RuleSetError
from policies.engine.evaluator import EvaluationMode
from policies.engine.regexes import compile_search

# A policy's mode: deterministic (constraints decide), or llm (a model may grant listed exceptions).
MODES: tuple[EvaluationMode, ...] = get_args(EvaluationMode)
# The one limit on a tool's name, wherever one is accepted: registration (POST /v1/tools/register),
# policies, validate and the client decision log; so any name that can be registered can get a
# policy. A policy's decisions name their rule "policy:" + the tool's name, which must fit a
# decision's 200-character rule id (audit and approvals rows): 190 does, and is what
# policies.models.ToolPolicy.tool_name stores.
TOOL_NAME_MAX = 190
ARGUMENT_NAME_MAX = 200
MAX_CONSTRAINTS = 500
MAX_ENUM_VALUES = 1000
# The SDK's local validator refuses longer patterns (veto.deterministic.validator).
SDK_MAX_PATTERN_LENGTH = 256
# Paths that cannot be told apart from a policy's own sub-resources.
RESERVED_TOOL_NAMES = frozenset({"export"})

NUMBER_BOUNDS = ("greaterThan", "lessThan", "greaterThanOrEqual", "lessThanOrEqual", "minimum", "maximum")
STRING_SIZES = ("minLength", "maxLength")
ARRAY_SIZES = ("minItems", "maxItems")
FLAGS = ("required", "notNull")
# In the SDK's admin model, not in its local validator: checked here only, so a policy with one
# is always decided by the server (policies.selectors.tool_policy_server_marker).
SERVER_ONLY_CONSTRAINT_KEYS = ("notRegex", "notEnum", "dynamicMinimum", "dynamicMaximum")
# A dynamic bound names another argument of the same call whose number is the bound (decided
# here: the SDK's model gives the key, as a string, and no meaning).
DYNAMIC_BOUNDS = ("dynamicMinimum", "dynamicMaximum")
CONSTRAINT_KEYS = frozenset(
    {
        "argumentName",
        "enabled",
        *NUMBER_BOUNDS,
        *STRING_SIZES,
        *ARRAY_SIZES,
        *FLAGS,
        "regex",
        "enum",
        *SERVER_ONLY_CONSTRAINT_KEYS,
        "action",
    }
)
# What a failing constraint does: deny (the SDK's only behaviour), or hold the call for a
# person. The SDK's local validator knows only deny, so a policy with a require_approval
# constraint is always decided by the server (see policies.selectors.tool_policy_server_marker).
CONSTRAINT_ACTIONS = ("deny", "require_approval")

# Keys the server computes: sent back unchanged by a client that round-trips a fetched policy.
READ_ONLY_POLICY_KEYS = frozenset(
    {"_id", "id", "version", "isActive", "createdAt", "updatedAt", "updatedBy", "projectId"}
)
# Set by the server in ``sessionConstraints`` to make the SDK ask it (see policies.selectors).
SERVER_MARKER_KEYS = frozenset(
    {
        "evaluatedBy",
        "ruleSet",
        "policyActive",
        "approvalConstraints",
        "sessionCounters",
        "serverOnlyConstraints",
    }
)


# ---------------------------------------------------------------------------------------------
# Write time: a request body in, the stored form out, every problem with its path.


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sdk_would_run(pattern: str) -> str | None:
    """Why the SDK's local validator would refuse ``pattern`` (it then denies every string), or None."""
    if len(pattern) > SDK_MAX_PATTERN_LENGTH:
        return f"is longer than {SDK_MAX_PATTERN_LENGTH} characters, which the SDK refuses"
    if not is_safe_pattern(pattern):
        return (
            "has nested or overlapping quantifiers the SDK refuses as a ReDoS risk "
            "(it would deny every call locally)"
        )
    with warnings.catch_warnings():
        # Python reads "[[:alpha:]]" as a nested set with a FutureWarning; RE2 as a POSIX class.
        warnings.simplefilter("error")
        try:
            re.compile(pattern)
        except (re.error, FutureWarning, DeprecationWarning) as exc:
            return f"is not understood alike by the SDK (Python re: {exc})"
    return None


def _check_regex(pattern: Any, path: str, problems: _Problems) -> None:
    if not isinstance(pattern, str):
        problems.add(path, "regex must be a string")
        return
    try:
        compile_search(pattern)
    except ExpressionError as exc:
        problems.add(path, str(exc))
        return
    refusal = _sdk_would_run(pattern)
    if refusal is not None:
        problems.add(path, f"regular expression {pattern!r} {refusal}")


def _normalize_constraint(raw: Any, path: str, problems: _Problems) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "a constraint must be an object with argumentName and the checks to apply")
        return None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        here = f"{path}.{key}"
        if value is None:
            continue  # null means "not set", as the SDK's models send it
        if key not in CONSTRAINT_KEYS:
            problems.add(
                here, f"unknown constraint key {key!r}; expected one of {', '.join(sorted(CONSTRAINT_KEYS))}"
            )
    name = raw.get("argumentName")
    if not isinstance(name, str) or not name:
        problems.add(f"{path}.argumentName", "argumentName must be a non-empty string")
    elif len(name) > ARGUMENT_NAME_MAX:
        problems.add(f"{path}.argumentName", f"argumentName may be at most {ARGUMENT_NAME_MAX} characters")
    out["argumentName"] = name
    enabled = raw.get("enabled", True)
    if enabled is None:
        enabled = True
    if not isinstance(enabled, bool):
        problems.add(f"{path}.enabled", "enabled must be true or false")
    out["enabled"] = enabled is not False
    action = raw.get("action")
    if action is not None:
        if action not in CONSTRAINT_ACTIONS:
            problems.add(f"{path}.action", "action must be deny (the default) or require_approval")
        elif action == "require_approval":
            out["action"] = action

    for key in NUMBER_BOUNDS:
        value = raw.get(key)
        if value is None:
            continue
        if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            problems.add(f"{path}.{key}", f"{key} must be a finite number")
        else:
            out[key] = value
    for key in (*STRING_SIZES, *ARRAY_SIZES):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.add(f"{path}.{key}", f"{key} must be a whole number, 0 or more")
        else:
            out[key] = value
    for key in FLAGS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            problems.add(f"{path}.{key}", f"{key} must be true or false")
        else:
            out[key] = value
    if raw.get("regex") is not None:
        _check_regex(raw["regex"], f"{path}.regex", problems)
        out["regex"] = raw["regex"]
    if raw.get("notRegex") is not None:
        # The server alone runs it (on RE2), so the SDK's own limits on patterns do not apply.
        if not isinstance(raw["notRegex"], str):
            problems.add(f"{path}.notRegex", "notRegex must be a string")
        else:
            try:
                compile_search(raw["notRegex"])
                out["notRegex"] = raw["notRegex"]
            except ExpressionError as exc:
                problems.add(f"{path}.notRegex", str(exc))
    for key in DYNAMIC_BOUNDS:
        bound = raw.get(key)
        if bound is None:
            continue
        if not isinstance(bound, str) or not bound or len(bound) > ARGUMENT_NAME_MAX:
            problems.add(
                f"{path}.{key}", f"{key} must name another argument (1 to {ARGUMENT_NAME_MAX} characters)"
            )
        elif bound == name:
            problems.add(f"{path}.{key}", f"{key} names the argument itself: it would always pass")
        else:
            out[key] = bound
    not_enum = raw.get("notEnum")
    if not_enum is not None:
        if not isinstance(not_enum, list) or not all(isinstance(v, str) for v in not_enum) or not not_enum:
            problems.add(
                f"{path}.notEnum", "notEnum must be a non-empty list of strings (the values refused)"
            )
        elif len(not_enum) > MAX_ENUM_VALUES:
            problems.add(f"{path}.notEnum", f"notEnum may list at most {MAX_ENUM_VALUES} values")
        else:
            out["notEnum"] = list(not_enum)
    enum = raw.get("enum")
    if enum is not None:
        if not isinstance(enum, list) or not all(isinstance(v, str) for v in enum):
            problems.add(
                f"{path}.enum", "enum must be a list of strings (the values a string argument may take)"
            )
        elif not enum:
            problems.add(
                f"{path}.enum", "enum must list at least one value (an empty list refuses every string)"
            )
        elif len(enum) > MAX_ENUM_VALUES:
            problems.add(f"{path}.enum", f"enum may list at most {MAX_ENUM_VALUES} values")
        else:
            out["enum"] = list(enum)

    for low, high in (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems")):
        if low in out and high in out and out[low] > out[high]:
            problems.add(
                f"{path}.{low}", f"{low} ({out[low]}) is greater than {high} ({out[high]}): nothing can pass"
            )
    if "greaterThan" in out and "lessThan" in out and out["greaterThan"] >= out["lessThan"]:
        problems.add(
            f"{path}.greaterThan",
            f"greaterThan ({out['greaterThan']}) is not below lessThan ({out['lessThan']}): nothing can pass",
        )
    return out


def normalize_constraints(raw: Any, *, path: str = "constraints") -> list[dict[str, Any]]:
    """Check a list of constraints; raises ``RuleSetError`` with every problem (paths like
    ``constraints[1].regex``). Returns the stored form: camelCase keys as the SDK reads them,
    ``argumentName`` and ``enabled`` always present, unset checks left out."""
    problems = _Problems()
    result = _normalize_constraint_list(raw, path, problems)
    if problems.items:
        raise RuleSetError(problems.items)
    return result


def _normalize_constraint_list(raw: Any, path: str, problems: _Problems) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add(path, "constraints must be a list of constraint objects")
        return []
    if len(raw) > MAX_CONSTRAINTS:
        problems.add(path, f"at most {MAX_CONSTRAINTS} constraints per policy")
        return []
    normalized = []
    for index, item in enumerate(raw):
        constraint = _normalize_constraint(item, f"{path}[{index}]", problems)
        if constraint is not None:
            normalized.append(constraint)
    return normalized


def check_tool_name(value: Any, path: str = "toolName") -> list[Problem]:
    if not isinstance(value, str) or not value:
        return [Problem(path, "toolName must be a non-empty string")]
    if len(value) > TOOL_NAME_MAX:
        return [Problem(path, f"toolName may be at most {TOOL_NAME_MAX} characters")]
    if value != value.strip():
        return [Problem(path, "toolName must not start or end with whitespace")]
    if value in RESERVED_TOOL_NAMES:
        return [
            Problem(
                path,
                f"a policy for a tool named {value!r} cannot be served: GET /v1/policies/{value} "
                "is the policies export",
            )
        ]
    return []


def normalize_tool_policy(data: Any, *, creating: bool, tool_name: str | None = None) -> dict[str, Any]:
    """Check a create (``creating``) or update body; raises ``RuleSetError`` with every problem.

    Returns only the fields the body sets (an update leaves the others as they are):
    ``tool_name``, ``mode``, ``constraints``, ``output_rules``, ``llm_config``,
    ``session_constraints``, ``rate_limits``, each in its stored form (see
    ``session_constraints``, ``output_rules``, ``tool_rate_limits``, ``llm_config``). A policy
    in mode ``llm`` needs an ``llmConfig`` (its exceptions are what the model may grant).
    Keys the server computes (``_id``, ``version``, ``isActive``, ...), its own
    ``sessionConstraints`` markers and the rule set's ``rateLimits`` entries (with a ``ruleId``)
    are ignored, so a fetched policy can be sent back as it came.
    """
    from policies.engine.llm_config import normalize_llm_config
    from policies.engine.output_rules import normalize_output_rules
    from policies.engine.session_constraints import normalize_session_constraints
    from policies.engine.tool_rate_limits import normalize_tool_rate_limits

    problems = _Problems()
    if not isinstance(data, Mapping):
        raise RuleSetError([Problem("", "a policy must be a JSON object")])
    allowed = {
        "toolName",
        "mode",
        "constraints",
        "outputRules",
        "llmConfig",
        "sessionConstraints",
        "rateLimits",
    }
    for key in data:
        if key not in allowed and key not in READ_ONLY_POLICY_KEYS:
            problems.add(str(key), f"unknown policy key {key!r}")
    out: dict[str, Any] = {}

    if creating:
        problems.items.extend(check_tool_name(data.get("toolName")))
        out["tool_name"] = data.get("toolName")
    elif data.get("toolName") is not None and data.get("toolName") != tool_name:
        problems.add("toolName", f"a policy cannot be renamed; this one is for {tool_name!r}")

    mode = data.get("mode")
    if mode is None:
        if creating:
            problems.add("mode", "mode is required: deterministic or llm")
    elif mode not in MODES:
        problems.add("mode", f"mode must be deterministic or llm, got {mode!r}")
    else:
        out["mode"] = mode

    if "constraints" in data or creating:
        out["constraints"] = _normalize_constraint_list(data.get("constraints"), "constraints", problems)
    if "outputRules" in data or creating:
        out["output_rules"] = normalize_output_rules(data.get("outputRules"), "outputRules", problems)
    if "llmConfig" in data or creating:
        out["llm_config"] = normalize_llm_config(data.get("llmConfig"), "llmConfig", problems)
    if mode == "llm" and data.get("llmConfig") is None and ("llmConfig" in data or creating):
        problems.add(
            "llmConfig", "mode llm needs an llmConfig: the description and the exceptions a model may grant"
        )
    if "rateLimits" in data or creating:
        out["rate_limits"] = normalize_tool_rate_limits(data.get("rateLimits"), "rateLimits", problems)
    if "sessionConstraints" in data or creating:
        out["session_constraints"] = normalize_session_constraints(
            data.get("sessionConstraints"),
            "sessionConstraints",
            problems,
            check_tool_name=lambda name, path: check_tool_name(name, path),
            ignored_keys=SERVER_MARKER_KEYS,
        )
    if problems.items:
        raise RuleSetError(problems.items)
    return out


# ---------------------------------------------------------------------------------------------
# The SDK's ReDoS heuristic (veto/deterministic/regex_safety.py, Apache-2.0), reproduced so a
# pattern the SDK would refuse locally is refused here at write time.

_NESTED_QUANTIFIER_ON_GROUP = re.compile(r"[+*}]\s*\)\s*[+*{]")
_ADJACENT_QUANTIFIERS = re.compile(r"[+*}]\s*[+*{]")
_OVERLAPPING_ALTERNATION = re.compile(r"\.\*.*\|.*\.\*")
_LAZY_IN_QUANTIFIED_GROUP = re.compile(r"\([^)]*[+*][?][^)]*\)\s*[+*{]")


def _has_quantified_alternation(pattern: str) -> bool:
    depth = 0
    has_alt = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            if depth == 0:
                has_alt = False
            depth += 1
        elif ch == "|" and depth > 0:
            has_alt = True
        elif ch == ")":
            depth -= 1
            if depth == 0 and has_alt:
                j = i + 1
                while j < len(pattern) and pattern[j] == " ":
                    j += 1
                if j < len(pattern) and pattern[j] in ("+", "*", "{"):
                    return True
        i += 1
    return False


def is_safe_pattern(pattern: str) -> bool:
    if len(pattern) > SDK_MAX_PATTERN_LENGTH:
        return False
    return not (
        _NESTED_QUANTIFIER_ON_GROUP.search(pattern)
        or _ADJACENT_QUANTIFIERS.search(pattern)
        or _OVERLAPPING_ALTERNATION.search(pattern)
        or _has_quantified_alternation(pattern)
        or _LAZY_IN_QUANTIFIED_GROUP.search(pattern)
    )


# ---------------------------------------------------------------------------------------------
# Run time: stored constraints in, failures out.


@dataclass(frozen=True, slots=True)
class ConstraintFailure:
    """One failed constraint, in the shape of the SDK's ``failed_constraints`` entries."""

    parameter: str
    constraint_type: str
    expected: Any
    actual: Any
    message: str  # the check's own words ("value 5 must be <= 1")
    reason: str  # the decision's reason, as the SDK's local validator words it
    action: str = "deny"  # or require_approval (the constraint's ``action``)

    def as_dict(self) -> dict[str, Any]:
        return {
            "parameter": self.parameter,
            "constraint_type": self.constraint_type,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.message,
        }


# (constraint_type, expected, actual, message) or None
_Outcome = tuple[str, Any, Any, str] | None


def _json_number(value: float) -> Any:
    # NaN and infinities have no JSON form; the SDK reads ``actual`` as any JSON value.
    return value if math.isfinite(value) else str(value)


def _check_number(value: float, c: Mapping[str, Any]) -> _Outcome:
    # Only floats can be NaN or infinite (and an int too large for a float must not be converted).
    if isinstance(value, float):
        if math.isnan(value):
            return "finite", "a finite number", "nan", "value is NaN"
        if math.isinf(value):
            return "finite", "a finite number", str(value), f"value {value} is not finite"
    bound = c.get("greaterThan")
    if bound is not None and value <= bound:
        return "greaterThan", bound, value, f"value {value} must be greater than {bound}"
    bound = c.get("lessThan")
    if bound is not None and value >= bound:
        return "lessThan", bound, value, f"value {value} must be less than {bound}"
    bound = c.get("greaterThanOrEqual")
    if bound is not None and value < bound:
        return "greaterThanOrEqual", bound, value, f"value {value} must be >= {bound}"
    bound = c.get("lessThanOrEqual")
    if bound is not None and value > bound:
        return "lessThanOrEqual", bound, value, f"value {value} must be <= {bound}"
    bound = c.get("minimum")
    if bound is not None and value < bound:
        return "minimum", bound, value, f"value {value} must be >= {bound}"
    bound = c.get("maximum")
    if bound is not None and value > bound:
        return "maximum", bound, value, f"value {value} must be <= {bound}"
    return None


def _check_dynamic_bounds(value: float, c: Mapping[str, Any], arguments: Mapping[str, Any]) -> _Outcome:
    """A bound read from another argument of the call; one that is absent or not a finite number
    fails the check (it cannot be verified: fail closed)."""
    for key, below in (("dynamicMinimum", True), ("dynamicMaximum", False)):
        name = c.get(key)
        if name is None:
            continue
        bound = arguments.get(name)
        if not isinstance(bound, (int, float)) or isinstance(bound, bool) or not math.isfinite(bound):
            return key, name, value, f"its bound, argument '{name}', is missing or not a number"
        if (value < bound) if below else (value > bound):
            sign = ">=" if below else "<="
            return key, bound, value, f"value {value} must be {sign} {name} ({bound})"
    return None


def _check_string(
    value: str,
    c: Mapping[str, Any],
    search: Callable[[str], bool] | None,
    forbidden: Callable[[str], bool] | None = None,
) -> _Outcome:
    limit = c.get("minLength")
    if limit is not None and len(value) < limit:
        return "minLength", limit, len(value), f"length {len(value)} is less than minimum {limit}"
    limit = c.get("maxLength")
    if limit is not None and len(value) > limit:
        return "maxLength", limit, len(value), f"length {len(value)} exceeds maximum {limit}"
    if search is not None and not search(value):
        pattern = c["regex"]
        return "regex", pattern, value, f"value does not match pattern {pattern}"
    allowed = c.get("enum")
    if allowed is not None and value not in allowed:
        return "enum", allowed, value, f'value "{value}" is not in allowed values: {", ".join(allowed)}'
    # The server's own checks, after the SDK's (its order and words are unchanged for those).
    if forbidden is not None and forbidden(value):
        pattern = c["notRegex"]
        return "notRegex", pattern, value, f"value matches forbidden pattern {pattern}"
    refused = c.get("notEnum")
    if refused is not None and value in refused:
        return (
            "notEnum",
            refused,
            value,
            f'value "{value}" is one of the refused values: {", ".join(refused)}',
        )
    return None


def _check_array(value: list[Any], c: Mapping[str, Any]) -> _Outcome:
    limit = c.get("minItems")
    if limit is not None and len(value) < limit:
        return "minItems", limit, len(value), f"array has {len(value)} items, minimum is {limit}"
    limit = c.get("maxItems")
    if limit is not None and len(value) > limit:
        return "maxItems", limit, len(value), f"array has {len(value)} items, maximum is {limit}"
    return None


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    spec: Mapping[str, Any]
    required: bool
    not_null: bool
    search: Callable[[str], bool] | None
    action: str = "deny"
    forbidden: Callable[[str], bool] | None = None


class CompiledConstraints:
    """A policy's enabled constraints, ready to check calls. Immutable; share freely."""

    # Ranges, lengths, patterns and enums over the arguments: a policy of mode deterministic,
    # the only mode this server stores active policies of.
    evaluation_mode: EvaluationMode = "deterministic"

    def __init__(self, constraints: list[Mapping[str, Any]]) -> None:
        self._items = tuple(
            _Compiled(
                name=c["argumentName"],
                spec=c,
                required=bool(c.get("required")),
                not_null=bool(c.get("notNull")),
                search=compile_search(c["regex"]) if c.get("regex") is not None else None,
                action=c.get("action", "deny"),
                forbidden=compile_search(c["notRegex"]) if c.get("notRegex") is not None else None,
            )
            for c in constraints
            if c.get("enabled", True)
        )

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def holds_for_approval(self) -> bool:
        """Whether a failing constraint can ask for approval (which the SDK cannot do locally)."""
        return any(item.action == "require_approval" for item in self._items)

    def check(self, arguments: Mapping[str, Any]) -> list[ConstraintFailure]:
        """Every failing constraint, in order (the first is the one the SDK reports)."""
        failures = []
        for item in self._items:
            failure = self._check_one(item, arguments)
            if failure is not None:
                failures.append(replace(failure, action=item.action) if item.action != "deny" else failure)
        return failures

    @staticmethod
    def _check_one(item: _Compiled, arguments: Mapping[str, Any]) -> ConstraintFailure | None:
        name = item.name
        value = arguments.get(name)
        if value is None:
            present = name in arguments
            if item.required and not present:
                message = f"Required argument '{name}' is missing"
                return ConstraintFailure(name, "required", True, None, message, message)
            if item.not_null and present:
                message = f"Argument '{name}' cannot be null"
                return ConstraintFailure(name, "notNull", True, None, message, message)
            return None
        outcome: _Outcome
        if _is_number(value):
            outcome = _check_number(value, item.spec)
            if outcome is None and (item.spec.get("dynamicMinimum") or item.spec.get("dynamicMaximum")):
                outcome = _check_dynamic_bounds(value, item.spec, arguments)
        elif isinstance(value, str):
            outcome = _check_string(value, item.spec, item.search, item.forbidden)
        elif isinstance(value, list):
            outcome = _check_array(value, item.spec)
        else:
            outcome = None
        if outcome is None:
            return None
        kind, expected, actual, message = outcome
        if isinstance(actual, float):
            actual = _json_number(actual)
        return ConstraintFailure(
            name, kind, expected, actual, message, f"Argument '{name}' failed: {message}"
        )


def compile_constraints(constraints: list[Mapping[str, Any]]) -> CompiledConstraints:
    """Compile stored constraints (see ``normalize_constraints``)."""
    return CompiledConstraints(constraints)
