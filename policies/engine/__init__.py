"""The rule engine: a pure library (no Django), rule-set documents in, decisions out.

document = load_rule_set(yaml_text)          # raises RuleSetError with every problem
rule_set = compile_rule_set(document)        # compile once per version, then share
decision = rule_set.evaluate(ToolCall("run_data_export", {"include_pii": True}))
"""

from policies.engine.diff import diff_documents
from policies.engine.document import load_rule_set, normalize_rule_set
from policies.engine.errors import ExpressionError, Problem, RuleSetError
from policies.engine.evaluator import (
    EMPTY_RULE_SET,
    CompiledRuleSet,
    Decision,
    DecisionSteps,
    EnforcementMode,
    EvaluationMode,
    RateLimit,
    RateLimitCheck,
    ToolCall,
    compile_rule_set,
)
from policies.engine.fixtures import FixtureResult, run_fixtures
from policies.engine.sequences import HistoryEntry

__all__ = [
    "EMPTY_RULE_SET",
    "CompiledRuleSet",
    "Decision",
    "DecisionSteps",
    "EnforcementMode",
    "EvaluationMode",
    "HistoryEntry",
    "RateLimit",
    "RateLimitCheck",
    "ExpressionError",
    "FixtureResult",
    "Problem",
    "RuleSetError",
    "ToolCall",
    "compile_rule_set",
    "diff_documents",
    "load_rule_set",
    "normalize_rule_set",
    "run_fixtures",
]
