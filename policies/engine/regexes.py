"""Linear-time regular expressions (RE2): a pattern cannot make evaluation hang.

RE2 has no backreferences or lookaround; such patterns are refused at compile
time with RE2's own message, so a rule never silently fails to fire.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import re2

from policies.engine.errors import ExpressionError

MAX_PATTERN_LENGTH = 4096


@lru_cache(maxsize=4096)
def compile_search(pattern: str, *, ignore_case: bool = False) -> Callable[[str], bool]:
    """A ``str -> bool`` that is True when ``pattern`` matches anywhere in the text."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ExpressionError(f"regular expression is longer than {MAX_PATTERN_LENGTH} characters")
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ExpressionError(
            f"regular expression {pattern!r} is not supported: {detail} "
            "(RE2 syntax: no backreferences or lookaround)"
        ) from exc
    search = compiled.search
    return lambda text: search(text) is not None
