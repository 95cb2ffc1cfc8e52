"""Webhooks end to end with a real Celery worker and beat, a real receiver on 127.0.0.1 that fails
on purpose, and a broker that is down when the decision is made."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from conftest import free_port, start_celery_worker_and_beat, stop_processes, subprocess_environment
from runtime.writer import decision_writer
from tests.factories import TeamFactory, decision_row, record_decision
from tests.faults._services import OwnRedis
from veto_cloud.celery import app as celery_app
from webhooks import sink
from webhooks.models import WebhookAttempt, WebhookDelivery
from webhooks.tests.helpers import endpoint_for, sink_paused
from webhooks.tests.receiver import receiver

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_ENV = {
    "VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
    "VETO_WEBHOOK_RETRY_SCHEDULE": "1,1,1",
    "VETO_WEBHOOK_SWEEP_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


def forget_broker_connections() -> None:
    """The app's connection and producer pools, made again from the (changed) configuration."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def write_through_the_writer(row: dict[str, object]) -> None:
    """The request path's writer (thread or asyncio), which announces on the event path."""

    async def write() -> None:
        await decision_writer().write(row)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # the thread writer announces on the loop, after the answer

    asyncio.run(write())


def wait_for(check, *, seconds: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    text = "\n".join(p.read_text(errors="replace")[-6000:] for p in logs if p.exists())
    raise AssertionError(f"not within {seconds} s; logs:\n{text}")


def test_webhooks__receiver_fails_twice__real_worker_retries_with_one_webhook_id_and_one_success(tmp_path, settings):
    # Given a receiver that answers 503, 503, then 200, an endpoint for denials, and a real worker
    # and beat (embedded broker) on the test database; this process's sink is paused, so the beat
    # sweep is what finds the decision
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    team = TeamFactory()
    env = subprocess_environment(VETO_VAR_DIR=str(tmp_path), **WORKER_ENV)
    env.pop("REDIS_URL", None)
    with receiver([(503, {}), (503, {}), (200, {})]) as hooks, sink_paused():
        endpoint = endpoint_for(team, url=hooks.url, events=("deny",))
        record_decision(team, decision="deny", tool_name="transfer", severity="high")
        processes = start_celery_worker_and_beat(tmp_path, env)
        try:
            # When the worker runs until the delivery settles
            wait_for(
                lambda: WebhookDelivery.objects.filter(endpoint=endpoint, status="delivered").exists(),
                seconds=60,
                logs=[tmp_path / "worker.log", tmp_path / "beat.log"],
            )
            time.sleep(2.5)  # a retry that should not happen would come within this
        finally:
            stop_processes(*processes)
    # Then three requests with one webhook-id, exactly one success recorded, a verifiable signature
    (item,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    attempts = list(WebhookAttempt.objects.filter(delivery=item).order_by("number"))
    assert [a.status_code for a in attempts] == [503, 503, 200]
    assert len(hooks.requests) == 3
    assert {r.headers["webhook-id"] for r in hooks.requests} == {item.webhook_id}
    secret = endpoint.secrets.get().secret
    last = hooks.requests[-1]
    assert Webhook(secret).verify(last.body, last.headers)["data"]["decision"]["tool_name"] == "transfer"
    # And the retries waited about the schedule's second (not at once, not minutes)
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(0.8 <= gap <= 10 for gap in gaps), gaps


def test_webhooks__broker_down_when_decided__delivered_once_the_broker_returns(tmp_path, settings, caplog):
    # Given an endpoint, and this process's Celery pointed at a Redis broker that is down
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    caplog.set_level(logging.WARNING, logger="webhooks.sink")
    team = TeamFactory()
    broker = OwnRedis(port=free_port(), root=Path(tempfile.mkdtemp(prefix="veto-wh-redis-")))
    saved = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)
    celery_app.conf.broker_url = broker.url(0)
    celery_app.conf.task_always_eager = False
    forget_broker_connections()
    processes = []
    try:
        with receiver([(200, {})]) as hooks:
            endpoint = endpoint_for(team, url=hooks.url, events=("deny",))
            sink.sender().loaded_at = 0.0  # the endpoint is new: read the snapshot again
            # When a deny is written by the real writer while the broker is down
            write_through_the_writer(decision_row(team.id, decision="deny", tool_name="wire", severity="critical"))
            wait_for(lambda: "webhook.sink_enqueue_failed" in caplog.text, seconds=15, logs=[])
            # Then nothing was lost but nothing was sent yet
            assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 0
            assert hooks.requests == []
            # When the broker comes back, with a worker and beat on it
            broker.start()
            env = subprocess_environment(VETO_VAR_DIR=str(tmp_path), REDIS_URL=broker.url(0), **WORKER_ENV)
            processes = start_celery_worker_and_beat(tmp_path, env)
            wait_for(
                lambda: WebhookDelivery.objects.filter(endpoint=endpoint, status="delivered").exists(),
                seconds=60,
                logs=[tmp_path / "worker.log", tmp_path / "beat.log"],
            )
            time.sleep(2.5)  # more sweeps: none may send it again
    finally:
        stop_processes(*processes)
        broker.stop()
        shutil.rmtree(broker.root, ignore_errors=True)
        celery_app.conf.broker_url, celery_app.conf.task_always_eager = saved
        forget_broker_connections()
    # Then the decision was delivered exactly once
    (item,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert item.message["decision"]["tool_name"] == "wire"
    assert len(hooks.requests) == 1
    assert WebhookAttempt.objects.filter(delivery=item).count() == 1
