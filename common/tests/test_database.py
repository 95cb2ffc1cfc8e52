"""Database outages: which errors mean "unreachable", the breaker's states, and the 503 every path answers."""

from __future__ import annotations

import asyncio
import json
import time

import psycopg
import pytest
from django.db import OperationalError
from django.test import RequestFactory
from psycopg_pool import PoolTimeout
from rest_framework.views import APIView

from common import database
from common.database import (
    DatabaseBreaker,
    DatabaseUnavailableMiddleware,
    is_connection_failure,
    run_in_db_thread,
)
from common.errors import DatabaseUnavailable, api_exception_handler, error_for_exception


def _wrapped(cause: BaseException) -> OperationalError:
    """As Django raises it: its OperationalError, caused by the driver's."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise OperationalError(str(inner)) from inner
    except OperationalError as outer:
        return outer


def test_is_connection_failure__pool_timeout_or_refused__true_but_query_errors__false():
    # Given the errors a request may meet
    pool_timeout = _wrapped(PoolTimeout("couldn't get a connection after 0.50 sec"))
    refused = _wrapped(psycopg.OperationalError("connection failed: Connection refused"))
    shutdown = _wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator command"))
    cancelled = _wrapped(psycopg.errors.QueryCanceled("canceling statement due to statement timeout"))
    deadlock = _wrapped(psycopg.errors.DeadlockDetected("deadlock detected"))

    # Then only those that say the server could not be reached count as connection failures
    assert [is_connection_failure(e) for e in (pool_timeout, refused, shutdown)] == [True, True, True]
    assert [is_connection_failure(e) for e in (cancelled, deadlock, ValueError("x"))] == [False, False, False]


def test_breaker__after_a_connection_failure__refuses_then_lets_one_probe_and_closes_on_success():
    # Given a closed breaker
    breaker = DatabaseBreaker(retry_seconds=0.2)
    assert breaker.before_call() is False

    # When a call fails to reach the database
    breaker.record(_wrapped(PoolTimeout("timeout")), probe=False)

    # Then calls are refused at once while it is open
    assert breaker.is_open()
    with pytest.raises(DatabaseUnavailable):
        breaker.before_call()

    # And after the retry interval exactly one call probes while the others are still refused
    time.sleep(0.25)
    assert breaker.before_call() is True
    with pytest.raises(DatabaseUnavailable):
        breaker.before_call()

    # And the probe's success closes it
    breaker.record(None, probe=True)
    assert not breaker.is_open() and breaker.before_call() is False


def test_breaker__query_level_error__does_not_open_it():
    # Given a closed breaker
    breaker = DatabaseBreaker(retry_seconds=5)

    # When a call fails with an error the database itself answered (a deadlock)
    breaker.record(_wrapped(psycopg.errors.DeadlockDetected("deadlock detected")), probe=False)

    # Then it stays closed
    assert not breaker.is_open() and breaker.before_call() is False


def test_run_in_db_thread__database_unreachable__fails_fast_with_503_until_the_retry(monkeypatch):
    # Given the process's breaker, and a database call that cannot get a connection
    breaker = DatabaseBreaker(retry_seconds=60)
    monkeypatch.setattr(database, "breaker", breaker)
    calls = []

    def unreachable() -> None:
        calls.append(1)
        raise _wrapped(PoolTimeout("couldn't get a connection after 0.50 sec"))

    # When it is called, then called again
    with pytest.raises(OperationalError):
        asyncio.run(run_in_db_thread(unreachable))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        asyncio.run(run_in_db_thread(unreachable))

    # Then the second call failed at once without trying the database
    assert calls == [1]
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize(
    "exc",
    [
        _wrapped(PoolTimeout("couldn't get a connection after 0.50 sec")),
        OperationalError("database is locked"),
        psycopg.OperationalError("connection failed: Connection refused"),
        PoolTimeout("raw, from the decision writer's own connection"),
    ],
    ids=["django-pool-timeout", "sqlite-locked", "psycopg-refused", "raw-pool-timeout"],
)
def test_error_mapping__database_unavailable__503_database_unavailable_with_retry_after(exc):
    # When the API's exception handler (and the gateway's mapping) meet the error
    status, body = error_for_exception(exc)
    response = api_exception_handler(exc, {})

    # Then it is a 503 database_unavailable that says when to retry, and leaks no connection detail
    assert status == 503 and body["error"]["code"] == "database_unavailable"
    assert "127.0.0.1" not in body["error"]["message"]
    assert response is not None and response.status_code == 503 and response["Retry-After"] == "1"


def test_middleware__plain_django_view_hits_an_unreachable_database__json_503():
    # Given a plain Django view whose query cannot get a connection
    request = RequestFactory().get("/dashboard/")
    middleware = DatabaseUnavailableMiddleware(lambda r: None)  # type: ignore[arg-type,return-value]

    # When the view raises
    response = middleware.process_exception(request, _wrapped(PoolTimeout("timeout")))

    # Then the answer is the JSON 503 with Retry-After; any other error is left to Django
    assert response is not None and response.status_code == 503 and response["Retry-After"] == "1"
    assert json.loads(response.content)["error"]["code"] == "database_unavailable"
    assert middleware.process_exception(request, ValueError("a bug")) is None


def test_drf_view__database_unreachable__json_503_with_retry_after(rf):
    # Given a DRF view whose database work cannot get a connection
    class Unreachable(APIView):
        authentication_classes: list = []
        permission_classes: list = []

        def get(self, request):  # type: ignore[no-untyped-def]
            raise _wrapped(PoolTimeout("couldn't get a connection after 0.50 sec"))

    # When it is called
    response = Unreachable.as_view()(rf.get("/v1/tools"))

    # Then DRF's exception handler answered the JSON 503
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response.data["error"]["code"] == "database_unavailable"
