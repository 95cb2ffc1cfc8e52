"""Problems found while loading or compiling a rule set: all of them, each with a path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "message": self.message, "line": self.line}


class RuleSetError(Exception):
    """Raised with every problem of a document at once, never just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        summary = "; ".join(f"{p.path}: {p.message}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(summary + more)


class ExpressionError(ValueError):
    """A ``when:`` expression that does not compile; ``column`` is 1-based within the expression."""

    def __init__(self, message: str, *, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column
