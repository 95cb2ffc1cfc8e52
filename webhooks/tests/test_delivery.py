"""Delivery: one attempt at a time to a real HTTP receiver on 127.0.0.1, the Svix-like retry
schedule, Retry-After, the answers that are final, and an endpoint's health."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from audit.models import AuditEvent
from tests.factories import TeamFactory, record_decision
from webhooks import delivery, dispatch
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.tests.helpers import endpoint_for, sink_paused
from webhooks.tests.receiver import receiver

pytestmark = pytest.mark.django_db

SVIX = (5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.fixture(autouse=True)
def _setup(settings, monkeypatch):
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    # No follow-up tasks for soon retries: with eager Celery they would run inside the attempt;
    # the tests make each retry due themselves.
    monkeypatch.setattr(delivery, "COUNTDOWN_MAX_SECONDS", -1.0)
    settings.VETO_WEBHOOK_RETRY_SCHEDULE = (0.0, 0.0, 0.0)
    with sink_paused():
        yield


@pytest.fixture
def team():
    return TeamFactory(slug="payments", name="Payments")


def due_delivery(team, url: str, **endpoint_fields) -> WebhookDelivery:
    endpoint = endpoint_for(team, url=url, events=("deny",), **endpoint_fields)
    record_decision(team, decision="deny", tool_name="transfer", severity="high")
    dispatch.dispatch_team(team.id)
    return WebhookDelivery.objects.get(endpoint=endpoint)


def run_until_settled(delivery_id, limit: int = 20) -> list[WebhookAttempt]:
    """Attempt while the delivery is pending, making each scheduled retry due at once."""
    for _ in range(limit):
        row = WebhookDelivery.objects.get(id=delivery_id)
        if row.status != WebhookDelivery.Status.PENDING:
            break
        WebhookDelivery.objects.filter(id=delivery_id).update(next_attempt_at=timezone.now())
        delivery.attempt_due(delivery_id)
    return list(WebhookAttempt.objects.filter(delivery_id=delivery_id).order_by("number"))


# --- the schedule ---


def test_retry_wait__default_schedule__svix_waits_within_ten_percent_then_none(settings):
    # Given the default schedule
    settings.VETO_WEBHOOK_RETRY_SCHEDULE = tuple(float(s) for s in SVIX)
    rng = random.Random(7)
    # When each failure's wait is asked for
    waits = [delivery.retry_wait(n, rng=rng) for n in range(1, 9)]
    # Then they are 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (each ±10 %), and none after the 7th retry
    for wait, expected in zip(waits[:7], SVIX, strict=True):
        assert wait is not None and expected * 0.9 <= wait <= expected * 1.1
    assert waits[7] is None
    assert len({round(w or 0, 6) for w in waits[:7]}) == 7


def test_retry_wait__jitter__spreads_one_steps_waits(settings):
    # Given the default schedule
    settings.VETO_WEBHOOK_RETRY_SCHEDULE = tuple(float(s) for s in SVIX)
    # When the third wait is drawn many times
    draws = {delivery.retry_wait(3, rng=random.Random(seed)) for seed in range(50)}
    # Then they differ (jitter), all within 30 min ±10 %
    assert len(draws) > 40
    assert all(1620 <= d <= 1980 for d in draws if d is not None)


def test_retry_wait__retry_after__waits_at_least_that_up_to_the_cap(settings):
    # Given a 1 s schedule and a 60 s cap
    settings.VETO_WEBHOOK_RETRY_SCHEDULE = (1.0,)
    settings.VETO_WEBHOOK_RETRY_AFTER_MAX_SECONDS = 60.0
    # When the receiver asked for 30 s, then for a day
    asked = delivery.retry_wait(1, retry_after=30.0)
    greedy = delivery.retry_wait(1, retry_after=86400.0)
    # Then 30 s is honoured and the day is capped
    assert asked == 30.0
    assert greedy == 60.0


def test_parse_retry_after__seconds_date_and_junk():
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert delivery.parse_retry_after("120", now=now) == 120.0
    assert delivery.parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert delivery.parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    assert delivery.parse_retry_after("soon", now=now) is None
    assert delivery.parse_retry_after(None, now=now) is None


# --- attempts against a real receiver ---


def test_attempt_due__receiver_fails_twice__retries_same_webhook_id_one_success_signature_verifies(team):
    # Given a receiver that answers 503, 500, then 200
    with receiver([(503, {}), (500, {}), (200, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        # When the delivery is attempted until it settles
        attempts = run_until_settled(item.id)
    # Then three attempts were made with one webhook-id, exactly one recorded as a success
    assert [a.status_code for a in attempts] == [503, 500, 200]
    assert [a.number for a in attempts] == [1, 2, 3]
    assert {r.headers["webhook-id"] for r in hooks.requests} == {item.webhook_id}
    item.refresh_from_db()
    assert item.status == WebhookDelivery.Status.DELIVERED and item.delivered_at is not None
    assert sum(1 for a in attempts if a.status_code == 200) == 1
    assert attempts[0].next_attempt_at is not None and attempts[2].next_attempt_at is None
    assert attempts[0].response_snippet == "answer 503" and attempts[0].error == "HTTP 503"
    # And the last body verifies with standardwebhooks under the endpoint's secret
    last = hooks.requests[-1]
    secret = item.endpoint.secrets.get().secret
    payload = Webhook(secret).verify(last.body, last.headers)
    assert payload == json.loads(last.body)
    assert Webhook(secret).verify(hooks.requests[0].body, hooks.requests[0].headers) == payload


def test_attempt_due__schedule_runs_out__failed_after_one_plus_retries(team):
    # Given a receiver that always answers 502 and a schedule of three retries
    with receiver([(502, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        attempts = run_until_settled(item.id)
    # Then four attempts, and the delivery failed
    assert len(attempts) == 4 and len(hooks.requests) == 4
    item.refresh_from_db()
    assert item.status == WebhookDelivery.Status.FAILED
    assert attempts[-1].next_attempt_at is None


@pytest.mark.parametrize("code", [400, 413, 422])
def test_attempt_due__final_4xx__not_retried(team, code):
    # Given a receiver that refuses the body itself
    with receiver([(code, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        attempts = run_until_settled(item.id)
    # Then one attempt, failed, the endpoint still enabled
    assert [a.status_code for a in attempts] == [code]
    item.refresh_from_db()
    assert item.status == WebhookDelivery.Status.FAILED
    assert WebhookEndpoint.objects.get(id=item.endpoint_id).enabled


@pytest.mark.parametrize("code", [401, 404, 429, 302])
def test_attempt_due__retryable_answers__retried(team, code):
    # Given a receiver that answers ``code`` once, then 200 (a 302 is not followed)
    with receiver([(code, {"Location": "http://127.0.0.1:1/elsewhere"}), (204, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        attempts = run_until_settled(item.id)
    # Then it was tried again and delivered, and nobody went to the Location
    assert [a.status_code for a in attempts] == [code, 204]
    assert len(hooks.requests) == 2


def test_attempt_due__410__endpoint_disabled_pending_cancelled_webhook_failed_on_the_trail(team):
    # Given two deliveries due to a receiver that is gone, and another endpoint for webhook.failed
    watcher = endpoint_for(team, url="https://93.184.215.14/watch", events=("webhook.failed",), name="watcher")
    with receiver([(410, {})]) as hooks:
        endpoint = endpoint_for(team, url=hooks.url, events=("deny",), name="SIEM")
        record_decision(team, decision="deny", severity="high")
        record_decision(team, decision="deny", severity="high")
        dispatch.dispatch_team(team.id)
        first, second = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("source_key")
        # When the first is attempted
        delivery.attempt_due(first.id)
    # Then the endpoint is disabled as gone, the other delivery cancelled, a trail entry appended
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "gone")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("failed", "cancelled")
    entry = AuditEvent.objects.get(team=team, kind="webhook.failed")
    assert json.loads(entry.record)["details"]["endpoint_name"] == "SIEM"
    # And the watching endpoint gets webhook.failed at its next dispatch
    dispatch.dispatch_team(team.id)
    (told,) = WebhookDelivery.objects.filter(endpoint=watcher)
    assert told.event == "webhook.failed" and told.message["webhook"]["reason"] == "gone"


def test_attempt_due__retry_after__next_attempt_not_before_it(team, settings):
    # Given a 1 s schedule and a receiver that answers 429 Retry-After: 30
    settings.VETO_WEBHOOK_RETRY_SCHEDULE = (1.0,)
    with receiver([(429, {"Retry-After": "30"})]) as hooks:
        item = due_delivery(team, hooks.url)
        before = timezone.now()
        delivery.attempt_due(item.id)
    # Then the next attempt is at least 30 s away (not the schedule's 1 s)
    item.refresh_from_db()
    assert item.status == "pending"
    assert item.next_attempt_at >= before + timedelta(seconds=29.9)
    # And an attempt now does nothing: it is not due
    assert delivery.attempt_due(item.id) is None
    assert len(hooks.requests) == 1


def test_attempt_due__failing_for_the_window__disabled_as_failing_and_a_success_resets(team, settings):
    # Given an endpoint failing since six days, and a receiver that fails
    with receiver([(500, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        WebhookEndpoint.objects.filter(id=item.endpoint_id).update(failing_since=timezone.now() - timedelta(days=6))
        # When one more attempt fails
        delivery.attempt_due(item.id)
    # Then the endpoint is disabled (failing), its delivery cancelled, the trail told
    endpoint = WebhookEndpoint.objects.get(id=item.endpoint_id)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
    assert WebhookDelivery.objects.get(id=item.id).status == "cancelled"
    assert AuditEvent.objects.filter(team=team, kind="webhook.failed").count() == 1


def test_attempt_due__one_success__clears_failing_since(team):
    # Given an endpoint failing since four days (inside the window) and a receiver that answers 200
    with receiver([(200, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        WebhookEndpoint.objects.filter(id=item.endpoint_id).update(failing_since=timezone.now() - timedelta(days=4))
        delivery.attempt_due(item.id)
    # Then the clock is reset
    assert WebhookEndpoint.objects.get(id=item.endpoint_id).failing_since is None


def test_attempt_due__first_failure__starts_the_clock(team):
    with receiver([(503, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        delivery.attempt_due(item.id)
    endpoint = WebhookEndpoint.objects.get(id=item.endpoint_id)
    assert endpoint.failing_since is not None and endpoint.enabled


def test_attempt_due__claimed_already__second_claim_sends_nothing(team):
    # Given a due delivery whose attempt a worker has claimed (the lease pushed it ahead)
    with receiver([(200, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        assert delivery._claim(item.id) is not None
        # When another worker tries the same attempt
        again = delivery._claim(item.id)
        sent = delivery.attempt_due(item.id)
    # Then neither claims it, and nothing was sent
    assert again is None and sent is None
    assert hooks.requests == []
    assert WebhookDelivery.objects.get(id=item.id).attempt_count == 1


def test_attempt_due__lease_over__a_dead_workers_attempt_is_due_again(team):
    # Given an attempt claimed by a worker that died (its lease then ran out)
    with receiver([(200, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        delivery._claim(item.id)
        WebhookDelivery.objects.filter(id=item.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        # When it is attempted again
        attempt = delivery.attempt_due(item.id)
    # Then it is sent as attempt 2 and delivered
    assert attempt is not None and attempt.number == 2
    assert len(hooks.requests) == 1


@pytest.mark.parametrize("timeout", [0.5, 10.0, 45.0])
def test_lease_seconds__outlasts_a_full_batch_of_timeouts(settings, timeout):
    # Given the request timeout (a setting without an upper bound)
    settings.VETO_WEBHOOK_TIMEOUT_SECONDS = timeout
    # When a task of TASK_BATCH sends, every one timing out, runs on SEND_THREADS threads
    rounds = -(-delivery.TASK_BATCH // delivery.SEND_THREADS)
    longest_task = rounds * timeout
    # Then its claims are still held when the last send gives up, with time to record them
    assert delivery.lease_seconds() >= longest_task + 30
    assert delivery.lease_seconds() >= delivery.LEASE_SECONDS_MIN


def test_claim__lease__pushes_next_attempt_a_lease_ahead(team, settings):
    settings.VETO_WEBHOOK_TIMEOUT_SECONDS = 45.0
    with receiver([(200, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        before = timezone.now()
        delivery._claim(item.id)
    held_until = WebhookDelivery.objects.get(id=item.id).next_attempt_at
    assert held_until >= before + timedelta(seconds=delivery.lease_seconds())


def test_attempt_due__endpoint_disabled_by_hand__cancelled_not_sent(team):
    with receiver([(200, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        WebhookEndpoint.objects.filter(id=item.endpoint_id).update(enabled=False)
        delivery.attempt_due(item.id)
    assert hooks.requests == []
    assert WebhookDelivery.objects.get(id=item.id).status == "cancelled"


def test_attempt_due__manual_resend_that_fails__failed_without_retry(team):
    with receiver([(503, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        attempt = delivery.attempt_due(item.id, manual=True)
    assert attempt is not None and attempt.manual
    assert WebhookDelivery.objects.get(id=item.id).status == "failed"
    assert len(hooks.requests) == 1


def test_attempt_due__nothing_listens__error_recorded_and_retried(team):
    # Given a URL where nothing listens
    with receiver() as hooks:
        url = hooks.url
    item = due_delivery(team, url)
    attempt = delivery.attempt_due(item.id)
    assert attempt is not None and attempt.status_code is None and attempt.error
    assert WebhookDelivery.objects.get(id=item.id).status == "pending"


def test_attempt_due__rotation_overlap__signed_by_both_live_secrets_not_the_expired_one(team):
    # Given an endpoint whose old secret is in its overlap, and an older one past it
    from webhooks.models import WebhookSecret
    from webhooks.services import secret_generate

    with receiver([(200, {})]) as hooks:
        item = due_delivery(team, hooks.url)
        current = item.endpoint.secrets.get().secret
        overlapping = WebhookSecret.objects.create(
            endpoint=item.endpoint, secret=secret_generate(), expires_at=timezone.now() + timedelta(hours=1)
        ).secret
        expired = WebhookSecret.objects.create(
            endpoint=item.endpoint, secret=secret_generate(), expires_at=timezone.now() - timedelta(seconds=1)
        ).secret
        delivery.attempt_due(item.id)
    # Then the request verifies with either live secret, carries two signatures, and not the expired one's
    (request,) = hooks.requests
    for secret in (current, overlapping):
        Webhook(secret).verify(request.body, request.headers)
    assert len(request.headers["webhook-signature"].split()) == 2
    with pytest.raises(WebhookVerificationError):
        Webhook(expired).verify(request.body, request.headers)
