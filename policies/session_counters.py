"""The counts of per-tool session constraints (policies.engine.session_constraints), per session.

With Redis (``REDIS_URL``) every web worker and node shares them: one hash per (team, agent,
session), moved by a Lua script that checks every limit a call counts against and then applies
all of its deltas in one atomic step, so two workers can never both spend the last of a budget.
Without Redis (the embedded single-process mode) they live in the process.

A call held for approval counts as if allowed, and what it moved is kept under its approval's
id (a *hold*): when the approval is denied or expires, ``refund_hold`` gives it back, once
(the hold is deleted in the same step). A call whose decision could not be recorded gives its
counts back at once (``release``). Counts and holds expire ``SESSION_COUNTERS_SECONDS`` after
the session's last counted call. A Redis that does not answer raises ``RedisError`` within
``REDIS_TIMEOUT_SECONDS`` (common/redis.py); the caller denies (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from common.events import Event, EventType
from common.redis import async_redis, guarded, redis_configured, sync_redis
from policies.engine.session_constraints import Tally

logger = logging.getLogger(__name__)

# Floating point sums of amounts such as 0.1 must not refuse a call that lands exactly on a budget.
_TOLERANCE = 1e-9

# KEYS[1]: the session's hash; KEYS[2] (when holding): the hold's hash.
# ARGV: ttl_ms, force ('1': count even past a limit), n, then field, delta, limit ('' none) per tally.
# Returns {0, ''} once counted, else {index of the first tally past its limit, its current value}.
_COUNT = """
local ttl = tonumber(ARGV[1])
local force = ARGV[2] == '1'
local n = tonumber(ARGV[3])
if not force then
  for i = 0, n - 1 do
    local delta = tonumber(ARGV[5 + i * 3])
    local limit = ARGV[6 + i * 3]
    if limit ~= '' and delta > 0 then
      local used = tonumber(redis.call('HGET', KEYS[1], ARGV[4 + i * 3]) or '0')
      if used + delta > tonumber(limit) + 1e-9 then
        return {i + 1, tostring(used)}
      end
    end
  end
end
for i = 0, n - 1 do
  local field = ARGV[4 + i * 3]
  local delta = tonumber(ARGV[5 + i * 3])
  if delta < 0 then
    local used = tonumber(redis.call('HGET', KEYS[1], field) or '0')
    if used + delta < 0 then delta = -used end
  end
  if delta ~= 0 then
    redis.call('HINCRBYFLOAT', KEYS[1], field, string.format('%.17g', delta))
    if #KEYS > 1 then redis.call('HINCRBYFLOAT', KEYS[2], field, string.format('%.17g', delta)) end
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
if #KEYS > 1 then
  redis.call('HSET', KEYS[2], '@session', KEYS[1])
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {0, ''}
"""

# KEYS[1]: the hold. Gives back what it moved (never below zero) and deletes it; 1 if it existed.
# The session's key shares the hold's hash tag (the team), so both are in one cluster slot.
_REFUND = """
local session = redis.call('HGET', KEYS[1], '@session')
if not session then return 0 end
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field = entries[i]
  if field ~= '@session' then
    local delta = tonumber(entries[i + 1])
    if delta > 0 then
      local used = tonumber(redis.call('HGET', session, field) or '0')
      if delta > used then delta = used end
    end
    if delta ~= 0 then
      redis.call('HINCRBYFLOAT', session, field, string.format('%.17g', -delta))
    end
  end
end
redis.call('DEL', KEYS[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class OverLimit:
    """The first tally of a call that its limit refuses, and what was used before the call."""

    tally: Tally
    used: float

    @property
    def reason(self) -> str:
        return self.tally.limit.describe(self.used, self.tally.delta)


def _session_key(team_id: uuid.UUID, agent_id: str | None, session_id: str | None) -> str:
    # Ids are the caller's text: hashed, so that no choice of characters can make two sessions one.
    who = hashlib.sha256(json.dumps([agent_id, session_id]).encode()).hexdigest()[:32]
    return f"veto:{{{team_id}}}:session:{who}"


def _hold_key(team_id: uuid.UUID, hold: uuid.UUID) -> str:
    return f"veto:{{{team_id}}}:hold:{hold}"


def _ttl_ms() -> int:
    return int(settings.SESSION_COUNTERS_SECONDS) * 1000


class RedisSessionCounters:
    async def count(
        self,
        team_id: uuid.UUID,
        agent_id: str | None,
        session_id: str | None,
        tallies: Sequence[Tally],
        *,
        hold: uuid.UUID | None = None,
        force: bool = False,
    ) -> OverLimit | None:
        """Count ``tallies`` unless one is past its limit (then nothing is counted and that one is
        returned); ``force`` counts them regardless. ``hold`` keeps what was counted for a refund."""
        if not tallies:
            return None
        keys = [_session_key(team_id, agent_id, session_id)]
        if hold is not None:
            keys.append(_hold_key(team_id, hold))
        args: list[str | int] = [_ttl_ms(), "1" if force else "0", len(tallies)]
        for tally in tallies:
            limit = tally.limit.limit
            args += [tally.limit.field, repr(tally.delta), "" if limit is None else repr(float(limit))]
        with guarded():
            index, used = await async_redis().eval(_COUNT, len(keys), *keys, *args)
        index = int(index)
        if index == 0:
            return None
        return OverLimit(tallies[index - 1], float(used))

    async def release(
        self, team_id: uuid.UUID, agent_id: str | None, session_id: str | None, tallies: Sequence[Tally]
    ) -> None:
        """Give back what ``count`` counted for a call that was never answered."""
        await self.count(
            team_id, agent_id, session_id, [Tally(t.limit, -t.delta) for t in tallies], force=True
        )

    def refund_hold(self, team_id: uuid.UUID, hold: uuid.UUID) -> bool:
        """Give back what a held call counted (its approval was denied or expired); once. Sync:
        it runs in a task (approvals.tasks)."""
        with guarded():
            return bool(sync_redis().eval(_REFUND, 1, _hold_key(team_id, hold)))

    async def used(
        self, team_id: uuid.UUID, agent_id: str | None, session_id: str | None
    ) -> dict[str, float]:
        """A session's counts (tests, the dashboard)."""
        with guarded():
            raw = await async_redis().hgetall(_session_key(team_id, agent_id, session_id))
        return {_text(k): float(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# The statuses of held calls' approvals (approval id -> "pending", "approved", "denied",
# "expired"; a missing id counts as gone). Set by runtime (policies may not import approvals).
HoldStatusReader = Callable[[list[uuid.UUID]], dict[uuid.UUID, str]]
_hold_status_reader: HoldStatusReader | None = None


def register_hold_status_reader(reader: HoldStatusReader) -> None:
    global _hold_status_reader
    _hold_status_reader = reader


@dataclass(slots=True)
class _LocalHold:
    expires: float
    session: str
    moved: dict[str, float]
    approval_id: uuid.UUID


class LocalSessionCounters:
    """The same counts in this process (embedded mode runs one web process). Callers run on one
    event loop and nothing awaits between a check and its apply, so each count is atomic.

    Embedded mode has no shared event path: an approval that expires in the worker's sweep (or is
    decided in another process) is heard of only there. So before counting a session that has
    held calls, this process reads their approvals' statuses (one query; only sessions with
    holds pay it) and gives back what a denied or expired one counted: the count that follows
    sees exactly what Redis would have shown."""

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[float, dict[str, float]]] = {}
        self._holds: dict[str, _LocalHold] = {}
        self._holds_by_session: dict[str, set[str]] = {}

    def _fresh(self, key: str) -> dict[str, float]:
        now = time.monotonic()
        found = self._sessions.get(key)
        if found is None or found[0] < now:
            found = (0.0, {})
            if len(self._sessions) % 1024 == 1023:
                self._drop_expired(now)  # every session id an agent sends would otherwise stay
        self._sessions[key] = (now + settings.SESSION_COUNTERS_SECONDS, found[1])
        return found[1]

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, (until, _) in self._sessions.items() if until < now]:
            del self._sessions[key]
        for key in [k for k, hold in self._holds.items() if hold.expires < now]:
            self._forget(self._holds[key])

    async def _settle_holds(self, session: str) -> None:
        held = [self._holds[k] for k in self._holds_by_session.get(session, ()) if k in self._holds]
        if not held or _hold_status_reader is None:
            return
        from common.database import run_in_db_thread

        reader = _hold_status_reader
        statuses = await run_in_db_thread(reader, [hold.approval_id for hold in held])
        for hold in held:
            status = statuses.get(hold.approval_id, "gone")
            if status in ("denied", "expired"):
                self._give_back(hold)
            elif status != "pending":
                self._forget(hold)  # approved (its counts stand), or gone

    def _forget(self, hold: _LocalHold) -> None:
        for key, found in list(self._holds.items()):
            if found is hold:
                del self._holds[key]
                self._holds_by_session.get(hold.session, set()).discard(key)

    def _give_back(self, hold: _LocalHold) -> bool:
        if hold.expires < time.monotonic():
            self._forget(hold)
            return False
        self._forget(hold)
        counts = self._fresh(hold.session)
        for field, delta in hold.moved.items():
            used = counts.get(field, 0.0)
            counts[field] = max(0.0, used - delta) if delta > 0 else used - delta
        return True

    async def count(
        self,
        team_id: uuid.UUID,
        agent_id: str | None,
        session_id: str | None,
        tallies: Sequence[Tally],
        *,
        hold: uuid.UUID | None = None,
        force: bool = False,
    ) -> OverLimit | None:
        if not tallies:
            return None
        key = _session_key(team_id, agent_id, session_id)
        if self._holds_by_session.get(key):
            await self._settle_holds(key)
        # From here to the return nothing awaits: the check and the apply are one step.
        counts = self._fresh(key)
        if not force:
            for tally in tallies:
                limit = tally.limit.limit
                used = counts.get(tally.limit.field, 0.0)
                if limit is not None and tally.delta > 0 and used + tally.delta > limit + _TOLERANCE:
                    return OverLimit(tally, used)
        moved: dict[str, float] = {}
        for tally in tallies:
            used = counts.get(tally.limit.field, 0.0)
            delta = max(tally.delta, -used)
            if delta:
                counts[tally.limit.field] = used + delta
                moved[tally.limit.field] = moved.get(tally.limit.field, 0.0) + delta
        if hold is not None:
            hold_key = _hold_key(team_id, hold)
            self._holds[hold_key] = _LocalHold(
                time.monotonic() + settings.SESSION_COUNTERS_SECONDS, key, moved, hold
            )
            self._holds_by_session.setdefault(key, set()).add(hold_key)
        return None

    async def release(
        self, team_id: uuid.UUID, agent_id: str | None, session_id: str | None, tallies: Sequence[Tally]
    ) -> None:
        await self.count(
            team_id, agent_id, session_id, [Tally(t.limit, -t.delta) for t in tallies], force=True
        )

    def refund_hold(self, team_id: uuid.UUID, hold: uuid.UUID) -> bool:
        found = self._holds.get(_hold_key(team_id, hold))
        if found is None:
            return False
        return self._give_back(found)

    async def used(
        self, team_id: uuid.UUID, agent_id: str | None, session_id: str | None
    ) -> dict[str, float]:
        key = _session_key(team_id, agent_id, session_id)
        if self._holds_by_session.get(key):
            await self._settle_holds(key)
        return dict(self._fresh(key))

    def clear(self) -> None:
        self._sessions.clear()
        self._holds.clear()
        self._holds_by_session.clear()


_local = LocalSessionCounters()
_redis = RedisSessionCounters()


def session_counters() -> RedisSessionCounters | LocalSessionCounters:
    return _redis if redis_configured() else _local


# --- Giving back what held calls counted -------------------------------------------------------


class _HoldRefunds:
    """Refunds of holds whose approval was denied or expired, off the caller's thread: the event
    handler only queues (handlers must not block), one daemon thread asks Redis, retrying a
    Redis that does not answer for about a minute. A hold not given back (the process ended
    first, Redis away for longer) keeps its counts until it expires: the session may do less,
    never more."""

    ATTEMPTS = 6

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[uuid.UUID, uuid.UUID]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, team_id: uuid.UUID, hold: uuid.UUID) -> None:
        self._queue.put((team_id, hold))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="session-hold-refunds", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:
            team_id, hold = self._queue.get()
            for attempt in range(self.ATTEMPTS):
                try:
                    _redis.refund_hold(team_id, hold)
                    break
                except RedisError:
                    logger.warning("session_counters.refund_failed team=%s attempt=%d", team_id, attempt + 1)
                    time.sleep(2**attempt)


_refunds = _HoldRefunds()


def refund_hold_of_event(event: Event) -> None:
    """``approval.resolved`` (denied) or ``approval.expired`` (common.events, once, where it was
    published): give back what the held call counted against its session constraints."""
    if event.type is EventType.APPROVAL_RESOLVED and event.data.get("status") != "denied":
        return  # approved: the call goes ahead, its counts stand
    raw = event.data.get("approval_id")
    try:
        hold = uuid.UUID(str(raw))
    except ValueError:
        return
    if redis_configured():
        _refunds.add(event.team_id, hold)
    else:
        # Embedded mode: in this process's memory. An approval that expires in the worker's
        # sweep is heard of in the worker only; the web process settles it before it next counts
        # that session (LocalSessionCounters).
        _local.refund_hold(event.team_id, hold)
