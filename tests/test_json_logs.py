"""VETO_LOG_FORMAT through the settings (a process's JSON lines, a wrong value refused at start),
and a task published during a request run by a real (in-process) Celery worker under its id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.core.exceptions import ImproperlyConfigured

from common.logs import json_formatter
from common.request_id import RequestIdFilter, current_request_id, reset_request_id, set_request_id
from veto_cloud.env import log_format


def test_settings__json_format__a_process_writes_json_lines_with_the_request_id():
    # Given a process started with VETO_LOG_FORMAT=json (Django's settings configure its logging)
    program = (
        "import django, logging; django.setup()\n"
        "from common.request_id import set_request_id\n"
        "logging.getLogger('veto.startup').warning('process.started')\n"
        "set_request_id('from-settings')\n"
        "logging.getLogger('policies.services').warning('policy.published version=%d', 3)\n"
        "import warnings; warnings.warn('No directory at: /static/')\n"
    )
    env = {**os.environ, "VETO_LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "veto_cloud.settings.test"}
    # When it logs outside and then inside a request, and Python warns
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    # Then standard error is one JSON object per line, the second with the request's id, the
    # warning one of them
    assert done.returncode == 0, done.stderr
    started, published, warned = (json.loads(line) for line in done.stderr.splitlines())
    assert (started["logger"], started["message"], started["level"]) == (
        "veto.startup",
        "process.started",
        "WARNING",
    )
    assert "request_id" not in started
    assert (published["message"], published["request_id"]) == ("policy.published version=3", "from-settings")
    assert warned["logger"] == "py.warnings" and "No directory at: /static/" in warned["message"]


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, "text"), ("", "text"), ("JSON", "json"), (" text ", "text")]
)
def test_log_format__accepted_values(monkeypatch, raw, expected):
    # Given VETO_LOG_FORMAT unset, empty, or json/text in any case
    if raw is None:
        monkeypatch.delenv("VETO_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("VETO_LOG_FORMAT", raw)
    # When the settings read it, Then it is the format named (text by default)
    assert log_format() == expected


def test_log_format__unknown_value__fails_at_start_naming_the_variable(monkeypatch):
    # Given a format that does not exist
    monkeypatch.setenv("VETO_LOG_FORMAT", "xml")
    # When the settings read it, Then the process refuses to start, saying which variable is wrong
    with pytest.raises(ImproperlyConfigured, match="VETO_LOG_FORMAT='xml'"):
        log_format()


@pytest.fixture
def task_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("veto.test.jsonlogs.task")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


@pytest.fixture
def memory_celery() -> Iterator[Celery]:
    """A Celery app on an in-memory broker with a worker thread; the project's signal receivers
    (veto_cloud/celery.py, connected on import) see its publishes and tasks as any app's."""
    import veto_cloud.celery  # noqa: F401 - connects the receivers

    app = Celery("jsonlogs-test", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.task_always_eager = False

    @app.task(name="jsonlogs_test.report")
    def report() -> str | None:
        logging.getLogger("veto.test.jsonlogs.task").info("report.ran")
        return current_request_id()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield app


def test_task_published_in_a_request__real_publish_and_worker__runs_and_logs_under_its_id(
    memory_celery, task_log
):
    # Given a worker consuming an in-memory broker, with a JSON handler on the task's logger
    token = set_request_id("req-celery-1")
    try:
        # When a request publishes a task, and then a task is published outside any request
        inside = memory_celery.tasks["jsonlogs_test.report"].apply_async()
    finally:
        reset_request_id(token)
    outside = memory_celery.tasks["jsonlogs_test.report"].apply_async()
    results = inside.get(timeout=10), outside.get(timeout=10)
    # Then the worker ran the first under the request's id, and the second under none
    assert results == ("req-celery-1", None)
    # And the first's log line carries it, the second's none
    first, second = (json.loads(line) for line in task_log.getvalue().splitlines())
    assert first["request_id"] == "req-celery-1"
    assert "request_id" not in second
