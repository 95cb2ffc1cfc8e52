"""One readable line per field of a stored tool policy, for the policies page: what its session
constraints, rate limits, output rules and LLM exceptions do, without reading the JSON.

The JSON body stays what a person edits; these lines are what they scan. They read the stored
form (``policies.engine.constraints.normalize_tool_policy``'s output), so every key they name
has been checked and is present only when set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.models import ToolPolicy

# A rate limit's scope as the end of "10/60s per session".
_SCOPE_WORDS = {"session": "per session", "agent": "per agent", "user": "per user", "global": "overall"}


@dataclass(frozen=True, slots=True)
class SummaryLine:
    label: str  # "Session", "Rate limits", "Output rules", "LLM"
    text: str


def _number(value: Any) -> str:
    # Budgets come back as floats (the SDK's model types them so): 100.0 reads as 100.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _held(action: Any) -> str:
    return " (held for approval)" if action == "require_approval" else ""


def _counter(name: str, counter: Mapping[str, Any]) -> str:
    tools = [f"+{tool}" for tool in counter.get("increment") or []]
    tools += [f"−{tool}" for tool in counter.get("decrement") or []]
    bound = f" ≤ {counter['max']}" if counter.get("max") is not None else " (counted, no max)"
    return f"{name}{bound}{_held(counter.get('maxAction'))} ({', '.join(tools)})"


def session_constraints_summary(session: Mapping[str, Any]) -> str:
    """``budget 100 on amount, max 5 calls, fee ≤ 10 in total, counters open_files ≤ 2 (+open_file,
    −close_file); over a limit: held for approval``."""
    parts = []
    if session.get("budget") is not None:
        parts.append(f"budget {_number(session['budget'])} on {session.get('spendArgument')}")
    if session.get("maxCalls") is not None:
        parts.append(f"max {_plural(session['maxCalls'], 'call')}")
    parts += [
        f"{limit['argumentName']} ≤ {_number(limit['maxValue'])} in total"
        for limit in session.get("cumulativeLimits") or []
    ]
    counters = session.get("counters") or {}
    if counters:
        parts.append("counters " + ", ".join(_counter(name, c) for name, c in counters.items()))
    text = ", ".join(parts)
    limited = any(session.get(key) is not None for key in ("maxCalls", "budget", "cumulativeLimits"))
    if limited:
        over = "held for approval" if session.get("maxAction") == "require_approval" else "denied"
        text += f"; over a limit: {over}"
    return text


def rate_limits_summary(limits: Sequence[Mapping[str, Any]]) -> str:
    """``10/60s per session, 1000/86400s overall``."""
    return ", ".join(
        f"{limit['maxCalls']}/{limit['windowSeconds']}s {_SCOPE_WORDS.get(limit['scope'], limit['scope'])}"
        for limit in limits
    )


def output_rules_summary(rules: Sequence[Mapping[str, Any]]) -> str:
    """``3 (block, redact, log; 1 disabled)``."""
    actions = ", ".join(rule["action"] for rule in rules)
    disabled = sum(1 for rule in rules if rule.get("enabled") is False)
    return f"{len(rules)} ({actions}{f'; {disabled} disabled' if disabled else ''})"


def llm_config_summary(config: Mapping[str, Any], *, mode: str) -> str:
    """``1 exception, model gpt-4o-mini, 2 argument instructions`` (or why nothing reads it)."""
    parts = [_plural(len(config.get("exceptions") or []), "exception")]
    if config.get("preferredModel"):
        parts.append(f"model {config['preferredModel']}")
    if config.get("argumentInstructions"):
        parts.append(_plural(len(config["argumentInstructions"]), "argument instruction"))
    text = ", ".join(parts)
    if mode != ToolPolicy.Mode.LLM:
        text += " (not used: the policy is deterministic)"
    return text


def tool_policy_summary(policy: ToolPolicy) -> list[SummaryLine]:
    """A line for each of the policy's fields beyond its constraints that is set, in the order
    a call meets them: session limits and rate limits, the model's exceptions, then output rules."""
    lines = []
    if policy.session_constraints:
        lines.append(SummaryLine("Session", session_constraints_summary(policy.session_constraints)))
    if policy.rate_limits:
        lines.append(SummaryLine("Rate limits", rate_limits_summary(policy.rate_limits)))
    if policy.llm_config:
        lines.append(SummaryLine("LLM", llm_config_summary(policy.llm_config, mode=policy.mode)))
    if policy.output_rules:
        lines.append(SummaryLine("Output rules", output_rules_summary(policy.output_rules)))
    return lines
