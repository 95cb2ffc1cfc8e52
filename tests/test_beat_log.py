"""`make run`'s log stays readable: beat does not print "Scheduler: Sending due task" every few
seconds at INFO (veto_cloud/celery.py, QuietDueTasks), while what beat and the worker say about
real trouble still shows."""

from __future__ import annotations

import logging
import re
import time

import pytest

from conftest import start_celery_worker_and_beat, stop_processes, subprocess_environment
from veto_cloud.celery import DUE_TASK_LINE, QuietDueTasks

SWEEP = "approvals.tasks.expire_due_approvals"


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("celery.beat", level, __file__, 1, message, ("sweep", SWEEP), None)


@pytest.fixture
def beat_logger():
    logger = logging.getLogger("celery.beat")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_quiet_due_tasks__beat_at_info__drops_only_the_due_task_line(beat_logger):
    # Given beat's logger at INFO, as `make run` starts it
    beat_logger.setLevel(logging.INFO)
    quiet = QuietDueTasks()
    # When beat logs a due task, its start, a warning and an error
    # Then only the due-task line is dropped
    assert quiet.filter(_record(logging.INFO, DUE_TASK_LINE + " %s (%s)")) is False
    assert quiet.filter(_record(logging.INFO, "beat: Starting...")) is True
    assert quiet.filter(_record(logging.WARNING, DUE_TASK_LINE + " %s (%s) late")) is True
    assert quiet.filter(_record(logging.ERROR, "Message Error: %s\n%s")) is True


def test_quiet_due_tasks__beat_at_debug__keeps_the_due_task_line(beat_logger):
    # Given beat run with --loglevel DEBUG, by someone who wants every line
    beat_logger.setLevel(logging.DEBUG)
    # When beat logs a due task, Then it is kept
    assert QuietDueTasks().filter(_record(logging.INFO, DUE_TASK_LINE + " %s (%s)")) is True


@pytest.mark.django_db(transaction=True)
def test_beat_at_info__sweeps_every_second__no_due_task_lines_in_its_log(tmp_path):
    # Given a real worker and a real beat at --loglevel INFO, as `make run` starts them, with the
    # approvals sweep every second
    env = subprocess_environment(VETO_APPROVAL_SWEEP_SECONDS="1", VETO_VAR_DIR=str(tmp_path))
    env.pop("REDIS_URL", None)
    processes = start_celery_worker_and_beat(tmp_path, env)
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    try:
        # When the worker has run the sweep beat sent, three times
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(re.findall(rf"Task {re.escape(SWEEP)}\[[^\]]+\] succeeded", worker_log.read_text())) >= 3:
                break
            time.sleep(0.25)
    finally:
        stop_processes(*processes)
    worker, beat = worker_log.read_text(), beat_log.read_text()
    # Then beat sent them without a line each, still logging at INFO (its start shows), and the
    # worker still says what it ran
    assert len(re.findall(rf"Task {re.escape(SWEEP)}\[[^\]]+\] succeeded", worker)) >= 3, worker + beat
    assert "beat: Starting..." in beat, beat
    assert DUE_TASK_LINE not in beat, beat
