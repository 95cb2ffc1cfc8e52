"""Operations: real Celery worker and beat processes, readiness and liveness probes."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from approvals.models import Approval
from conftest import (
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
