"""Problems found while loading or compiling a rule set: all of them, each with a path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """``line`` and ``column`` (1-based) are where the problem starts; for a YAML syntax error
    that is where the unfinished construct began, and ``noticed_line`` where the parser found
    out (an unclosed ``[`` is noticed lines later, at the next token that cannot belong to it)."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    noticed_line: int | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "message": self.message, "line": self.line}
        if self.column is not None:
            out["column"] = self.column
        if self.noticed_line is not None:
            out["noticed_line"] = self.noticed_line
        return out


class RuleSetError(Exception):
    """Raised with every problem of a document at once, never just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        summary = "; ".join(f"{p.path}: {p.message}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(summary + more)

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in a worker process and re-raised here (policies/source_worker.py).
        return (type(self), (self.problems,))


class RuleSetTooLarge(RuleSetError):
    """A document over one of the published limits (``limit`` names it: max_bytes, max_rules,
    max_depth, max_string_length, max_fixture_tests, max_expression_chars); refused before the
    expensive work."""

    def __init__(self, problem: Problem, *, limit: str, maximum: int, actual: int | None = None) -> None:
        super().__init__([problem])
        self.limit = limit
        self.maximum = maximum
        self.actual = actual

    def __reduce__(self) -> tuple[object, ...]:
        return (_too_large, (self.problems[0], self.limit, self.maximum, self.actual))


def _too_large(problem: Problem, limit: str, maximum: int, actual: int | None) -> RuleSetTooLarge:
    return RuleSetTooLarge(problem, limit=limit, maximum=maximum, actual=actual)


class ExpressionError(ValueError):
    """A ``when:`` expression that does not compile; ``column`` is 1-based within the expression."""

    def __init__(self, message: str, *, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column
