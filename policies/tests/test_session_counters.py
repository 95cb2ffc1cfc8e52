"""The counts of per-tool session constraints (policies.session_counters), against a real Redis
(REDIS_URL's when the run has one, as CI does; else a Redis server of this module's own) and in
the process (the embedded mode): atomic under races, held counts given back once, sessions kept
apart, counts that expire, and a Redis that is away failing at once (the caller denies)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.test import override_settings
from django.utils import timezone
from redis.exceptions import RedisError

from common import redis as common_redis
from common.events import Event, EventType
from conftest import free_port
from policies import session_counters as module
from policies.engine.session_constraints import SessionLimit, Tally
from policies.session_counters import (
    LocalSessionCounters,
    RedisSessionCounters,
    refund_hold_of_event,
    session_counters,
)
from tests.faults._services import own_redis

BUDGET = SessionLimit("budget", "spend|pay", "pay", 100.0, "deny", argument="amount")
CALLS = SessionLimit("maxCalls", "calls|pay", "pay", 2, "deny")
OPEN = SessionLimit("counter", "counter|open_file|open", "open_file", 2, "deny", counter="open")
CLOSE = SessionLimit(
    "counter", "counter|open_file|open", "open_file", None, "deny", counter="open", lowers=True
)
AGENT, SESSION = "agent-1", "session-1"
Counters = RedisSessionCounters | LocalSessionCounters


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real Redis: the run's (REDIS_URL, as CI and the PostgreSQL + Redis pass have), else one
    started for this module, so that the Redis tests run meaningfully in the embedded pass too."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    with own_redis() as server:
        yield server.url()


@pytest.fixture
def team_id(redis_url: str) -> Iterator[uuid.UUID]:
    """A team of this test's own; its keys are deleted afterwards (nothing else in the database
    is touched, however the run shares it)."""
    team = uuid.uuid4()
    yield team
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"veto:{{{team}}}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[str]:
    """This process configured with that Redis (fresh clients before and after)."""
    common_redis.reset_clients()
    with override_settings(REDIS_URL=redis_url):
        yield redis_url
    common_redis.reset_clients()


@pytest.fixture(params=["redis", "local"])
def counters(request: pytest.FixtureRequest) -> Counters:
    if request.param == "redis":
        request.getfixturevalue("on_redis")
        return RedisSessionCounters()
    return LocalSessionCounters()


@pytest.fixture(autouse=True)
def _holds_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every hold's approval pending, unless the test refunds it: in the process, a session's held
    calls are settled from their approvals' rows before it is counted (no database here; that
    settling is runtime/tests/test_local_session_holds.py's)."""
    monkeypatch.setattr(module, "_hold_status_reader", lambda ids: dict.fromkeys(ids, "pending"))


def run(awaitable: Any) -> Any:
    return asyncio.run(awaitable)


async def used(counters: Counters, team_id: uuid.UUID, agent=AGENT, session=SESSION) -> dict[str, float]:
    return await counters.used(team_id, agent, session)


# --- Counting ------------------------------------------------------------------------------------


def test_count__within_and_past_the_budget__counted_then_refused_with_what_was_used(counters, team_id):
    async def scenario() -> tuple[Any, Any, Any, dict[str, float]]:
        first = await counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 70)])
        # When a call would bring the spend past the budget
        refused = await counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 40)])
        fits = await counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 30)])
        return first, refused, fits, await used(counters, team_id)

    first, refused, fits, counts = run(scenario())
    # Then it is refused with what was used before it, and the reason says what is left
    assert first is None and fits is None
    assert (refused.tally, refused.used) == (Tally(BUDGET, 40), 70.0)
    assert "(30 left)" in refused.reason
    # And only what was admitted is counted: exactly the budget
    assert counts == {"spend|pay": 100.0}


def test_count__one_tally_past_its_limit__none_of_the_call_counted(counters, team_id):
    # Given a session whose maxCalls is used up while its budget is not
    async def scenario() -> tuple[Any, dict[str, float]]:
        for _ in range(2):
            await counters.count(team_id, AGENT, SESSION, [Tally(CALLS, 1), Tally(BUDGET, 10)])
        # When a third call would fit the budget but not maxCalls
        over = await counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 10), Tally(CALLS, 1)])
        return over, await used(counters, team_id)

    over, counts = run(scenario())
    # Then the call is refused by maxCalls and its spend is not counted either (all or nothing)
    assert over.tally.limit is CALLS
    assert counts == {"calls|pay": 2.0, "spend|pay": 20.0}


def test_count__amounts_summing_to_the_budget_in_floating_point__last_admitted(counters, team_id):
    small = SessionLimit("budget", "spend|pay", "pay", 0.3, "deny", argument="amount")

    async def scenario() -> list[Any]:
        return [await counters.count(team_id, AGENT, SESSION, [Tally(small, 0.1)]) for _ in range(4)]

    # 0.1 + 0.1 + 0.1 is 0.30000000000000004: the third lands on the budget and is admitted
    assert [over is None for over in run(scenario())] == [True, True, True, False]


def test_count__forced__counted_past_the_limit(counters, team_id):
    async def scenario() -> tuple[Any, dict[str, float]]:
        await counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 90)])
        forced = await counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 50)], force=True)
        return forced, await used(counters, team_id)

    assert run(scenario()) == (None, {"spend|pay": 140.0})


def test_count__no_tallies__nothing_counted(counters, team_id):
    assert run(counters.count(team_id, AGENT, SESSION, [])) is None
    assert run(used(counters, team_id)) == {}


def test_count__decrement__never_below_zero(counters, team_id):
    async def scenario() -> list[dict[str, float]]:
        seen = []
        for tally in (Tally(OPEN, 1), Tally(CLOSE, -1), Tally(CLOSE, -1), Tally(OPEN, 1)):
            await counters.count(team_id, AGENT, SESSION, [tally])
            seen.append(await used(counters, team_id))
        return seen

    assert [counts.get(OPEN.field, 0.0) for counts in run(scenario())] == [1.0, 0.0, 0.0, 1.0]


# Race tests are about atomicity, not latency: a loaded machine opening a hundred connections at
# once can take longer than the 0.5 s bound (tests/test_redis_timeouts.py tests the bound).
PATIENT = override_settings(REDIS_TIMEOUT_SECONDS=5)


@PATIENT
def test_count__200_concurrent_calls_of_3_against_100__exactly_33_admitted(counters, team_id):
    # Given 200 calls of amount 3 racing for a budget of 100 on one event loop
    async def scenario() -> tuple[list[Any], dict[str, float]]:
        results = await asyncio.gather(
            *(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 3)]) for _ in range(200))
        )
        return results, await used(counters, team_id)

    results, counts = run(scenario())
    # Then exactly as many as fit are admitted, and the spend is theirs
    assert sum(over is None for over in results) == 33
    assert counts == {"spend|pay": 99.0}


@PATIENT
def test_redis_count__race_from_two_threads_each_with_its_own_loop__exactly_33_admitted(on_redis, team_id):
    # Given two threads, each with its own event loop and so its own Redis client (as two
    # workers have), racing 100 calls each of amount 3 for a budget of 100
    counters = RedisSessionCounters()
    start = threading.Barrier(2)
    admitted: list[int] = []

    async def burst() -> int:
        results = await asyncio.gather(
            *(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 3)]) for _ in range(100))
        )
        return sum(over is None for over in results)

    def worker() -> None:
        start.wait(timeout=10)
        admitted.append(asyncio.run(burst()))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then both ran, and between them exactly 33 were admitted: the budget is never overspent
    assert len(admitted) == 2
    assert sum(admitted) == 33
    assert run(used(counters, team_id)) == {"spend|pay": 99.0}


# --- Holds and releases --------------------------------------------------------------------------


def test_refund_hold__held_count__given_back_once(counters, team_id):
    # Given 50 counted, then a call of 30 held for approval (counted under its approval's id)
    hold = uuid.uuid4()
    run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 50)]))
    run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 30), Tally(CALLS, 1)], hold=hold))
    assert run(used(counters, team_id)) == {"spend|pay": 80.0, "calls|pay": 1.0}
    # When its approval is denied (refunded), and the refund comes again
    first, second = counters.refund_hold(team_id, hold), counters.refund_hold(team_id, hold)
    # Then it is given back once: what was counted before it stands
    assert (first, second) == (True, False)
    assert run(used(counters, team_id)) == {"spend|pay": 50.0, "calls|pay": 0.0}


def test_refund_hold__unknown_or_other_teams_hold__nothing_given_back(counters, team_id):
    hold = uuid.uuid4()
    run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 30)], hold=hold))
    assert counters.refund_hold(team_id, uuid.uuid4()) is False
    assert counters.refund_hold(uuid.uuid4(), hold) is False
    assert run(used(counters, team_id)) == {"spend|pay": 30.0}


def test_refund_hold__held_decrement__restored(counters, team_id):
    # Given two files open, then a held close_file (lowering the counter to one)
    hold = uuid.uuid4()
    run(counters.count(team_id, AGENT, SESSION, [Tally(OPEN, 1)]))
    run(counters.count(team_id, AGENT, SESSION, [Tally(OPEN, 1)]))
    run(counters.count(team_id, AGENT, SESSION, [Tally(CLOSE, -1)], hold=hold))
    assert run(used(counters, team_id)) == {OPEN.field: 1.0}
    # When the close is denied, Then the file counts as open again
    assert counters.refund_hold(team_id, hold) is True
    assert run(used(counters, team_id)) == {OPEN.field: 2.0}


def test_refund_hold__held_decrement_that_moved_nothing__nothing_restored(counters, team_id):
    # Given no file open, and a held close_file (the counter stays at zero)
    hold = uuid.uuid4()
    run(counters.count(team_id, AGENT, SESSION, [Tally(CLOSE, -1)], hold=hold))
    # When it is denied, Then the counter is not raised by what was never lowered
    counters.refund_hold(team_id, hold)
    assert run(used(counters, team_id)).get(OPEN.field, 0.0) == 0.0


def test_refund_hold__spend_lowered_since__never_below_zero(counters, team_id):
    # Given a held 30, then the session's spend given back by a release meanwhile
    hold = uuid.uuid4()
    run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 30)], hold=hold))
    run(counters.release(team_id, AGENT, SESSION, [Tally(BUDGET, 30)]))
    # When the hold is refunded, Then the spend stays at zero, not -30
    counters.refund_hold(team_id, hold)
    assert run(used(counters, team_id)) == {"spend|pay": 0.0}


def test_release__unanswered_call__its_counts_given_back(counters, team_id):
    tallies = [Tally(BUDGET, 40), Tally(CALLS, 1)]

    async def scenario() -> dict[str, float]:
        await counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 10)])
        await counters.count(team_id, AGENT, SESSION, tallies)
        await counters.release(team_id, AGENT, SESSION, tallies)
        return await used(counters, team_id)

    assert run(scenario()) == {"spend|pay": 10.0, "calls|pay": 0.0}


# --- Sessions ------------------------------------------------------------------------------------

# (agent, session) pairs that a careless key (joined with ':') would make one.
PAIRS = [
    ("a", "b:c"),
    ("a:b", "c"),
    (None, "a:b:c"),
    ("a:b:c", None),
    (None, None),
    ("a", None),
    (None, "a"),
    ("a", "b"),
    ("a:b:", ""),
]


def test_count__distinct_agent_session_pairs__never_share_counts(counters, team_id):
    # Given a different amount counted in each (agent, session), ids with ':' among them
    async def scenario() -> list[dict[str, float]]:
        for index, (agent, session) in enumerate(PAIRS):
            await counters.count(team_id, agent, session, [Tally(BUDGET, index + 1)])
        return [await counters.used(team_id, agent, session) for agent, session in PAIRS]

    # Then each sees only its own
    assert run(scenario()) == [{"spend|pay": float(index + 1)} for index in range(len(PAIRS))]


def test_count__same_session_of_another_team__counted_apart(counters, team_id):
    other = uuid.uuid4()
    run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 100)]))
    assert run(counters.count(other, AGENT, SESSION, [Tally(BUDGET, 100)])) is None
    assert run(used(counters, other)) == {"spend|pay": 100.0}


# --- Expiry --------------------------------------------------------------------------------------


@override_settings(SESSION_COUNTERS_SECONDS=2)
def test_redis_count__counts_and_holds__expire_after_the_setting(on_redis, team_id):
    # Given a session's count and a hold, with counts kept 2 s
    hold = uuid.uuid4()
    run(RedisSessionCounters().count(team_id, AGENT, SESSION, [Tally(BUDGET, 5)], hold=hold))
    # Then both keys expire within that time (not in the default 30 days)
    client = redis.Redis.from_url(on_redis)
    keys = [key.decode() for key in client.scan_iter(match=f"veto:{{{team_id}}}:*")]
    assert len(keys) == 2
    assert all(0 < client.pttl(key) <= 2000 for key in keys), {key: client.pttl(key) for key in keys}
    client.close()


def test_local_count__session_idle_past_the_setting__starts_from_zero(monkeypatch, team_id):
    # Given a count and a hold in the process, and a clock moved past SESSION_COUNTERS_SECONDS
    counters = LocalSessionCounters()
    hold = uuid.uuid4()
    run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 90)], hold=hold))
    later = time.monotonic() + 31 * 24 * 3600
    monkeypatch.setattr(module.time, "monotonic", lambda: later)
    # Then the session counts from zero, and the hold has nothing to give back
    assert run(used(counters, team_id)) == {}
    assert counters.refund_hold(team_id, hold) is False
    assert run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 100)])) is None


# --- Redis away ----------------------------------------------------------------------------------


@pytest.fixture
def unreachable_redis() -> Iterator[str]:
    """REDIS_URL at a port nothing listens on."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    common_redis.reset_clients()
    with override_settings(REDIS_URL=url):
        yield url
    common_redis.reset_clients()


def test_redis_counters__redis_unreachable__every_operation_raises_redis_error_at_once(unreachable_redis):
    counters = RedisSessionCounters()
    team_id = uuid.uuid4()
    started = time.monotonic()
    with pytest.raises(RedisError):
        run(counters.count(team_id, AGENT, SESSION, [Tally(BUDGET, 5)]))
    with pytest.raises(RedisError):
        run(counters.release(team_id, AGENT, SESSION, [Tally(BUDGET, 5)]))
    with pytest.raises(RedisError):
        counters.refund_hold(team_id, uuid.uuid4())
    with pytest.raises(RedisError):
        run(used(counters, team_id))
    # A refused connection is not waited for (the caller denies at once)
    assert time.monotonic() - started < 2


# --- Refunds on approval events ------------------------------------------------------------------


def approval_event(event_type: EventType, team_id: uuid.UUID, hold: Any, status: str | None) -> Event:
    data: dict[str, Any] = {"approval_id": str(hold), "action": "x"}
    if status is not None:
        data["status"] = status
    return Event(event_type, team_id, "events", 1, timezone.now(), data)


def eventually(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(params=["redis", "embedded"])
def configured(request: pytest.FixtureRequest) -> Iterator[Counters]:
    """The counters this process uses (``session_counters()``), with and without REDIS_URL."""
    if request.param == "redis":
        request.getfixturevalue("on_redis")
        yield session_counters()
        return
    with override_settings(REDIS_URL=""):
        module._local.clear()
        yield session_counters()
        module._local.clear()


@pytest.mark.parametrize(
    ("event_type", "status"),
    [(EventType.APPROVAL_RESOLVED, "denied"), (EventType.APPROVAL_EXPIRED, None)],
    ids=["denied", "expired"],
)
def test_refund_hold_of_event__denied_or_expired__hold_given_back(configured, team_id, event_type, status):
    # Given a held call of 30
    hold = uuid.uuid4()
    run(configured.count(team_id, AGENT, SESSION, [Tally(BUDGET, 30)], hold=hold))
    # When its approval is denied or expires
    refund_hold_of_event(approval_event(event_type, team_id, hold, status))
    # Then its spend is given back (with Redis, by the refund thread: shortly)
    assert eventually(lambda: run(used(configured, team_id)) == {"spend|pay": 0.0})


def test_refund_hold_of_event__approved__counts_stand(configured, team_id):
    # Given a held call of 30, whose approval is approved
    hold = uuid.uuid4()
    run(configured.count(team_id, AGENT, SESSION, [Tally(BUDGET, 30)], hold=hold))
    refund_hold_of_event(approval_event(EventType.APPROVAL_RESOLVED, team_id, hold, "approved"))
    # When a denial of another approval is refunded after it (the queue is in order)
    other = uuid.uuid4()
    run(configured.count(team_id, AGENT, SESSION, [Tally(CALLS, 1)], hold=other))
    refund_hold_of_event(approval_event(EventType.APPROVAL_RESOLVED, team_id, other, "denied"))
    assert eventually(lambda: run(used(configured, team_id)).get("calls|pay") == 0.0)
    # Then the approved call's spend stands, and its hold is still there (it was never refunded)
    assert run(used(configured, team_id))["spend|pay"] == 30.0
    assert configured.refund_hold(team_id, hold) is True


def test_refund_hold_of_event__not_an_approval_id__ignored(configured, team_id):
    run(configured.count(team_id, AGENT, SESSION, [Tally(BUDGET, 30)]))
    refund_hold_of_event(approval_event(EventType.APPROVAL_EXPIRED, team_id, "not-a-uuid", None))
    refund_hold_of_event(approval_event(EventType.APPROVAL_EXPIRED, team_id, None, None))
    assert run(used(configured, team_id)) == {"spend|pay": 30.0}
