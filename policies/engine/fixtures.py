"""Fixture suites (the SDK's ``veto.testing`` format) run against a compiled rule set.

    fixtures:
      - suite: exports
        tests:
          - id: pii-needs-approval
            tool: run_data_export
            arguments: {include_pii: true}
            context: {environment: production}
            expect: {decision: require_approval, rule_id: block_pii_exports}

As in the SDK, an expected ``block`` means ``deny`` and ``warn``/``log`` mean ``allow``
(those actions never decide); ``rule_id`` is checked only when given. Unlike the SDK's
runner, which has a simplified evaluator of its own, these run on the real engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policies.engine.evaluator import CompiledRuleSet, ToolCall

EXPECTABLE = ("allow", "deny", "block", "require_approval", "warn", "log")


def normalize_expected_decision(expected: str) -> str:
    if expected in ("block", "deny"):
        return "deny"
    if expected in ("warn", "log"):
        return "allow"
    return expected


@dataclass(frozen=True, slots=True)
class FixtureResult:
    suite: str
    test_id: str
    passed: bool
    expected_decision: str
    expected_rule_id: str | None
    actual_decision: str
    actual_rule_id: str | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "id": self.test_id,
            "passed": self.passed,
            "expected": {"decision": self.expected_decision, "rule_id": self.expected_rule_id},
            "actual": {"decision": self.actual_decision, "rule_id": self.actual_rule_id},
            "error": self.error,
        }


def run_fixtures(
    rules: CompiledRuleSet, suites: list[Mapping[str, Any]], *, now: datetime
) -> list[FixtureResult]:
    """Evaluate every test of every (normalized) suite; ``now`` is the evaluation time."""
    results = []
    for suite in suites:
        for test in suite["tests"]:
            expected = test["expect"]
            decision = rules.evaluate(
                ToolCall(test["tool"], test.get("arguments") or {}, test.get("context") or {}, now)
            )
            want = normalize_expected_decision(expected["decision"])
            want_rule = expected.get("rule_id")
            error = None
            if decision.decision != want:
                error = f"expected decision {expected['decision']!r} but got {decision.decision!r}"
            elif want_rule is not None and decision.rule_id != want_rule:
                error = f"expected rule_id {want_rule!r} but got {decision.rule_id!r}"
            results.append(
                FixtureResult(
                    suite=suite["suite"],
                    test_id=test["id"],
                    passed=error is None,
                    expected_decision=expected["decision"],
                    expected_rule_id=want_rule,
                    actual_decision=decision.decision,
                    actual_rule_id=decision.rule_id,
                    error=error,
                )
            )
    return results
