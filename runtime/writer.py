"""Group commit for decision records.

Every decision must be durable before its answer is sent, and a commit per
request would make the database's fsync the ceiling of the hot path. So a
request hands its row to a writer and waits; rows that arrive while a write is
in flight go into the next one, and under load many decisions share a commit.
Each waiter learns whether *its own row* committed: a failed batch is retried
row by row, so one unstorable row fails only its own request.

A batch is one SQL statement (``_insert_statement``): the rows travel as one
JSON parameter, and a ``require_approval`` decision's approval goes in through
a data-modifying CTE of the same statement, so decision and approval commit
together. On PostgreSQL the statement also links the rows into their teams'
audit chains (``audit_link_decisions``, migration 0005: heads locked, entries
numbered and hashed, heads moved), so a team's head is locked for one round trip
and the commit, not across the client's own work. On this machine a database
round trip costs ~85 µs of client CPU; ``bulk_create`` (~170 µs a row,
client-side quoting) and COPY in a transaction (four round trips a batch) both
cost more (measured; see README).

Two writers, one per kind of caller:

* ``AsyncPostgresWriter`` (PostgreSQL, the gateway's requests): runs on the
  event loop with its own async connection. Doing the I/O on the loop instead
  of a thread removed the two threads' contention for the GIL: ~170 → ~110 µs
  of CPU per validated call, in-process (measured).
* ``ThreadedWriter``: a thread with a Django connection, for SQLite (the
  embedded default, whose driver has no async I/O).

Both need committed data to reference (``transactional_db`` in tests), exactly
like the live server.

After each commit the writer announces what it wrote (common.events: ``decision.created``, and
``approval.created`` for a decision that raised one, at the decision's sequence), once per batch,
handlers on the event loop and at most one PUBLISH in the background. Only when somebody
subscribes to those types: then the statement also returns each row's sequence (``RETURNING``;
SQLite's rows are numbered in Python, ``link_rows``). Nobody does today, so the hot path pays
one set lookup per batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import uuid
import weakref
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from django.conf import settings
from django.db import DataError, close_old_connections, connection, models, transaction

from approvals.models import Approval
from audit.chain import Head, decision_record_parts, link_rows
from audit.events import decision_events
from audit.models import ChainHead, ChainStream, DecisionRecord, context_columns
from common import events, metrics
from common.database import breaker
from common.errors import (
    DATABASE_UNAVAILABLE_MESSAGE,
    DatabaseUnavailable,
    InvalidInput,
    ServiceUnavailable,
    is_database_unavailable,
)
from common.request_id import without_request_id

logger = logging.getLogger(__name__)

DecisionRow = dict[str, Any]


class RecordFailed(ServiceUnavailable):
    code = "record_failed"


# --- the statement ------------------------------------------------------------------------------


def _json_default(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _columns(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return list(model._meta.concrete_fields)


def _column(field: models.Field[Any, Any]) -> str:
    # Concrete fields are those with a column (Django sets ``concrete = column is not None``).
    assert field.column is not None
    return field.column


# Filled in by PostgreSQL (``audit_link_decisions``, migration 0005), not sent by the client.
_CHAIN_COLUMNS = ("sequence", "record", "prev_hash", "hash")


def _insert_from_json(model: type[models.Model], placeholder: str) -> str:
    """``INSERT ... SELECT ... FROM jsonb_to_recordset(<placeholder>)``, typed from the model."""
    fields = _columns(model)
    names = ", ".join(_column(f) for f in fields)
    record_type = ", ".join(f"{f.column} {f.db_type(connection)}" for f in fields)
    return (
        f"INSERT INTO {model._meta.db_table} ({names}) "
        f"SELECT {names} FROM jsonb_to_recordset({placeholder}::jsonb) AS x({record_type})"
    )


@lru_cache(maxsize=4)
def _insert_statement(with_approvals: bool, returning: bool = False) -> str:
    """The batch's one statement, one round trip, in autocommit: the rows (JSON, parsed once into
    ``x``), their links (heads locked, entries numbered and hashed, heads moved), the approvals
    they raised, and the decisions with their chain columns joined by batch place. A team's
    head is so locked only while this statement runs and commits, never across the client's
    own work. ``returning``: each row's id and sequence come back (to announce them)."""
    fields = [f for f in _columns(DecisionRecord) if f.column not in _CHAIN_COLUMNS]
    names = ", ".join(_column(f) for f in fields)
    record_type = ", ".join(f"{f.column} {f.db_type(connection)}" for f in fields)
    ctes = [
        f"x AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%s::jsonb) "
        f"AS x({record_type}, ord bigint, record_before text, record_after text))",
        # The arrays are built here, in C: psycopg dumps a Python list of texts element by
        # element, escaping each with a regex (a quarter of a web worker's CPU, measured).
        "links AS MATERIALIZED (SELECT * FROM audit_link_decisions("
        "ARRAY(SELECT team_id FROM x ORDER BY ord), ARRAY(SELECT record_before FROM x ORDER BY ord), "
        "ARRAY(SELECT record_after FROM x ORDER BY ord)))",
    ]
    if with_approvals:
        ctes.append(f"approvals AS ({_insert_from_json(Approval, '%s')})")
    return (
        f"WITH {', '.join(ctes)} "
        f"INSERT INTO {DecisionRecord._meta.db_table} ({names}, {', '.join(_CHAIN_COLUMNS)}) "
        f"SELECT {', '.join(f'x.{f.column}' for f in fields)}, "
        "l.link_sequence, l.link_record, l.link_prev_hash, l.link_hash "
        "FROM x JOIN links AS l ON l.link_ord = x.ord" + (" RETURNING id, sequence" if returning else "")
    )


def _fill_context_columns(row: DecisionRow) -> None:
    """The row's model, environment, agent and session columns, read from its context (the
    explorer's indexed filters), unless the caller set them. ~1 µs a row; not in the record."""
    for column, value in context_columns(row["context"]).items():
        row.setdefault(column, value)


def _statement_and_parameters(
    rows: list[DecisionRow], approvals: list[Approval], *, returning: bool = False
) -> tuple[str, tuple[str, ...]]:
    encode = json.JSONEncoder(default=_json_default, separators=(",", ":")).encode
    linked = []
    for n, row in enumerate(rows, start=1):
        _fill_context_columns(row)
        parts = decision_record_parts(row)
        linked.append({**row, "ord": n, "record_before": parts.before, "record_after": parts.after})
    decisions = encode(linked)
    if not approvals:
        return _insert_statement(False, returning), (decisions,)
    approval_rows = [{f.attname: getattr(a, f.attname) for f in _columns(Approval)} for a in approvals]
    return _insert_statement(True, returning), (decisions, encode(approval_rows))


def _number(rows: list[DecisionRow], returned: list[tuple[uuid.UUID, int]]) -> None:
    """Give the rows the sequences PostgreSQL returned (``RETURNING id, sequence``)."""
    sequences = dict(returned)
    for row in rows:
        row["sequence"] = sequences[row["id"]]


# What the writer announces; it builds and numbers events only while somebody subscribes.
_ANNOUNCED = frozenset({events.EventType.DECISION_CREATED, events.EventType.APPROVAL_CREATED})


def _announced() -> frozenset[events.EventType]:
    return events.wanted() & _ANNOUNCED


def _events_of(rows: Iterable[DecisionRow], wanted: frozenset[events.EventType]) -> list[events.Event]:
    return [event for row in rows for event in decision_events(row) if event.type in wanted]


def _team_ids(rows: list[DecisionRow]) -> list[uuid.UUID]:
    # Sorted: every writer locks heads in the same order, so two cannot deadlock.
    return sorted({row["team_id"] for row in rows}, key=str)


def _lock_heads(team_ids: list[uuid.UUID]) -> dict[uuid.UUID, Head]:
    """Lock (creating when new) the decision-chain heads of these teams, on Django's connection."""
    for team_id in team_ids:
        ChainHead.objects.get_or_create(team_id=team_id, stream=ChainStream.DECISIONS)
    locked = ChainHead.objects.select_for_update().filter(stream=ChainStream.DECISIONS, team_id__in=team_ids)
    return {h.team_id: Head(h.sequence, h.hash) for h in locked.order_by("team_id")}


def insert_decisions(rows: list[DecisionRow], approvals: list[Approval], *, numbered: bool = False) -> None:
    """Chain and insert decision rows (and the approvals they raised) atomically, on Django's
    connection (the thread writer's path; SQLite always comes here). Each row's ``sequence`` is
    set on it (on PostgreSQL only when ``numbered``: it costs the returned rows)."""
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        statement, parameters = _statement_and_parameters(rows, approvals, returning=numbered)
        # A server-side-binding cursor: the JSON goes as a parameter, not quoted into the SQL.
        with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(statement, parameters, prepare=True)
            if numbered:
                _number(rows, cursor.fetchall())
        return
    for row in rows:
        _fill_context_columns(row)
    with transaction.atomic():
        heads = link_rows(rows, _lock_heads(_team_ids(rows)))
        Approval.objects.bulk_create(approvals)
        DecisionRecord.objects.bulk_create([DecisionRecord(**row) for row in rows])
        for team_id, head in heads.items():
            ChainHead.objects.filter(team_id=team_id, stream=ChainStream.DECISIONS).update(
                sequence=head.sequence, hash=head.hash
            )


def _row_error(error: BaseException) -> Exception:
    """What the waiter of a row that could not be written hears."""
    if isinstance(error, (DataError, psycopg.errors.DataError)):
        # The row's own data does not fit (a value PostgreSQL cannot store): the caller's input.
        logger.warning("decision_writer.row_refused error=%s", error)
        return InvalidInput(f"a value in the request cannot be stored: {str(error).splitlines()[0]}")
    if is_database_unavailable(error):
        # Down or unreachable: the same 503 database_unavailable (with Retry-After) as any other path.
        logger.warning("decision_writer.database_unavailable error=%r", error)
        return DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE)
    logger.error("decision_writer.write_failed error=%r", error)
    return RecordFailed("the decision could not be recorded")


# --- PostgreSQL: on the event loop --------------------------------------------------------------


@dataclass(slots=True)
class _AsyncPending:
    row: DecisionRow
    approval: Approval | None
    done: asyncio.Future[None]


def _connection_parameters() -> dict[str, Any]:
    parameters = connection.get_connection_params()
    return {
        k: v for k, v in parameters.items() if k not in ("cursor_factory", "context", "prepare_threshold")
    }


# How many abandoned writes (past their deadline, still waiting on a hung database) a writer lets
# run before it refuses rows outright: each holds a connection until the database answers again
# (or the connection's TCP timeouts drop it).
MAX_ABANDONED_WRITES = 3


class AsyncPostgresWriter:
    """One per event loop: a flusher task drains what accumulated while the previous write ran.

    Deadlines: a waiter hears ``DatabaseUnavailable`` once its row has waited ``timeout`` seconds
    (the database hangs), and a batch write still running then is *abandoned*: its waiters are
    answered, the outage breaker opens, the writer moves on with a fresh connection, and the
    abandoned write's connection is closed once it returns. An abandoned row may still commit
    later (its request was answered 503: allowed), but it is never written a second time: rows
    whose waiter was answered are skipped by every later write and retry."""

    def __init__(self, *, max_batch: int, timeout: float | None = None) -> None:
        self._max_batch = max_batch
        self._timeout = settings.DATABASE_REQUEST_TIMEOUT if timeout is None else timeout
        self._pending: list[_AsyncPending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None
        # Bumped when a write is abandoned: a connection opened by an abandoned write is its own,
        # closed when it returns, never the writer's.
        self._generation = 0
        self._abandoned: set[asyncio.Task[None]] = set()

    async def write(self, row: DecisionRow, approval: Approval | None = None) -> None:
        """Return once the row (and its approval) is committed; raise if it could not be, or if
        the database did not answer within the deadline (then the row may still commit later)."""
        if breaker.is_open() or len(self._abandoned) >= MAX_ABANDONED_WRITES:
            raise DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append(_AsyncPending(row, approval, done))
        if self._flusher is None:
            # Commits many requests' rows: no one request's id on its log lines.
            self._flusher = loop.create_task(self._flush_all(), context=without_request_id())
        # A timer, not wait_for: one handle per row on the hot path, no extra task or future.
        deadline = loop.call_later(self._timeout, _expire, done)
        try:
            await done
        finally:
            deadline.cancel()

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                metrics.WRITER_QUEUE_ROWS.set(len(self._pending))
                taken = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                # Rows whose waiter was already answered (its deadline passed) are not written.
                batch = [item for item in taken if not item.done.done()]
                if batch:
                    metrics.WRITER_BATCH_ROWS.observe(len(batch))
                    await self._flush_bounded(batch)
        finally:
            self._flusher = None
            metrics.WRITER_QUEUE_ROWS.set(0)

    async def _flush_bounded(self, batch: list[_AsyncPending]) -> None:
        task = asyncio.ensure_future(self._flush(batch))
        finished, _ = await asyncio.wait((task,), timeout=self._timeout)
        if finished:
            return
        # The database hangs. The write cannot be cancelled safely (psycopg would ask a frozen
        # server to cancel it, blocking); leave it to return or fail on its own, off the books.
        logger.warning("decision_writer.write_abandoned size=%d after=%.2fs", len(batch), self._timeout)
        self._generation += 1
        self._connection = None  # the abandoned write's; it closes it when it returns
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)
        breaker.trip("decision write past its deadline")
        _settle_async([item.done for item in batch], DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE))

    async def _flush(self, batch: list[_AsyncPending]) -> None:
        generation = self._generation
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            conn = await self._connect(generation)
            announced = await self._insert(conn, batch)
        except Exception as exc:  # noqa: BLE001 - one bad row must not fail the requests it shares a batch with
            await self._forget_broken_connection(conn)
            waiting = [item for item in batch if not item.done.done()]
            if len(waiting) <= 1 or generation != self._generation:
                if len(batch) > 1:
                    logger.warning("decision_writer.batch_failed size=%d", len(batch))
                _settle_async([item.done for item in waiting], _row_error(exc))
                return
            logger.warning("decision_writer.batch_failed size=%d: retrying row by row", len(batch))
            for item in waiting:
                if not item.done.done() and generation == self._generation:
                    await self._flush([item])
            return
        finally:
            if generation != self._generation and conn is not None and conn is not self._connection:
                await conn.close()  # an abandoned write's connection
        breaker.succeeded()
        _settle_async([item.done for item in batch], None)
        if announced:
            # Committed, also when abandoned meanwhile (its waiters heard 503): announced as written.
            events.dispatch_on_loop(_events_of((item.row for item in batch), announced))

    async def _connect(self, generation: int) -> psycopg.AsyncConnection[Any]:
        conn = self._connection
        if conn is not None and not conn.closed:
            return conn
        parameters = _connection_parameters()
        parameters["options"] = f"{parameters.get('options', '')} {_server_timeouts()}".strip()
        conn = await psycopg.AsyncConnection.connect(**parameters, autocommit=True)
        if generation == self._generation:
            self._connection = conn
        return conn

    async def _insert(
        self, conn: psycopg.AsyncConnection[Any], batch: list[_AsyncPending]
    ) -> frozenset[events.EventType]:
        """Write the batch; returns the event types to announce for it (numbered if any)."""
        announced = _announced()
        numbered = bool(announced)
        rows = [item.row for item in batch]
        statement, parameters = _statement_and_parameters(
            rows, [item.approval for item in batch if item.approval is not None], returning=numbered
        )
        # Autocommit: the statement is its own transaction, so the teams' head locks are held for
        # one round trip and the commit (appends to one team, across processes, queue on them;
        # other teams' writers are not held up).
        cursor = await conn.execute(statement, parameters, prepare=True)
        if numbered:
            _number(rows, await cursor.fetchall())
        return announced

    async def _forget_broken_connection(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is not None and (conn.closed or conn.broken):
            if self._connection is conn:
                self._connection = None
            await conn.close()


def _server_timeouts() -> str:
    """libpq ``options`` for the writer's own connection: a write the client gave up on neither
    waits on a lock nor runs for long on the server. Only here: migrations, exports and
    verify_audit run long on other connections."""
    milliseconds = int(settings.DATABASE_WRITER_STATEMENT_TIMEOUT * 1000)
    return (
        f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds} "
        f"-c idle_in_transaction_session_timeout={milliseconds}"
    )


def _expire(done: asyncio.Future[None]) -> None:
    """A row's deadline passed before its write answered: the database hangs."""
    if not done.done():
        breaker.trip("decision record wait past its deadline")
        done.set_exception(DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE))


def _settle_async(futures: Iterable[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


# --- any database: on a thread ------------------------------------------------------------------


@dataclass(slots=True)
class PendingWrite:
    row: DecisionRow
    approval: Approval | None
    # The waiter's future and its loop: a batch's waiters are settled with one
    # call_soon_threadsafe per loop, not one wake-up each.
    done: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


class ThreadedWriter:
    def __init__(self, *, max_batch: int) -> None:
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[PendingWrite] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def write(self, row: DecisionRow, approval: Approval | None = None) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._enqueue(PendingWrite(row, approval, done, loop))
        await done

    def _enqueue(self, item: PendingWrite) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
                    self._thread.start()
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            metrics.WRITER_QUEUE_ROWS.set(len(batch) + self._queue.qsize())
            metrics.WRITER_BATCH_ROWS.observe(len(batch))
            self._flush(batch)
            if self._queue.empty():
                metrics.WRITER_QUEUE_ROWS.set(0)
                # Idle: hand the connection back (to the pool on PostgreSQL) rather than pin it.
                connection.close()

    def _flush(self, batch: list[PendingWrite]) -> None:
        announced = _announced()
        try:
            close_old_connections()
            insert_decisions(
                [item.row for item in batch],
                [item.approval for item in batch if item.approval],
                numbered=bool(announced),
            )
        except Exception as exc:  # noqa: BLE001 - one bad row must not fail the requests it shares a batch with
            connection.close()  # a broken connection must not poison the retries
            if len(batch) == 1:
                self._notify(batch, _row_error(exc))
                return
            logger.warning("decision_writer.batch_failed size=%d: retrying row by row", len(batch))
            for item in batch:
                self._flush([item])
            return
        self._notify(batch, None)
        if announced:
            self._announce(batch, _events_of((item.row for item in batch), announced))

    @staticmethod
    def _announce(batch: list[PendingWrite], announced: list[events.Event]) -> None:
        # On a waiter's loop, after its answer: this thread never waits on Redis.
        try:
            batch[0].loop.call_soon_threadsafe(events.dispatch_on_loop, announced)
        except RuntimeError:  # that loop has closed: from here, then
            events.dispatch(announced)

    @staticmethod
    def _notify(batch: list[PendingWrite], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
        for item in batch:
            by_loop[item.loop].append(item.done)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_async, futures, error)
            except RuntimeError:
                pass  # that loop has closed: nobody is waiting any more


# --- which writer -------------------------------------------------------------------------------

_threaded: ThreadedWriter | None = None
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncPostgresWriter] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def threaded_writer() -> ThreadedWriter:
    global _threaded
    if _threaded is None:
        with _lock:
            if _threaded is None:
                _threaded = ThreadedWriter(max_batch=settings.DECISION_WRITER_MAX_BATCH)
    return _threaded


@lru_cache(maxsize=1)
def _on_postgresql() -> bool:
    # From settings, once: reading ``connection.vendor`` in a request's coroutine builds a
    # DatabaseWrapper for that task's context (~24 us, measured) just to answer this.
    return bool(settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql")


def decision_writer() -> AsyncPostgresWriter | ThreadedWriter:
    """The writer for the calling coroutine: on PostgreSQL the running loop's own, else the thread."""
    if not _on_postgresql():
        return threaded_writer()
    loop = asyncio.get_running_loop()
    writer = _per_loop.get(loop)
    if writer is None:
        writer = _per_loop[loop] = AsyncPostgresWriter(max_batch=settings.DECISION_WRITER_MAX_BATCH)
    return writer
