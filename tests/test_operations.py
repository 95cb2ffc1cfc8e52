"""Operations: real Celery worker and beat processes, readiness and liveness probes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from approvals.models import Approval
from conftest import (
    BASE_DIR,
    free_port,
    start_asgi_server,
    start_celery_worker_and_beat,
    stop_processes,
    subprocess_environment,
)
from tests.factories import ApprovalFactory

# The embedded broker always; Redis as well wherever REDIS_URL is configured (CI).
BROKERS = ["embedded"] + (["redis"] if os.environ.get("REDIS_URL") else [])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS)
def test_celery_worker_and_beat__expire_a_due_approval(broker, tmp_path):
    # Given a pending approval whose deadline has passed, and one still running
    due = ApprovalFactory(expires_at=timezone.now() - timedelta(seconds=1))
    running = ApprovalFactory(expires_at=timezone.now() + timedelta(hours=1))
    env = subprocess_environment(VETO_APPROVAL_SWEEP_SECONDS="1", VETO_VAR_DIR=str(tmp_path))
    if broker == "embedded":
        env.pop("REDIS_URL", None)
    # When a real worker and a real beat run, as `make run` starts them
    processes = start_celery_worker_and_beat(tmp_path, env)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            due.refresh_from_db()
            if due.status != Approval.Status.PENDING:
                break
            time.sleep(0.25)
    finally:
        stop_processes(*processes)
    # Then the beat sweep, executed by the worker, expired the due one only
    logs = "\n".join(p.read_text() for p in (tmp_path / "worker.log", tmp_path / "beat.log"))
    assert due.status == Approval.Status.EXPIRED, logs
    running.refresh_from_db()
    assert running.status == Approval.Status.PENDING


@pytest.mark.asgi_server
def test_healthz__answers_from_the_gateway(asgi_server):
    response = httpx.get(f"{asgi_server.url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
def test_readyz__database_broker_and_channel_layer_reachable(asgi_server):
    response = httpx.get(f"{asgi_server.url}/readyz", timeout=15)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "channel_layer": "ok"}


@pytest.mark.django_db(transaction=True)
def test_readyz__redis_unreachable__503_naming_what_is_down(tmp_path):
    # Given a server whose REDIS_URL points at a port nothing listens on
    process, server = start_asgi_server(
        tmp_path / "server.log", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        # When readiness is asked
        response = httpx.get(f"{server.url}/readyz", timeout=30)
    finally:
        stop_processes(process)
    # Then it is not ready, and says which dependencies failed (the database is fine)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("error")
    assert checks["channel_layer"].startswith("error")


def _wait_for(predicate, *, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text(errors='replace')[-6000:]}")


def _started_pids(log: Path, name: str) -> list[int]:
    return _started_pids_in(log.read_text(errors="replace"), name)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_make_run__worker_killed__restarted_with_back_off_while_web_keeps_serving(tmp_path):
    # Given `make run` (scripts/run.sh) on the embedded defaults, in a var dir of its own, with
    # DEBUG left to its default
    port = free_port()
    log = tmp_path / "run.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "VETO_DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        PORT=str(port),
        VETO_VAR_DIR=str(tmp_path / "var"),
        PYTHONUNBUFFERED="1",
    )
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        run = subprocess.Popen(
            ["bash", str(BASE_DIR / "scripts" / "run.sh")],
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(lambda: _answers(f"{base}/healthz"), timeout=120, what="the web process", log=log)
        _wait_for(
            lambda: _started_pids(log, "worker") and _started_pids(log, "beat"),
            timeout=10,
            what="worker and beat",
            log=log,
        )
        # Then it serves with DEBUG off: plain 404 pages, JSON for the API, static files collected
        assert "Debug pages: off" in log.read_text()
        page = httpx.get(f"{base}/no-such-page/", timeout=5)
        assert page.status_code == 404 and "URLconf" not in page.text
        assert httpx.get(f"{base}/v1/nope", timeout=5).json()["error"]["code"] == "not_found"
        assert httpx.get(f"{base}/static/css/app.css", timeout=5).status_code == 200

        # When the worker is killed outright
        (worker,) = _started_pids(log, "worker")
        os.kill(worker, signal.SIGKILL)
        # Then the supervisor says so and starts it again, while the web process keeps answering
        _wait_for(
            lambda: "worker exited with code -9 (SIGKILL); restarting in 1s" in log.read_text(),
            timeout=10,
            what="the worker's exit to be reported",
            log=log,
        )
        assert _answers(f"{base}/healthz")
        _wait_for(
            lambda: len(_started_pids(log, "worker")) == 2, timeout=15, what="the worker's restart", log=log
        )
        assert _started_pids(log, "worker")[1] != worker
        assert len(_started_pids(log, "web")) == len(_started_pids(log, "beat")) == 1
        assert _answers(f"{base}/healthz")

        # When Ctrl-C reaches it
        run.send_signal(signal.SIGINT)
        code = run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    # Then everything stopped, cleanly
    assert code == 0, log.read_text()
    for name in ("web", "worker", "beat"):
        for pid in _started_pids(log, name):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    assert not _answers(f"{base}/healthz")


def test_supervisor__process_keeps_dying__back_off_doubles_and_others_keep_running(tmp_path):
    # Given a Procfile with a process that dies at once and one that stays up
    procfile = tmp_path / "Procfile"
    procfile.write_text("crash: sh -c 'echo failing; exit 3'\nsteady: sleep 60\n")
    # When the supervisor runs it for a while, then is told to stop
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veto_cloud.supervise",
            "--procfile",
            str(procfile),
            "--initial-backoff",
            "0.2",
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(2.5)
    supervisor.send_signal(signal.SIGTERM)
    output, _ = supervisor.communicate(timeout=20)
    # Then each death is reported with a doubling delay, the crashing one's output is shown under its
    # name, the steady one was started once and stopped at the end
    assert supervisor.returncode == 0, output
    delays = re.findall(r"crash exited with code 3; restarting in ([\d.]+)s", output)
    assert delays[:3] == ["0.2", "0.4", "0.8"], output
    assert re.search(r"crash\s+\| failing", output)
    assert len(_started_pids_in(output, "steady")) == 1
    assert "steady stopped" in output


def _started_pids_in(text: str, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"started {name} \(pid (\d+)\)", text)]
