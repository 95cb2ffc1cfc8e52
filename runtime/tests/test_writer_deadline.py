"""The PostgreSQL decision writer against a database that hangs: a waiter hears 503 within its
deadline, the outage breaker opens, and a row is never written twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from common.database import breaker
from common.errors import DatabaseUnavailable
from runtime.writer import AsyncPostgresWriter, _AsyncPending

DEADLINE = 0.2


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False
        self.broken = False

    async def close(self) -> None:
        self.closed = True


class HangingWriter(AsyncPostgresWriter):
    """Writes go to a list; while ``hang`` is set a write waits on ``release``."""

    def __init__(self) -> None:
        super().__init__(max_batch=16, timeout=DEADLINE)
        self.hang = True
        self.release = asyncio.Event()
        self.written: list[tuple[object, FakeConnection]] = []
        self.connections: list[FakeConnection] = []

    async def _connect(self, generation: int) -> Any:
        conn = self._connection
        if conn is None or conn.closed:
            conn = FakeConnection()
            self.connections.append(conn)
            if generation == self._generation:
                self._connection = conn  # type: ignore[assignment]
        return conn

    async def _insert(self, conn: Any, batch: list[_AsyncPending]) -> None:
        if self.hang:
            await self.release.wait()
        self.written.extend((item.row["tag"], conn) for item in batch)


@pytest.fixture(autouse=True)
def closed_breaker() -> Iterator[None]:
    breaker._open_until = 0.0
    yield
    breaker._open_until = 0.0
    breaker._probing = False


def test_async_writer__database_hangs__waiter_hears_503_within_the_deadline__breaker_opens():
    async def scenario() -> tuple[float, BaseException | None]:
        # Given a writer whose database does not answer
        writer = HangingWriter()
        started = time.monotonic()
        # When a request records its decision
        try:
            await asyncio.wait_for(writer.write({"tag": "a"}), 2)  # a bound for the test, not the writer
        except DatabaseUnavailable as exc:
            return time.monotonic() - started, exc
        except TimeoutError:
            pass
        finally:
            writer.release.set()
        return time.monotonic() - started, None

    elapsed, error = asyncio.run(scenario())

    # Then it hears database_unavailable about when its deadline passed, and the breaker is open
    assert isinstance(error, DatabaseUnavailable)
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + 0.3
    assert breaker.is_open()


def test_async_writer__abandoned_write_returns_later__row_written_once__next_write_on_a_new_connection():
    async def scenario() -> tuple[HangingWriter, list[BaseException | None]]:
        # Given a writer whose write of row "a" hangs past its deadline (and so was abandoned)
        writer = HangingWriter()
        outcomes: list[BaseException | None] = []
        first = asyncio.ensure_future(writer.write({"tag": "a"}))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(writer.write({"tag": "b"}))  # waits behind "a"
        for task in (first, queued):
            try:
                await asyncio.wait_for(task, 2)  # a bound for the test, not the writer
                outcomes.append(None)
            except (DatabaseUnavailable, TimeoutError) as exc:
                outcomes.append(exc)
        # When the database answers again: the abandoned write returns, and a new row comes
        writer.release.set()
        await asyncio.sleep(0.05)
        writer.hang = False
        breaker._open_until = 0.0
        await writer.write({"tag": "c"})
        await asyncio.sleep(0.05)
        return writer, outcomes

    writer, outcomes = asyncio.run(scenario())

    # Then both waiters heard 503; the abandoned "a" committed once (allowed: its answer was a
    # failure), "b" at most once, "c" once, on a fresh connection
    assert all(isinstance(outcome, DatabaseUnavailable) for outcome in outcomes)
    tags = Counter(tag for tag, _ in writer.written)
    assert tags["a"] == 1 and tags["b"] <= 1 and tags["c"] == 1, tags
    connection_of = dict(writer.written)
    assert connection_of["a"] is not connection_of["c"]
    assert connection_of["a"].closed  # the abandoned write's connection was closed once it returned
    assert not connection_of["c"].closed


def test_async_writer__breaker_open__refuses_at_once_without_writing():
    async def scenario() -> tuple[HangingWriter, float, BaseException | None]:
        # Given a writer and an open breaker (the database hung a moment ago)
        writer = HangingWriter()
        breaker.trip("test")
        started = time.monotonic()
        # When a request records its decision
        try:
            await writer.write({"tag": "a"})
        except DatabaseUnavailable as exc:
            return writer, time.monotonic() - started, exc
        return writer, time.monotonic() - started, None

    writer, elapsed, error = asyncio.run(scenario())

    # Then it is refused at once, and nothing was written
    assert isinstance(error, DatabaseUnavailable)
    assert elapsed < 0.05
    assert writer.written == [] and writer.connections == []
