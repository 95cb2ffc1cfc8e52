"""The request id (common/request_id.py) and the JSON log lines (common/logs.py): what an incoming
``X-Request-ID`` becomes, the fields of a line, the text format left as it was, and the hand-over to
Celery tasks (the signal handlers; tests/test_json_logs.py publishes to a real in-process worker)."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from common import request_id
from common.logs import json_formatter, logging_config
from common.request_id import (
    RequestIdFilter,
    current_request_id,
    request_id_for,
    reset_request_id,
    set_request_id,
    without_request_id,
)

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def request_id_of(request: pytest.FixtureRequest) -> Iterator[None]:
    """Runs the test under the request id its parameter names (or none), reset afterwards."""
    token = set_request_id(getattr(request, "param", None))
    yield
    reset_request_id(token)


def _json_lines(logger_name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, stream, handler


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger, stream, handler = _json_lines("veto.test.jsonlogs")
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "incoming",
    [b"abc", b"0f8fad5b-d9cb-469f-a165-70867728950e", b"req_1.2:3", b"A" * 128],
)
def test_request_id_for__well_formed_incoming__kept(incoming):
    # Given an X-Request-ID of 1-128 safe characters, When it is read, Then it is the request's id
    assert request_id_for(incoming) == incoming.decode()


@pytest.mark.parametrize(
    "incoming",
    [None, b"", b"A" * 129, b"two words", b"line\nbreak", b'quote"', b"caf\xc3\xa9", b"a/b", b"{}"],
)
def test_request_id_for__missing_or_malformed__a_new_uuid4_hex(incoming):
    # Given no X-Request-ID, or one too long or with unsafe characters
    # When it is read
    made = request_id_for(incoming)
    # Then a new uuid4 in hex stands in for it, a different one each time
    assert GENERATED.fullmatch(made)
    assert uuid.UUID(hex=made).version == 4 and uuid.UUID(hex=made).variant == uuid.RFC_4122
    assert request_id_for(incoming) != made


@pytest.mark.parametrize("request_id_of", ["req-42"], indirect=True)
def test_json_line__inside_a_request__every_field(request_id_of, json_log):
    # Given a JSON handler, inside a request whose id is req-42
    logger, stream = json_log
    # When a record with an exception and an extra field is logged
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("approval.expire_failed approval=%s", "a1", extra={"team_id": 7})
    # Then the one line is a JSON object with every field
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR"
    assert record["logger"] == "veto.test.jsonlogs"
    assert record["message"] == "approval.expire_failed approval=a1"
    assert record["request_id"] == "req-42"
    assert record["team_id"] == 7
    assert "ValueError: bad value" in record["exception"]
    assert "Traceback" in record["exception"]
    moment = datetime.fromisoformat(record["time"])
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


@pytest.mark.parametrize("request_id_of", [None], indirect=True)
def test_json_line__outside_a_request__no_request_id_key(request_id_of, json_log):
    # Given a JSON handler and no request being handled
    logger, stream = json_log
    # When a record is logged, Then its line has no request_id at all
    logger.info("beat.tick")
    assert "request_id" not in json.loads(stream.getvalue())


def test_logging_config__text__the_format_it_always_had():
    # Given the default format, When its configuration is built
    config = logging_config(log_format="text", level="INFO")
    # Then it is the one the settings always had: same line format, same handler, same levels
    assert config["formatters"] == {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}}
    assert config["handlers"] == {"console": {"class": "logging.StreamHandler", "formatter": "plain"}}
    assert config["root"] == {"handlers": ["console"], "level": "INFO"}
    assert config["loggers"] == {"django.db.backends": {"level": "INFO"}}


def test_without_request_id__inside_a_request__a_context_with_none():
    # Given a request being handled
    token = set_request_id("req-7")
    try:
        # When a context is made for work that outlives it
        detached = without_request_id()
        # Then that work sees no request id, while the request keeps its own
        assert detached.run(current_request_id) is None
        assert current_request_id() == "req-7"
    finally:
        reset_request_id(token)


# --- Celery ------------------------------------------------------------------------------------


def test_put_in_task_headers__inside_a_request__the_id_in_the_headers():
    # Given a request being handled, and one that is not
    headers: dict[str, object] = {"id": "t1"}
    outside: dict[str, object] = {"id": "t2"}
    token = set_request_id("req-9")
    try:
        # When a task is published during it (before_task_publish)
        request_id.put_in_task_headers(headers=headers, body=(), exchange="", routing_key="celery")
    finally:
        reset_request_id(token)
    request_id.put_in_task_headers(headers=outside)
    # Then its headers carry the id; the other's carry none
    assert headers[request_id.TASK_HEADER] == "req-9"
    assert request_id.TASK_HEADER not in outside


def test_take_from_task__worker_runs_a_task__its_id_then_none_after():
    # Given a task published with a request's id, run by a worker (not eagerly)
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False, **{request_id.TASK_HEADER: "req-10"}))
    # When the worker starts it (task_prerun), Then its log lines carry the id
    request_id.take_from_task(task_id="t10", task=task)
    assert current_request_id() == "req-10"
    # When it ends (task_postrun), Then the id is gone
    request_id.forget_after_task(task_id="t10", task=task)
    assert current_request_id() is None


def test_take_from_task__task_without_an_id__none_even_after_another_task():
    # Given a periodic task (published by beat, outside any request)
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    # When the worker starts it, Then it has no request id
    request_id.take_from_task(task_id="t11", task=task)
    assert current_request_id() is None
    request_id.forget_after_task(task_id="t11", task=task)


def test_take_from_task__eager_task__keeps_the_callers_id():
    # Given a request that runs a task eagerly (the tests' settings; no message is published)
    token = set_request_id("req-12")
    try:
        task = SimpleNamespace(request=SimpleNamespace(is_eager=True))
        # When the task starts and ends
        request_id.take_from_task(task_id="t12", task=task)
        during = current_request_id()
        request_id.forget_after_task(task_id="t12", task=task)
        # Then it ran under the request's id, which the request still has
        assert during == "req-12"
        assert current_request_id() == "req-12"
    finally:
        reset_request_id(token)
