"""Request-path database calls against a database that hangs: ``run_in_db_thread`` answers 503 within its
deadline and opens the breaker; the thread it cannot interrupt finishes on its own."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from common import database
from common.database import breaker
from common.errors import DatabaseUnavailable


@pytest.fixture(autouse=True)
def closed_breaker() -> Iterator[None]:
    breaker._open_until = 0.0
    yield
    breaker._open_until = 0.0
    breaker._probing = False


@pytest.fixture
def on_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "_request_deadline_applies", lambda: True)


@pytest.fixture
def probe_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database hangs for a fresh probe connection too (what ``suspect_a_hang`` checks, on a
    thread; here at once, so the test can look right after)."""
    monkeypatch.setattr(
        database, "suspect_a_hang", lambda call_began: breaker.trip("probe unanswered (test)")
    )


@override_settings(DATABASE_REQUEST_TIMEOUT=0.2)
def test_run_in_db_thread__call_hangs__503_within_the_deadline__breaker_opens__next_call_refused_at_once(
    on_postgresql, probe_unanswered
):
    release = threading.Event()

    def hangs() -> str:
        release.wait(5)
        return "late"

    async def scenario() -> tuple[float, BaseException | None, float]:
        started = time.monotonic()
        # When a request-path call waits on a database that does not answer
        try:
            await database.run_in_db_thread(hangs)
            error = None
        except DatabaseUnavailable as exc:
            error = exc
        elapsed = time.monotonic() - started
        opened = breaker.is_open()
        # ... and the next call comes
        again = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            await database.run_in_db_thread(lambda: "never")
        second = time.monotonic() - again
        release.set()  # the database answers again: the abandoned thread finishes
        return elapsed, error, opened, second

    try:
        elapsed, error, opened, second = asyncio.run(scenario())
    finally:
        release.set()

    # Then the first answered 503 about at its deadline and the breaker opened: the next is refused at once
    assert isinstance(error, DatabaseUnavailable)
    assert 0.18 <= elapsed < 0.6
    assert opened
    assert second < 0.05


@override_settings(DATABASE_REQUEST_TIMEOUT=0.2)
def test_run_in_db_thread__function_raises_its_own_timeout__not_taken_for_a_hung_database(on_postgresql):
    def times_out() -> None:
        raise TimeoutError("the function's own")

    # When the called function itself raises TimeoutError, quickly
    with pytest.raises(TimeoutError, match="the function's own"):
        asyncio.run(database.run_in_db_thread(times_out))

    # Then it propagates as it is, and the breaker stays closed
    assert not breaker.is_open()


def test_breaker__tripped__refuses_for_the_retry_period_then_a_success_closes_it():
    # Given a breaker tripped by a call past its deadline
    from common.database import DatabaseBreaker

    tripped = DatabaseBreaker(retry_seconds=0.1)
    tripped.trip("test")
    assert tripped.is_open()
    with pytest.raises(DatabaseUnavailable):
        tripped.before_call()
    # When a success is seen before and after the retry period
    tripped.succeeded()
    assert tripped.is_open()
    time.sleep(0.12)
    tripped.succeeded()
    # Then it is closed again
    assert not tripped.is_open()
    assert tripped.before_call() is False


@override_settings(DATABASE_REQUEST_TIMEOUT=0.2)
def test_watchdog__query_blocked_while_the_breaker_is_open__its_socket_is_shut_down_within_the_deadline():
    from types import SimpleNamespace

    from common.database import QueryWatchdog

    # Given a query blocked reading a connection's socket (a server that does not answer)
    ours, servers = socket.socketpair()
    ours.settimeout(2)  # a bound for the test: without the watchdog the read fails after it
    context = {
        "connection": SimpleNamespace(
            connection=SimpleNamespace(pgconn=SimpleNamespace(socket=ours.fileno()))
        )
    }

    def blocked_query(sql: str, params: object, many: bool, context: object) -> bytes:
        return ours.recv(1)

    watchdog = QueryWatchdog()
    breaker.trip("test")  # the database is known not to answer
    started = time.monotonic()
    try:
        # When it runs through the watchdog
        read = watchdog._execute(blocked_query, "SELECT 1", None, False, context)
        elapsed = time.monotonic() - started
    finally:
        ours.close()
        servers.close()

    # Then it was woken (end of file) about at the deadline, not left waiting
    assert read == b""
    assert elapsed < 0.6


@override_settings(DATABASE_REQUEST_TIMEOUT=0.2)
def test_run_in_db_thread__burst_queued_past_the_deadline__quick_calls_all_answer__breaker_stays_closed(
    on_postgresql,
):
    from concurrent.futures import ThreadPoolExecutor

    def quick() -> str:
        time.sleep(0.02)
        return "answered"

    async def scenario() -> list[object]:
        # Given two worker threads, and a burst of 40 quick calls (5,000 long-polls arriving at
        # once): the last ones wait in the queue for about 0.4 s, twice the deadline
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        # When they all run
        return await asyncio.gather(
            *(database.run_in_db_thread(quick) for _ in range(40)), return_exceptions=True
        )

    results = asyncio.run(scenario())

    # Then every one answered (the deadline counts from a thread taking the call, not the queue)
    # and the breaker, which would answer every request 503, stayed closed
    assert results == ["answered"] * 40
    assert not breaker.is_open()


@override_settings(DATABASE_REQUEST_TIMEOUT=0.2)
def test_run_in_db_thread__queued_behind_a_hung_call__503_once_the_breaker_opens_not_when_the_thread_frees(
    on_postgresql, probe_unanswered
):
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()

    def hangs() -> str:
        release.wait(5)
        return "late"

    async def scenario() -> tuple[list[object], float]:
        # Given one worker thread held by a call on a database that does not answer, and a call queued behind it
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
        started = time.monotonic()
        hung = asyncio.ensure_future(database.run_in_db_thread(hangs))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(database.run_in_db_thread(lambda: "never ran"))
        # When the hung call passes its deadline and opens the breaker
        results = await asyncio.gather(hung, queued, return_exceptions=True)
        elapsed = time.monotonic() - started
        release.set()
        return results, elapsed

    try:
        results, elapsed = asyncio.run(scenario())
    finally:
        release.set()

    # Then both answered 503 within about two deadlines, the queued one without waiting for the thread
    assert [type(result) for result in results] == [DatabaseUnavailable, DatabaseUnavailable]
    assert elapsed < 0.7
    assert breaker.is_open()


@override_settings(DATABASE_REQUEST_TIMEOUT=0.2)
def test_run_in_db_thread__call_late_but_the_database_answers_a_probe__503_for_it_alone__breaker_stays_closed(
    on_postgresql, monkeypatch
):
    probes: list[float] = []

    def probe_answers(wait: float, *, calls_began: float) -> bool:
        probes.append(wait)
        return False  # a fresh connection's SELECT 1 answered: the process was busy, not the database

    monkeypatch.setattr(database.watchdog, "_database_hangs", probe_answers)
    monkeypatch.setattr(database.watchdog, "_last_probe", 0.0)

    def slow_on_a_busy_process() -> str:
        time.sleep(0.3)  # past the deadline: a thread starved of CPU by thousands of long-polls
        return "late"

    async def scenario() -> tuple[BaseException | None, object]:
        # When one call runs past its deadline
        try:
            await database.run_in_db_thread(slow_on_a_busy_process)
            late = None
        except DatabaseUnavailable as exc:
            late = exc
        await asyncio.sleep(0.05)  # the probe's thread
        # ... the next call goes through
        return late, await database.run_in_db_thread(lambda: "answered")

    late, next_answer = asyncio.run(scenario())

    # Then the late call answered 503, the database was probed once, and nothing else is refused
    assert isinstance(late, DatabaseUnavailable)
    assert probes == [0.2]
    assert not breaker.is_open()
    assert next_answer == "answered"


def test_suspect_a_hang__probe_unanswered__breaker_opens(monkeypatch):
    from common.database import QueryWatchdog

    # Given a database that does not answer a fresh connection (the probe waits, then trips)
    watchdog = QueryWatchdog()
    monkeypatch.setattr(database, "watchdog", watchdog)
    release = threading.Event()

    def connect_hangs(**parameters: object) -> None:
        release.wait(5)
        raise OSError("released")

    monkeypatch.setattr(database.psycopg, "connect", connect_hangs)
    with override_settings(DATABASE_REQUEST_TIMEOUT=0.2):
        try:
            # When a late call makes the process suspect a hang
            database.suspect_a_hang(time.monotonic() - 0.2)
            deadline = time.monotonic() + 1.0
            while not breaker.is_open() and time.monotonic() < deadline:
                time.sleep(0.01)
            opened = breaker.is_open()
            # ... and more late calls come while the probe runs
            database.suspect_a_hang(time.monotonic() - 0.2)
        finally:
            release.set()

    # Then the breaker opened about one deadline later, from one probe
    assert opened


def test_database_hangs__a_probe_answered_just_before_the_calls_began__is_no_evidence__probes_again(
    monkeypatch,
):
    from common.database import QueryWatchdog

    # Given a probe that the database answered a moment ago (well within the once-a-second limit)
    watchdog = QueryWatchdog()
    connects: list[float] = []
    frozen = threading.Event()
    release = threading.Event()

    def connect(**parameters: object) -> object:
        connects.append(time.monotonic())
        if frozen.is_set():
            release.wait(5)  # PostgreSQL frozen: the connection is accepted, nothing answers
            raise OSError("released")
        raise OSError("refused at once")  # answered (not a hang)

    monkeypatch.setattr(database.psycopg, "connect", connect)
    assert watchdog._database_hangs(0.2, calls_began=time.monotonic() - 1.0) is False
    # When the database freezes, and queries that began after that answer are overdue
    frozen.set()
    calls_began = time.monotonic()
    time.sleep(0.01)
    try:
        hangs = watchdog._database_hangs(0.2, calls_began=calls_began)
        opened = breaker.is_open()
    finally:
        release.set()

    # Then the watchdog probed again at once, and the unanswered probe opened the breaker
    assert len(connects) == 2
    assert hangs is True
    assert opened


def test_database_hangs__a_probe_answered_while_the_calls_waited__slow_not_hung__no_second_probe(monkeypatch):
    from common.database import QueryWatchdog

    # Given calls waiting since a moment ago, and a probe the database answered after they began
    watchdog = QueryWatchdog()
    connects: list[float] = []

    def connect(**parameters: object) -> object:
        connects.append(time.monotonic())
        raise OSError("refused at once")

    monkeypatch.setattr(database.psycopg, "connect", connect)
    calls_began = time.monotonic() - 0.5
    assert watchdog._database_hangs(0.2, calls_began=calls_began) is False

    # When the same calls are still overdue on the watchdog's next look
    again = watchdog._database_hangs(0.2, calls_began=calls_began)

    # Then the answer stands (the database is slow, not hung) without another connection
    assert again is False
    assert len(connects) == 1
    assert not breaker.is_open()
