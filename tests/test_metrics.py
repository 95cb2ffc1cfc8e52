"""``GET /metrics``: behind its token, Prometheus's text format, and what it counts: decisions and
their latency, the writer's batches, long-polls held, pending approvals and the webhook outbox
from the database, and counters of other processes (a Celery worker) through the multiprocess
directory."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta

import httpx
import pytest
from django.conf import settings as django_settings
from django.core.asgi import get_asgi_application
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals.models import Approval
from common import metrics
from conftest import BASE_DIR, subprocess_environment
from runtime.event_stream import EventHub
from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from runtime.waiters import approval_change_waiter
from tests.factories import ApprovalFactory, TeamFactory, api_key_for, publish_rules
from veto_cloud.metrics import exposition
from webhooks import delivery
from webhooks.models import WebhookDelivery
from webhooks.tests.helpers import sink_paused
from webhooks.tests.receiver import receiver
from webhooks.tests.test_delivery import due_delivery, run_until_settled

TOKEN = "metrics-test-token-0123456789"
RULES = (
    "rules:\n"
    "  - {name: no_rm, tool: rm, action: block}\n"
    "  - {name: ask_export, tool: export, action: require_approval}\n"
)


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and labels (the text format, parsed as Prometheus does)."""
    text = exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


# --- protection ---


@pytest.mark.django_db
def test_metrics__no_token_configured__json_404_saying_how_to_enable(client, settings):
    # Given no VETO_METRICS_TOKEN
    settings.METRICS_TOKEN = ""
    # When anyone asks, even with a bearer token
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    # Then a JSON 404 as the rest of the API answers, naming the setting, and no metric
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "VETO_METRICS_TOKEN" in response.json()["error"]["message"]
    assert b"veto_decisions" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
def test_metrics__missing_or_wrong_token__json_401(client, token, authorization):
    # Given a token configured, when asked without it or with another one
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get("/metrics", **headers)
    # Then 401 with the API's error body and a Bearer challenge, and no metric
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"veto_" not in response.content


@pytest.mark.django_db
def test_metrics__right_token__text_format_that_parses_with_every_family(client, token):
    # When Prometheus scrapes with the token
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    # Then the text exposition format, which Prometheus's parser reads
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f.type for f in text_string_to_metric_families(response.content.decode())}
    assert families["veto_decisions"] == "counter"
    assert families["veto_validate_duration_seconds"] == "histogram"
    assert families["veto_decision_writer_batch_rows"] == "histogram"
    for gauge in (
        "veto_decision_writer_queue_rows",
        "veto_long_polls_held",
        "veto_event_stream_clients",
        "veto_approvals_pending",
        "veto_webhook_deliveries_due",
        "veto_webhook_oldest_due_delivery_age_seconds",
        "veto_webhook_endpoints_failing",
        "veto_metrics_database_up",
    ):
        assert families[gauge] == "gauge", gauge
    assert families["veto_webhook_attempts"] == "counter"
    assert families["veto_webhook_deliveries_failed"] == "counter"


def test_metric_labels__bounded_enums_only__no_team_tool_or_key():
    # Given every metric this server defines (its samples with their labels)
    names = set()
    for metric in (
        metrics._decisions,
        metrics._long_polls,
        metrics._event_stream_clients,
        metrics._webhook_attempts,
        metrics.VALIDATE_SECONDS,
        metrics.WRITER_BATCH_ROWS,
    ):
        names.update(metric._labelnames)
    # Then the only labels are the outcome and kind enums (a team or a tool would grow with the data)
    assert names == {"decision", "kind", "result"}


# --- what it counts ---


@pytest.mark.django_db(transaction=True)
def test_validate__each_outcome__moves_its_decisions_counter_latency_histogram_and_writer_batches():
    # Given a team whose rules deny rm and ask for approval of export, and the current scrape
    team = TeamFactory()
    publish_rules(team, RULES)
    key = api_key_for(team)
    app = Gateway(get_asgi_application(), runtime_routes)
    before = scrape()

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            headers = {"X-Veto-API-Key": key}
            return [
                await client.post("/v1/tools/validate", json={"tool_name": tool}, headers=headers)
                for tool in ("ls", "ls", "rm", "export")
            ]

    # When two calls are allowed, one denied and one needs an approval
    answers = asyncio.run(calls())
    assert [a.json()["decision"] for a in answers] == ["allow", "allow", "deny", "require_approval"]
    after = scrape()
    # Then each outcome's counter moved by its calls, the histogram counted four and the writer
    # committed the four rows in batches, and no row waits any longer
    moved = {
        o: value(after, "veto_decisions_total", decision=o)
        - value(before, "veto_decisions_total", decision=o)
        for o in ("allow", "deny", "require_approval")
    }
    assert moved == {"allow": 2.0, "deny": 1.0, "require_approval": 1.0}
    count = "veto_validate_duration_seconds_count"
    assert value(after, count) - value(before, count) == 4.0
    assert value(after, "veto_validate_duration_seconds_sum") > value(
        before, "veto_validate_duration_seconds_sum"
    )
    inf_bucket = ("veto_validate_duration_seconds_bucket", {"le": "+Inf"})
    assert value(after, inf_bucket[0], **inf_bucket[1]) - value(before, inf_bucket[0], **inf_bucket[1]) == 4.0
    rows = "veto_decision_writer_batch_rows_sum"
    assert value(after, rows) - value(before, rows) == 4.0
    assert value(after, "veto_decision_writer_queue_rows") == 0.0
    # And the approval it raised is among the pending ones the database reports
    assert value(after, "veto_approvals_pending") - value(before, "veto_approvals_pending") == 1.0


@pytest.mark.django_db
def test_approvals_pending__reflects_the_database_at_scrape_time():
    # Given two pending approvals and one resolved one
    before = value(scrape(), "veto_approvals_pending")
    ApprovalFactory.create_batch(2)
    ApprovalFactory(status=Approval.Status.APPROVED, resolved_at=timezone.now())
    # Then the gauge counts the pending two, and one fewer once one is denied
    assert value(scrape(), "veto_approvals_pending") - before == 2.0
    pending = Approval.objects.filter(status=Approval.Status.PENDING).latest("created_at")
    Approval.objects.filter(id=pending.id).update(status=Approval.Status.DENIED, resolved_at=timezone.now())
    samples = scrape()
    assert value(samples, "veto_approvals_pending") - before == 1.0
    assert value(samples, "veto_metrics_database_up") == 1.0


@pytest.mark.django_db(transaction=True)
def test_long_poll__held__counted_while_it_waits_and_not_after():
    # Given the scrape before, when an approval long-poll is held on this process's loop
    before = value(scrape(), "veto_long_polls_held", kind="approval")

    async def held() -> tuple[float, float]:
        with approval_change_waiter(uuid.uuid4()):
            during = value(await asyncio.to_thread(scrape), "veto_long_polls_held", kind="approval")
        return during, value(await asyncio.to_thread(scrape), "veto_long_polls_held", kind="approval")

    during, after = asyncio.run(held())
    # Then it is one more while it waits, and back once it answered
    assert (during - before, after - before) == (1.0, 0.0)


@pytest.mark.django_db(transaction=True)
def test_event_stream__sse_stream_open__counted_until_closed():
    # Given the scrape before, when an SDK event stream is open on this process
    before = value(scrape(), "veto_event_stream_clients", kind="sse")

    async def streamed() -> tuple[float, float]:
        hub = EventHub()
        subscriber = hub.open(team_id=uuid.uuid4())
        during = value(await asyncio.to_thread(scrape), "veto_event_stream_clients", kind="sse")
        hub.close(subscriber)
        hub.close(subscriber)  # again: harmless, not counted twice
        return during, value(await asyncio.to_thread(scrape), "veto_event_stream_clients", kind="sse")

    during, after = asyncio.run(streamed())
    # Then it is one more while open, and back once closed
    assert (during - before, after - before) == (1.0, 0.0)


@pytest.mark.django_db
def test_webhooks__failing_receiver__attempts_counted_and_the_due_backlog_reported(settings, monkeypatch):
    # Given a receiver that always fails and a schedule of one retry, no follow-up tasks
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.VETO_WEBHOOK_RETRY_SCHEDULE = (0.0,)
    monkeypatch.setattr(delivery, "COUNTDOWN_MAX_SECONDS", -1.0)
    team = TeamFactory()
    before = scrape()
    with sink_paused(), receiver([(502, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        # When the delivery is 90 s overdue, the outbox reports it
        WebhookDelivery.objects.filter(id=item.id).update(
            next_attempt_at=timezone.now() - timedelta(seconds=90)
        )
        overdue = scrape()
        # and is then attempted until it fails
        attempts = run_until_settled(item.id)
    after = scrape()
    # Then the backlog and its lag were seen while it was due, gone once it failed
    assert value(overdue, "veto_webhook_deliveries_due") - value(before, "veto_webhook_deliveries_due") == 1.0
    assert value(overdue, "veto_webhook_oldest_due_delivery_age_seconds") >= 90.0
    assert value(after, "veto_webhook_deliveries_due") == value(before, "veto_webhook_deliveries_due")
    # And each failed attempt and the given-up delivery were counted, the endpoint reported failing
    assert len(attempts) == 2
    failed = "veto_webhook_attempts_total"
    assert value(after, failed, result="failed") - value(before, failed, result="failed") == 2.0
    assert value(after, failed, result="delivered") == value(before, failed, result="delivered")
    gave_up = "veto_webhook_deliveries_failed_total"
    assert value(after, gave_up) - value(before, gave_up) == 1.0
    assert (
        value(after, "veto_webhook_endpoints_failing") - value(before, "veto_webhook_endpoints_failing")
        == 1.0
    )


# --- other processes ---


def _python(code: str) -> subprocess.Popen[str]:
    """A Python process with this test run's settings and metrics directory (as a Celery worker
    of this machine has), running ``code`` after Django's setup."""
    env = subprocess_environment(
        DJANGO_SETTINGS_MODULE="veto_cloud.settings.test", VETO_METRICS_DIR=str(django_settings.METRICS_DIR)
    )
    program = "import django\ndjango.setup()\nfrom common import metrics\n" + textwrap.dedent(code)
    return subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.django_db
def test_counter_of_another_process__in_the_scrape__also_after_it_exited():
    # Given the scrape before
    before = scrape()
    # When another process (as a Celery worker does) counts three failed webhook attempts and exits
    process = _python('metrics.WEBHOOK_ATTEMPTS["failed"].inc(3)\nprint("counted", flush=True)\n')
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and "counted" in out
    # Then this process's scrape has them, and keeps them: a counter never goes down while the server runs
    after = scrape()
    name = "veto_webhook_attempts_total"
    assert value(after, name, result="failed") - value(before, name, result="failed") == 3.0
    assert value(scrape(), name, result="failed") == value(after, name, result="failed")


@pytest.mark.django_db
def test_live_gauge_of_another_process__counted_while_it_runs__dropped_once_it_died():
    # Given the scrape before, when another process holds two long-polls and waits
    before = value(scrape(), "veto_long_polls_held", kind="approval")
    process = _python(
        'metrics.LONG_POLLS["approval"].inc(2)\nprint("holding", flush=True)\nimport sys\nsys.stdin.readline()\n'
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "holding"
        # Then the scrape sums them in while it runs
        assert value(scrape(), "veto_long_polls_held", kind="approval") - before == 2.0
    finally:
        # When it dies without taking them back (killed)
        process.kill()
        process.wait(timeout=30)
    # Then they are not summed for ever: its live gauges went with it
    assert value(scrape(), "veto_long_polls_held", kind="approval") == before


def test_server_start__prunes_files_of_processes_gone__keeps_a_running_workers(settings, tmp_path):
    # Given a metrics directory with files of an exited process and of a running one
    from veto_cloud.serve import prune_metrics_files

    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    running = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE
    )
    try:
        for name in (
            f"counter_{exited.pid}.db",
            f"gauge_livesum_{exited.pid}.db",
            f"counter_{running.pid}.db",
        ):
            (tmp_path / name).write_bytes(b"")
        settings.METRICS_DIR = tmp_path
        # When `python -m veto_cloud.serve` starts, before its workers
        prune_metrics_files()
        # Then only the running process's counts are left
        assert [p.name for p in tmp_path.iterdir()] == [f"counter_{running.pid}.db"]
    finally:
        running.kill()
        running.wait()
