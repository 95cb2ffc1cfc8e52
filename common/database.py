"""Answering quickly while the database is down.

Two pieces, both per process:

* ``breaker``: after a failure to *reach* the database (no pooled connection within the pool's
  timeout, a refused or dropped connection), calls through ``runtime.database.run_in_db_thread`` fail at once
  with ``DatabaseUnavailable`` for ``DATABASE_RETRY_SECONDS``; then one call at a time probes
  again, and the first success closes the breaker. Without it every gateway request of an outage
  held one of the few worker threads for a whole pool timeout, and requests queued behind them
  answered seconds later. Query-level errors (a deadlock, a cancelled statement) do not trip it.
  A database that *hangs* (frozen, partitioned: connections open, nothing answers) trips it too:
  a request-path call past its deadline (``DATABASE_REQUEST_TIMEOUT``) answers 503; the decision
  writer's then calls ``breaker.trip()``, and ``run_in_db_thread``'s ``suspect_a_hang()``, which
  trips it once a fresh probe connection gets no answer either (a busy process is not a hung
  database), so the requests that follow fail at once instead of each waiting out its own deadline.
* ``DatabaseUnavailableMiddleware``: a Django view (or its template) that hits an unreachable
  database answers the JSON 503 too, instead of Django's 500 page.
* ``watchdog`` (PostgreSQL, installed with the middleware: the web process only): a query on a
  Django connection (views, DRF, pages, ``run_in_db_thread`` threads) that runs past a fraction of
  ``DATABASE_REQUEST_TIMEOUT`` while the database does not answer (the breaker is open, or a
  fresh probe connection gets no answer either) has its socket shut down: the blocked thread
  gets a connection error, so its request answers the JSON 503 instead of waiting out the
  freeze. A slow query on a database that answers is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache, partial
from typing import Any, TypeVar

import psycopg
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from common.errors import (
    DATABASE_UNAVAILABLE_MESSAGE,
    RETRY_AFTER_SECONDS,
    DatabaseUnavailable,
    error_body,
    is_database_unavailable,
    retry_after_headers,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long the breaker stays open after a failure before one call probes again.
DATABASE_RETRY_SECONDS = float(RETRY_AFTER_SECONDS)

# SQLSTATE classes that mean the server or the connection is gone, not that a query failed:
# 08 connection exception; 57P01..57P05 admin/crash shutdown, starting up, database dropped.
_UNREACHABLE_SQLSTATES = ("08", "57P")


def is_connection_failure(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the database could not be reached at all."""
    from psycopg_pool import PoolClosed, PoolTimeout

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (PoolTimeout, PoolClosed)):
            return True
        if isinstance(seen, (psycopg.OperationalError, psycopg.InterfaceError)):
            # Client-side failures (refused, reset, closed) carry no SQLSTATE.
            return seen.sqlstate is None or seen.sqlstate.startswith(_UNREACHABLE_SQLSTATES)
        seen = seen.__cause__ or seen.__context__
    return False


class DatabaseBreaker:
    """Closed: calls go through. Open: they fail at once. Half-open: one call probes."""

    def __init__(self, retry_seconds: float) -> None:
        self._retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._open_until = 0.0  # monotonic; 0.0 while closed
        self._probing = False

    def is_open(self) -> bool:
        """Cheap check for the event loop: True while calls would be refused outright."""
        return self._open_until != 0.0 and (time.monotonic() < self._open_until or self._probing)

    def before_call(self) -> bool:
        """Raise ``DatabaseUnavailable`` if the call may not go through; True if it is the probe."""
        if self._open_until == 0.0:
            return False
        with self._lock:
            if self._open_until == 0.0:
                return False
            if time.monotonic() < self._open_until or self._probing:
                raise DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE)
            self._probing = True
            return True

    def trip(self, reason: str) -> None:
        """Open the breaker without an exception: a call waited past its deadline (the database
        hangs). Following calls fail at once for the retry period, then one probes."""
        with self._lock:
            if self._open_until == 0.0:
                logger.warning("database.unresponsive reason=%s", reason)
            self._open_until = time.monotonic() + self._retry_seconds
            self._probing = False

    def succeeded(self) -> None:
        """A database call (not through ``before_call``) went through: close the breaker if its
        retry period is over. Free while closed."""
        if self._open_until != 0.0 and time.monotonic() >= self._open_until:
            with self._lock:
                if self._open_until != 0.0 and time.monotonic() >= self._open_until:
                    logger.warning("database.reachable_again")
                    self._open_until = 0.0

    def record(self, exc: BaseException | None, *, probe: bool) -> None:
        """After a call: a connection failure opens the breaker; a success (or a query-level error,
        which the database had to answer) closes it."""
        if exc is not None and is_connection_failure(exc):
            with self._lock:
                if self._open_until == 0.0:
                    logger.warning(
                        "database.unreachable error=%s", str(exc).splitlines()[0] if str(exc) else exc
                    )
                self._open_until = time.monotonic() + self._retry_seconds
                self._probing = False
            return
        if probe:
            with self._lock:
                if self._open_until != 0.0:
                    logger.warning("database.reachable_again")
                self._open_until = 0.0
                self._probing = False


breaker = DatabaseBreaker(DATABASE_RETRY_SECONDS)


class QueryWatchdog:
    """Cuts off queries stuck on a database that does not answer (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, tuple[float, int]] = {}  # token -> (started, socket fd)
        self._thread: threading.Thread | None = None
        self._probe_lock = threading.Lock()
        self._probing = False
        self._last_probe = 0.0
        # When a probe last got its answer (or its refusal): the database answered then, so calls
        # that began before it are slow, not hung; it says nothing of calls that began after.
        self._last_answered = float("-inf")

    def install(self) -> None:
        """Wrap every Django PostgreSQL connection of this process (idempotent)."""
        from django.conf import settings
        from django.db.backends.signals import connection_created

        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            return
        connection_created.connect(self._wrap_connection, dispatch_uid="common.database.watchdog")

    def _wrap_connection(self, sender: object, connection: Any, **kwargs: object) -> None:
        if self._execute not in connection.execute_wrappers:
            connection.execute_wrappers.append(self._execute)

    def _execute(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        try:
            fd = context["connection"].connection.pgconn.socket
        except Exception:  # noqa: BLE001 - no socket to watch (closed): the query fails on its own
            return execute(sql, params, many, context)
        token = id(context) ^ threading.get_ident()
        with self._lock:
            self._running[token] = (time.monotonic(), fd)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="db-watchdog", daemon=True)
                self._thread.start()
        try:
            return execute(sql, params, many, context)
        finally:
            with self._lock:  # never while the watchdog shuts this socket down
                self._running.pop(token, None)

    def _watch(self) -> None:
        from django.conf import settings

        while True:
            timeout = float(settings.DATABASE_REQUEST_TIMEOUT)
            time.sleep(min(0.1, timeout / 4))
            now = time.monotonic()
            with self._lock:
                overdue = {
                    token: started
                    for token, (started, _) in self._running.items()
                    if now - started > timeout * 0.4
                }
            if not overdue:
                continue
            if not breaker.is_open() and not self._database_hangs(
                timeout * 0.4, calls_began=max(overdue.values())
            ):
                continue
            with self._lock:
                for token in overdue:
                    entry = self._running.pop(token, None)
                    if entry is not None:
                        _shut_down(entry[1])
            logger.warning("database.queries_cut_off count=%d", len(overdue))

    def probe_would_tell(self, calls_began: float) -> bool:
        """Whether a probe now could tell anything about calls that began at ``calls_began``: none is
        running, and the last answer came before they began (it says nothing of them) or over a
        second ago (at most one probe a second while the database answers but is slow)."""
        return not self._probing and (
            self._last_answered < calls_began or time.monotonic() - self._last_probe >= 1.0
        )

    def _database_hangs(self, wait: float, *, calls_began: float) -> bool:
        """Whether calls that began at ``calls_began`` (the newest of them) and are still waiting
        wait on a hung database: a fresh connection's ``SELECT 1`` goes unanswered for ``wait``
        seconds. A probe still running from before counts as unanswered. A probe answered after
        they began means the database answered them meanwhile: slow, not hung (asked again at most
        once a second). A probe answered before they began is no evidence: PostgreSQL frozen just
        after a probe had answered left such calls waiting for the next second's probe (CI: pages
        answered 503 after 1.1 s)."""
        with self._probe_lock:
            if self._probing:
                return True
            if not self.probe_would_tell(calls_began):
                return False
            self._probing = True
            self._last_probe = time.monotonic()
        answered = threading.Event()

        def probe() -> None:
            began = time.monotonic()
            try:
                from django.db import connections

                parameters = {
                    k: v
                    for k, v in connections["default"].get_connection_params().items()
                    if k not in ("cursor_factory", "context", "prepare_threshold")
                }
                with psycopg.connect(**parameters, autocommit=True) as conn:
                    conn.execute("SELECT 1")
            except Exception:  # noqa: BLE001 - an unreachable database: its own failure path
                pass  # refused: not a hang (the connection failure paths take it)
            finally:
                if time.monotonic() - began <= wait:  # not a connect that timed out on a hang
                    self._last_answered = time.monotonic()
                answered.set()
                self._probing = False

        threading.Thread(target=probe, name="db-watchdog-probe", daemon=True).start()
        if answered.wait(wait):
            return False
        breaker.trip("a probe connection got no answer")
        return True


def suspect_a_hang(call_began: float) -> None:
    """A request-path call ran past its deadline: the database hangs, or this process was too busy
    to run the call in time (5,000 long-polls on two shared cores, benchmarks/web_memory.py, where
    tripping at once answered every request of the process 503 for a database that answered). So
    the breaker opens only if a fresh connection's ``SELECT 1`` goes unanswered within the
    deadline too; the probe runs on a thread of its own (see ``_database_hangs`` for when one
    runs). ``call_began`` is when a worker thread took the call. The late call
    answers 503 either way. In a real hang the watchdog has usually tripped it already: its
    queries are overdue at 0.4 of the deadline."""
    if not watchdog.probe_would_tell(call_began):
        return  # the probe in flight, or one answered while the call waited, decides
    timeout = float(settings.DATABASE_REQUEST_TIMEOUT)
    threading.Thread(
        target=watchdog._database_hangs,
        args=(timeout,),
        kwargs={"calls_began": call_began},
        name="db-hang-probe",
        daemon=True,
    ).start()


def _shut_down(fd: int) -> None:
    """Shut a connection's socket down (not close it: the fd stays its owner's), waking the thread
    blocked on it with end-of-file."""
    try:
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()


watchdog = QueryWatchdog()


def database_unavailable_response() -> JsonResponse:
    response = JsonResponse(error_body(DatabaseUnavailable.code, DATABASE_UNAVAILABLE_MESSAGE), status=503)
    for name, value in retry_after_headers(503).items():
        response[name] = value
    return response


class DatabaseUnavailableMiddleware:
    """A view that cannot reach the database answers the JSON 503 with Retry-After (any path)."""

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    ) -> None:
        self.get_response = get_response
        watchdog.install()
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        if not is_database_unavailable(exception):
            return None
        logger.warning("database.unavailable path=%s error=%r", request.path, exception)
        return database_unavailable_response()


# --- Blocking database work from async code -------------------------------------------------


def _close_connections() -> None:
    for conn in connections.all(initialized_only=True):
        conn.close()


def _db_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # Checked again on the thread: calls queued for a worker while the breaker opened fail at once.
    probe = breaker.before_call()
    close_old_connections()
    try:
        result = function(*args, **kwargs)
    except BaseException as exc:
        breaker.record(exc, probe=probe)
        raise
    else:
        breaker.record(None, probe=probe)
        return result
    finally:
        # Hand the connection back (to the pool, on PostgreSQL): worker threads are shared
        # and must not each pin one.
        _close_connections()


async def run_in_db_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking database code on a worker thread (never on the event loop).

    While the database is unreachable this raises ``DatabaseUnavailable`` at once (common/database.py).
    On PostgreSQL a call that has not returned within ``DATABASE_REQUEST_TIMEOUT`` of a worker
    thread taking it (the database hangs) raises it too and opens the breaker; time spent queued
    for a thread does not count. Its thread cannot be interrupted and finishes
    on its own once the database answers or the connection's TCP timeouts drop it.
    """
    if breaker.is_open():
        raise DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE)
    if not _request_deadline_applies():
        return await sync_to_async(partial(_db_call, function, *args, **kwargs), thread_sensitive=False)()
    # The deadline runs from when a worker thread takes the call, not from when it was queued:
    # a burst (5,000 long-polls arriving at once, benchmarks/web_memory.py) queues calls for the
    # few worker threads for longer than the deadline while every call is quick, and timing the
    # queue opened the breaker, answering every request of the process 503 for a database that
    # answered. A call still queued once the breaker is open fails then (its turn would fail
    # anyway), without tripping it again; in a hang the watchdog frees the threads, so the
    # queue drains.
    started: list[float] = []

    def timed() -> T:
        started.append(time.monotonic())  # asyncio's loop.time() is time.monotonic()
        return _db_call(function, *args, **kwargs)

    loop = asyncio.get_running_loop()
    timeout = settings.DATABASE_REQUEST_TIMEOUT
    queued_out = False
    deadline = asyncio.timeout(None)
    check: asyncio.TimerHandle

    def look() -> None:
        nonlocal check, queued_out
        if started:
            deadline.reschedule(started[0] + timeout)
        elif breaker.is_open():
            queued_out = True
            deadline.reschedule(loop.time())
        else:
            check = loop.call_later(timeout, look)

    check = loop.call_later(timeout, look)
    try:
        async with deadline:
            return await sync_to_async(timed, thread_sensitive=False)()
    except TimeoutError:
        if not deadline.expired():
            raise  # the function's own TimeoutError
        if not queued_out:
            suspect_a_hang(started[0] if started else loop.time())
        raise DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE) from None
    finally:
        check.cancel()


@lru_cache(maxsize=1)
def _request_deadline_applies() -> bool:
    # PostgreSQL only: SQLite is a local file (it cannot hang like a server), and its writers
    # queue on busy_timeout by design.
    return bool(settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql")
