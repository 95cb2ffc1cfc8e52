"""Sources are loaded in a worker process (policies/source_worker.py): its answers and its
refusals arrive whole, and a full queue is a 503, not a pile-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.test import override_settings

from common.errors import ServiceUnavailable
from policies import source_worker
from policies.engine import RuleSetError
from policies.engine.errors import RuleSetTooLarge
from policies.engine.source import Limits


def test_load_source__in_the_worker__the_document_and_located_problems_come_back():
    # Given the worker process (one, the default), when a document and a broken one are loaded,
    document = source_worker.load_source(
        "rules: [{name: r, action: deny}]", content_type="yaml", limits=Limits()
    )
    with pytest.raises(RuleSetError) as caught:
        source_worker.load_source("rules: []\nx: !!int 'abc'\n", content_type="yaml", limits=Limits())
    # then the document, and the problem with its path and line, arrive as the engine made them.
    assert document["rules"][0]["id"] == "r"
    assert source_worker._pool is not None
    assert [(p.path, p.line) for p in caught.value.problems] == [("x", 2)]


def test_load_source__over_a_limit__the_limit_survives_the_trip():
    with pytest.raises(RuleSetTooLarge) as caught:
        source_worker.load_source("rules: []\n", content_type="yaml", limits=Limits(max_bytes=5))
    assert (caught.value.limit, caught.value.maximum, caught.value.actual) == ("max_bytes", 5, 10)


@override_settings(RULE_SET_PARSE_WORKERS=1, RULE_SET_PARSE_QUEUE=0)
def test_load_source__no_free_slot__503_parser_busy(monkeypatch):
    # Given every slot taken (a queue of 0 and the one worker busy),
    monkeypatch.setattr(source_worker, "_pool", None)
    _, slots = source_worker._executor()
    assert slots.acquire(blocking=False)
    try:
        # when another document arrives, then it is refused at once as busy.
        with pytest.raises(source_worker.ParserBusy):
            source_worker.load_source("rules: []", content_type="yaml", limits=Limits())
    finally:
        slots.release()
        source_worker._discard(source_worker._pool)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped by its parent) is as good as gone; so is one reaped between
    # the signal and the read (reading its stat then fails with ESRCH or ENOENT).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


SERVER_KILLED_OUTRIGHT = """
import os, signal, django
django.setup()
from policies import source_worker
from policies.engine.source import Limits
source_worker.load_source("rules: []", content_type="yaml", limits=Limits())
print(*source_worker._pool._processes, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker__server_killed_outright__the_worker_ends_too():
    # Given a process with a parse worker, killed without a chance to stop its pool
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.test"),
    }
    env["VETO_RULE_SET_PARSE_WORKERS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", SERVER_KILLED_OUTRIGHT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    worker_pids = [int(pid) for pid in done.stdout.split()]
    assert len(worker_pids) == 1
    # Then its worker does not outlive it
    assert _gone_within(worker_pids[0], 10), f"parse worker {worker_pids[0]} outlived its server"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@override_settings(RULE_SET_PARSE_WORKERS=1, RULE_SET_PARSE_TIMEOUT_SECONDS=0.5)
def test_run__worker_stuck_past_the_timeout__503_and_the_worker_is_ended(monkeypatch):
    # Given a fresh pool whose one worker is up
    monkeypatch.setattr(source_worker, "_pool", None)
    source_worker.load_source("rules: []", content_type="yaml", limits=Limits())
    pool = source_worker._pool
    [stuck_pid] = list(pool._processes)
    # When a job runs past the timeout
    with pytest.raises(ServiceUnavailable):
        source_worker._run(time.sleep, 30)
    # Then the caller got a 503 at once, the pool is replaced and the stuck worker ended
    assert source_worker._pool is not pool
    assert _gone_within(stuck_pid, 5), f"stuck parse worker {stuck_pid} still running"
