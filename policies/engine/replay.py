"""Replaying recorded calls through a candidate rule set, in the order they happened.

Rules that look back (``blocked_by`` / ``requires``) or count (``rate_limits``) cannot be judged
one call at a time. The replayer keeps the state those rules would have had under the
candidate: each session's history of the candidate's own non-denied decisions, and sliding
windows over the calls' recorded times. So an impact preview of a new rate limit shows the
calls it would really have refused.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from policies.engine.evaluator import CompiledRuleSet, Decision, RateLimit, RateLimitCheck, ToolCall
from policies.engine.sequences import HistoryEntry


class Replayer:
    def __init__(self, rules: CompiledRuleSet, *, history_limit: int = 100) -> None:
        self._rules = rules
        self._history_limit = history_limit
        self._histories: dict[str, deque[HistoryEntry]] = {}
        self._windows: defaultdict[str, deque[datetime]] = defaultdict(deque)

    def decide(
        self, tool_name: str, arguments: Mapping[str, Any], context: Mapping[str, Any], at: datetime
    ) -> Decision:
        """Calls must come in the order they were made (``at`` never decreasing)."""
        session_id = context.get("session_id")
        session = session_id if isinstance(session_id, str) and session_id else None
        history = self._histories.get(session, ()) if session is not None else ()
        counted: list[str] = []

        def count(check: RateLimitCheck) -> RateLimit | None:
            for limit, bucket in check.buckets:
                window = self._windows[bucket]
                while window and (at - window[0]).total_seconds() >= limit.window_seconds:
                    window.popleft()
                if len(window) >= limit.max_calls:
                    return limit
            for _, bucket in check.buckets:
                self._windows[bucket].append(at)
                counted.append(bucket)
            return None

        decision = self._rules.evaluate(
            ToolCall(tool_name, arguments, context, now=at, history=tuple(history)), rate_limiter=count
        )
        if decision.decision == "deny":
            for bucket in counted:  # refused calls hand their slots back, as on the server
                self._windows[bucket].pop()
        elif session is not None and tool_name in self._rules.history_tools:
            entries = self._histories.setdefault(session, deque(maxlen=self._history_limit))
            entries.appendleft(HistoryEntry(tool_name, dict(arguments), decision.decision, at))
        return decision
