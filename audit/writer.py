"""Group commit for decision records.

Every decision must be durable before its answer is sent, and a commit per
request would make the database's fsync the ceiling of the hot path. The
writer owns one thread and one connection per process: a request hands over
its row and waits; rows that arrive while a commit is in flight go into the
next one, so under load many decisions share one commit (measured in
benchmarks/, see README). Each waiter learns whether *its own row* committed:
a failed batch is retried row by row, so one unstorable row fails only its
own request.

On PostgreSQL a batch is one statement (see ``insert_decisions``): on this
machine a database round trip costs ~85 µs of client CPU, on the same GIL as
the requests, and ``bulk_create`` (~170 µs a row: client-side quoting) and
COPY in a transaction (four round trips) both cost more. SQLite, the embedded
default, uses ``bulk_create``.

Because the writer has its own connection, tests that go through it need
committed data (``transactional_db``), exactly like the live server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sys
import threading
import uuid
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from django.conf import settings
from django.db import DataError, close_old_connections, connection, transaction

from approvals.models import Approval
from audit.models import DECISION_COLUMNS, DecisionRecord
from common.errors import InvalidInput, ServiceUnavailable

logger = logging.getLogger(__name__)

DecisionRow = dict[str, Any]


def _json_default(value: object) -> str:
    if isinstance(value, (uuid.UUID, datetime)):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


@lru_cache(maxsize=1)
def _insert_from_json_sql() -> str:
    """One statement for a whole batch: the rows travel as one JSON array parameter.

    Types come from the model's fields, so this cannot drift from the table.
    """
    fields = {f.attname: f for f in DecisionRecord._meta.concrete_fields}
    columns = ", ".join(DECISION_COLUMNS)
    record_type = ", ".join(f"{c} {fields[c].db_type(connection)}" for c in DECISION_COLUMNS)
    return (
        f"INSERT INTO {DecisionRecord._meta.db_table} ({columns}) "
        f"SELECT {columns} FROM jsonb_to_recordset(%s::jsonb) AS x({record_type})"
    )


@dataclass(slots=True)
class PendingWrite:
    row: DecisionRow
    approval: Approval | None
    # Either a concurrent future (sync callers) or an asyncio future with its loop: a batch's
    # asyncio waiters are settled with one call_soon_threadsafe per loop, not one wake-up each.
    done: Future[None] | asyncio.Future[None]
    loop: asyncio.AbstractEventLoop | None = None


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _insert_rows_postgresql(rows: list[DecisionRow]) -> None:
    payload = json.dumps(rows, default=_json_default, separators=(",", ":"))
    # A server-side-binding cursor on Django's connection: the JSON goes as a parameter,
    # not quoted into the SQL text by the client.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_insert_from_json_sql(), (payload,), prepare=True)


def insert_decisions(rows: list[DecisionRow], approvals: list[Approval]) -> None:
    """Insert decision rows (and the approvals they raised) atomically.

    Without approvals, PostgreSQL takes the batch as one autocommitted statement: one round
    trip, where COPY in a transaction took four (about 85 us of client CPU each here).
    """
    connection.ensure_connection()
    if connection.vendor != "postgresql":
        with transaction.atomic():
            Approval.objects.bulk_create(approvals)
            DecisionRecord.objects.bulk_create([DecisionRecord(**row) for row in rows])
    elif approvals:
        with transaction.atomic():
            Approval.objects.bulk_create(approvals)
            _insert_rows_postgresql(rows)
    else:
        _insert_rows_postgresql(rows)


class DecisionWriter:
    def __init__(self, *, max_batch: int) -> None:
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[PendingWrite] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, row: DecisionRow, approval: Approval | None = None) -> Future[None]:
        """For synchronous callers: a future that resolves once the row is committed."""
        done: Future[None] = Future()
        self._ensure_thread()
        self._queue.put(PendingWrite(row, approval, done))
        return done

    async def write(self, row: DecisionRow, approval: Approval | None = None) -> None:
        """Return once the row (and its approval) is committed; raise if the commit failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._ensure_thread()
        self._queue.put(PendingWrite(row, approval, done, loop))
        await done

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._flush(batch)

    def _flush(self, batch: list[PendingWrite]) -> None:
        try:
            close_old_connections()
            self._insert(batch)
        except Exception:  # noqa: BLE001 - one bad row must not fail the requests it shares a batch with
            connection.close()  # a broken connection must not poison the retries
            if len(batch) == 1:
                self._notify(batch, _single_row_error())
            else:
                logger.warning("decision_writer.batch_failed size=%d: retrying row by row", len(batch))
                for item in batch:
                    self._flush([item])
            return
        else:
            self._notify(batch, None)
        finally:
            if self._queue.empty():
                # Idle: hand the connection back (to the pool on PostgreSQL) rather than pin it.
                connection.close()

    @staticmethod
    def _insert(batch: list[PendingWrite]) -> None:
        insert_decisions([item.row for item in batch], [item.approval for item in batch if item.approval])

    @staticmethod
    def _notify(batch: list[PendingWrite], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
        for item in batch:
            if item.loop is not None:
                by_loop[item.loop].append(item.done)  # type: ignore[arg-type]
            elif error is None:
                item.done.set_result(None)
            else:
                item.done.set_exception(error)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, error)
            except RuntimeError:
                pass  # that loop has closed: nobody is waiting any more


class _WriteFailed(ServiceUnavailable):
    code = "record_failed"


def _single_row_error() -> Exception:
    """What the waiter of a row that could not be written hears (called inside ``except``)."""
    error = sys.exc_info()[1]
    if isinstance(error, DataError):
        # The row's own data does not fit (a value PostgreSQL cannot store): the caller's input.
        logger.warning("decision_writer.row_refused error=%s", error)
        return InvalidInput(f"a value in the request cannot be stored: {str(error).splitlines()[0]}")
    logger.exception("decision_writer.write_failed")
    return _WriteFailed("the decision could not be recorded")


_writer: DecisionWriter | None = None
_writer_lock = threading.Lock()


def decision_writer() -> DecisionWriter:
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                _writer = DecisionWriter(max_batch=settings.DECISION_WRITER_MAX_BATCH)
    return _writer
