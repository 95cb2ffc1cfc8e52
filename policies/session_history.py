"""The server-side call history of each team's sessions, read by ``blocked_by`` / ``requires``.

Bounded three ways: only calls of tools that some rule looks back for are kept, at most
``SESSION_HISTORY_LIMIT`` newest calls per session, and a session is forgotten
``SESSION_HISTORY_SECONDS`` after its last call. With Redis every worker shares one list per
session; without it (embedded mode) the lists live in the process, least recently used
sessions dropped beyond ``SESSION_HISTORY_MAX_SESSIONS``.

Like the SDK's own history, a call is remembered with the decision it got; denied calls are
not kept (the SDK skips them when matching), calls that required approval are.

Redis calls are bounded by ``REDIS_TIMEOUT_SECONDS`` (common/redis.py): a Redis that does not
answer raises a ``RedisError`` within it (at once for a moment after one timed out), and the
caller applies the rule set's ``fail_mode``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from common.redis import async_redis, guarded, redis_configured
from policies.engine import HistoryEntry


def _key(team_id: uuid.UUID, session_id: str) -> str:
    return f"veto:{{{team_id}}}:history:{session_id}"


def _encode(entry: HistoryEntry) -> str:
    return json.dumps(
        {
            "tool": entry.tool_name,
            "args": entry.arguments,
            "decision": entry.decision,
            "at": entry.timestamp.timestamp(),
        },
        separators=(",", ":"),
        default=str,
    )


def _decode(raw: bytes | str) -> HistoryEntry:
    data = json.loads(raw)
    return HistoryEntry(
        tool_name=data["tool"],
        arguments=data["args"],
        decision=data["decision"],
        timestamp=datetime.fromtimestamp(data["at"], tz=UTC),
    )


class RedisSessionHistory:
    async def recent(self, team_id: uuid.UUID, session_id: str) -> list[HistoryEntry]:
        with guarded():
            raw = await async_redis().lrange(_key(team_id, session_id), 0, settings.SESSION_HISTORY_LIMIT - 1)
        return [_decode(item) for item in raw]

    async def append(self, team_id: uuid.UUID, session_id: str, entry: HistoryEntry) -> None:
        key = _key(team_id, session_id)
        with guarded():
            async with async_redis().pipeline(transaction=True) as pipe:
                pipe.lpush(key, _encode(entry))
                pipe.ltrim(key, 0, settings.SESSION_HISTORY_LIMIT - 1)
                pipe.expire(key, settings.SESSION_HISTORY_SECONDS)
                await pipe.execute()


class LocalSessionHistory:
    def __init__(self) -> None:
        self._sessions: OrderedDict[tuple[uuid.UUID, str], tuple[float, deque[HistoryEntry]]] = OrderedDict()

    async def recent(self, team_id: uuid.UUID, session_id: str) -> list[HistoryEntry]:
        found = self._sessions.get((team_id, session_id))
        if found is None:
            return []
        last_seen, entries = found
        if time.monotonic() - last_seen > settings.SESSION_HISTORY_SECONDS:
            del self._sessions[(team_id, session_id)]
            return []
        return list(entries)

    async def append(self, team_id: uuid.UUID, session_id: str, entry: HistoryEntry) -> None:
        key = (team_id, session_id)
        found = self._sessions.pop(key, None)
        entries = found[1] if found is not None else deque()
        if entries.maxlen != settings.SESSION_HISTORY_LIMIT:
            entries = deque(entries, maxlen=settings.SESSION_HISTORY_LIMIT)
        entries.appendleft(entry)  # newest first, as in Redis
        self._sessions[key] = (time.monotonic(), entries)
        while len(self._sessions) > settings.SESSION_HISTORY_MAX_SESSIONS:
            self._sessions.popitem(last=False)

    def clear(self) -> None:
        self._sessions.clear()


_local = LocalSessionHistory()
_redis = RedisSessionHistory()


def session_history() -> RedisSessionHistory | LocalSessionHistory:
    return _redis if redis_configured() else _local


def session_of(context: Mapping[str, Any]) -> str | None:
    """The call's session id, when it names one (history is per session; without one there is none)."""
    session_id = context.get("session_id")
    return session_id if isinstance(session_id, str) and session_id else None
