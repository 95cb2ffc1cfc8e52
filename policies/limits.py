"""The rule-set document limits this installation publishes (settings ``RULE_SET_MAX_*``), as
the engine takes them, and their refusal as an HTTP error every entry point shares."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from rest_framework import status

from common.errors import ApplicationError
from policies.engine.errors import RuleSetTooLarge
from policies.engine.source import Limits

# The limit's name in the engine → the setting (and environment variable) that sets it.
SETTINGS = {
    "max_bytes": "RULE_SET_MAX_BYTES",
    "max_rules": "RULE_SET_MAX_RULES",
    "max_depth": "RULE_SET_MAX_DEPTH",
    "max_string_length": "RULE_SET_MAX_STRING_LENGTH",
    "max_fixture_tests": "RULE_SET_MAX_FIXTURE_TESTS",
    "max_expression_chars": "RULE_SET_MAX_EXPRESSION_CHARS",
}


def rule_set_limits() -> Limits:
    return Limits(**{limit: getattr(settings, name) for limit, name in SETTINGS.items()})


# Rules an API-mode SDK sends with a call (POST /v1/validate): compiled while the call waits,
# so a tenth of a document's budget (~40 ms of CPU at most).
MAX_INLINE_RULES = 100
MAX_INLINE_EXPRESSION_CHARS = 4000


def inline_rule_limits() -> Limits:
    limits = rule_set_limits()
    return replace(
        limits,
        max_rules=min(limits.max_rules, MAX_INLINE_RULES),
        max_expression_chars=min(limits.max_expression_chars, MAX_INLINE_EXPRESSION_CHARS),
    )


class RuleSetTooLargeError(ApplicationError):
    """413 for a document over the byte limit, 422 for one over another limit."""

    status_code: int = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "rule_set_too_large"

    def __init__(self, exc: RuleSetTooLarge, *, what: str = "rule set") -> None:
        problem = exc.problems[0]
        errors = [problem.as_dict()]
        where = f" (line {problem.line})" if problem.line is not None else ""
        verb = "are" if what.endswith("rules") else "is"
        super().__init__(
            f"the {what} {verb} over the limit {exc.limit} = {exc.maximum}{where}: {problem.message}",
            details={
                "limit": exc.limit,
                "maximum": exc.maximum,
                "actual": exc.actual,
                "setting": f"VETO_{SETTINGS[exc.limit]}",
                "errors": errors,
            },
            extra={"errors": errors},
        )
        if exc.limit == "max_bytes":
            self.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
