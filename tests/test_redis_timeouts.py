"""Every Redis use on a request path is bounded by REDIS_TIMEOUT_SECONDS (common/redis.py), against
a server that accepts connections and never answers (as a frozen Redis or a partition does)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import override_settings
from redis.exceptions import RedisError

from common import events
from common import redis as common_redis
from policies.engine import HistoryEntry, RateLimit, RateLimitCheck
from policies.rate_limiter import RedisRateLimiter
from policies.session_history import RedisSessionHistory

TIMEOUT = 0.2
# The bound plus scheduling slack on a busy two-core machine.
BOUND = TIMEOUT + 0.4


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server completes every connection (the kernel's backlog) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    common_redis.reset_clients()
    try:
        with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_TIMEOUT_SECONDS=TIMEOUT):
            yield f"redis://127.0.0.1:{port}/0"
    finally:
        common_redis.reset_clients()
        listener.close()


def _check() -> RateLimitCheck:
    return RateLimitCheck(
        rule_id="r", buckets=((RateLimit(scope="global", window_seconds=60, max_calls=5), "bucket"),)
    )


async def _timed(awaitable: Any) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        await awaitable
    except BaseException as exc:  # noqa: BLE001 - the test looks at what was raised
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def test_rate_limiter__redis_does_not_answer__fails_within_the_timeout_then_at_once(silent_redis):
    # Given a Redis that accepts connections and never answers
    limiter = RedisRateLimiter()

    async def scenario() -> list[tuple[BaseException | None, float]]:
        # When two calls are counted one after the other
        return [await _timed(limiter.hit(uuid.uuid4(), _check())) for _ in range(2)]

    (first, first_took), (second, second_took) = asyncio.run(scenario())

    # Then the first gives up within the timeout with a RedisError (the caller's fail_mode path),
    # and the second fails at once without asking Redis
    assert isinstance(first, RedisError), first
    assert first_took < BOUND, f"the first call took {first_took:.2f}s"
    assert isinstance(second, common_redis.RedisPaused), second
    assert second_took < 0.05, f"the second call took {second_took:.2f}s"


def test_session_history__redis_does_not_answer__read_and_append_fail_within_the_timeout(silent_redis):
    # Given a Redis that accepts connections and never answers
    history = RedisSessionHistory()
    entry = HistoryEntry("tool", {}, "allow", datetime.now(tz=UTC))

    async def scenario() -> list[tuple[BaseException | None, float]]:
        # When a session's history is read, and then (the pause over) a call appended
        read = await _timed(history.recent(uuid.uuid4(), "s-1"))
        common_redis.reset_clients()
        appended = await _timed(history.append(uuid.uuid4(), "s-1", entry))
        return [read, appended]

    outcomes = asyncio.run(scenario())

    # Then each gives up within the timeout with a RedisError
    for error, took in outcomes:
        assert isinstance(error, RedisError), error
        assert took < BOUND, f"took {took:.2f}s"


def test_redis_pause__over__redis_is_asked_again(silent_redis, monkeypatch):
    # Given a short pause, and a call that timed out
    monkeypatch.setattr(common_redis, "PAUSE_SECONDS", 0.1)
    limiter = RedisRateLimiter()

    async def scenario() -> tuple[BaseException | None, float]:
        await _timed(limiter.hit(uuid.uuid4(), _check()))
        # When the next call comes after the pause
        await asyncio.sleep(0.15)
        return await _timed(limiter.hit(uuid.uuid4(), _check()))

    error, took = asyncio.run(scenario())

    # Then it asks Redis again (and waits on it), rather than failing at once
    assert isinstance(error, RedisError) and not isinstance(error, common_redis.RedisPaused), error
    assert TIMEOUT * 0.8 < took < BOUND, f"took {took:.2f}s"


def _event(event_type: events.EventType, **data: object) -> events.Event:
    return events.Event(event_type, uuid.uuid4(), "events", 1, datetime.now(tz=UTC), data)  # type: ignore[arg-type]


class _CountingRedis:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.sends = 0

    def publish(self, channel: str, message: bytes) -> Any:
        self.sends += 1
        return self.client.publish(channel, message)


def test_event_after_commit__redis_hangs__gives_up_within_one_timeout_for_all_events(
    silent_redis, monkeypatch
):
    # Given a Redis whose publishes never answer (every process subscribes to policy.published)
    counting = _CountingRedis(common_redis.sync_redis())
    monkeypatch.setattr(events, "sync_redis", lambda: counting)
    published = [_event(events.EventType.POLICY_PUBLISHED, version=n) for n in (1, 2)]

    # When two events are announced after one commit, and then another right after
    started = time.monotonic()
    events.dispatch(published)
    took = time.monotonic() - started
    started = time.monotonic()
    events.dispatch([_event(events.EventType.POLICY_PUBLISHED, version=3)])
    second_took = time.monotonic() - started

    # Then the first gives up within one timeout (one message for both, not one each) and the
    # next is skipped
    assert took < BOUND, f"the send took {took:.2f}s"
    assert second_took < 0.05, f"the second send took {second_took:.2f}s"
    assert counting.sends == 1


def test_approval_change_publish__redis_does_not_answer__returns_within_the_timeout(silent_redis):
    # Given a Redis that accepts connections and never answers
    # When a resolve's event is announced after commit
    started = time.monotonic()
    events.dispatch([_event(events.EventType.APPROVAL_RESOLVED, approval_id=str(uuid.uuid4()))])
    took = time.monotonic() - started

    # Then the publish gives up within the timeout and later notices are skipped for a moment
    assert took < BOUND, f"the publish took {took:.2f}s"
    assert common_redis.redis_paused()


def test_writer_announcement__redis_does_not_answer__the_loop_never_waits_and_the_send_gives_up(
    silent_redis,
):
    # Given a Redis that accepts connections and never answers
    resolved = _event(events.EventType.APPROVAL_RESOLVED, approval_id=str(uuid.uuid4()))

    async def scenario() -> tuple[float, float]:
        # When the decision writer announces a batch from the event loop
        started = time.monotonic()
        events.dispatch_on_loop([resolved])
        returned = time.monotonic() - started
        # (the loop keeps running meanwhile; the send happens in the background)
        while not common_redis.redis_paused() and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        return returned, time.monotonic() - started

    returned, gave_up = asyncio.run(scenario())

    # Then the writer's call returns at once, and the background send gives up within the timeout
    assert returned < 0.05, f"dispatch_on_loop took {returned:.3f}s"
    assert gave_up < BOUND, f"the send gave up after {gave_up:.2f}s"
