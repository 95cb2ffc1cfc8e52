"""What the policy services share: the refusal of a document with every problem listed."""

from __future__ import annotations

from common.errors import InvalidInput
from policies.engine import RuleSetError


def invalid(exc: RuleSetError, *, what: str, code: str) -> InvalidInput:
    errors = [p.as_dict() for p in exc.problems]
    return InvalidInput(
        f"the {what} has {len(errors)} problem(s): {exc}",
        details={"errors": errors},
        code=code,
        extra={"errors": errors},
    )
