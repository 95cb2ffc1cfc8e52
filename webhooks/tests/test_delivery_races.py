"""Races with real threads and connections: workers that take the same due delivery at once
send it once; dispatches of one team at once make each delivery once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from tests.factories import TeamFactory, record_decision
from webhooks import delivery, dispatch
from webhooks.models import WebhookAttempt, WebhookDelivery
from webhooks.tests.helpers import endpoint_for, sink_paused
from webhooks.tests.receiver import receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _setup(settings, monkeypatch):
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setattr(delivery, "COUNTDOWN_MAX_SECONDS", -1.0)
    with sink_paused():
        yield


def at_once(count: int, work: Callable[[], object]) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_attempt_due__six_workers_at_once__one_request_one_attempt():
    # Given one due delivery to a receiver
    team = TeamFactory()
    with receiver([(200, {})]) as hooks:
        endpoint = endpoint_for(team, url=hooks.url, events=("deny",))
        record_decision(team, decision="deny")
        dispatch.dispatch_team(team.id)
        item = WebhookDelivery.objects.get(endpoint=endpoint)
        # When six workers attempt it at the same moment
        errors = at_once(6, lambda: delivery.attempt_due(item.id))
    # Then it was sent once and one attempt recorded
    assert errors == []
    assert len(hooks.requests) == 1
    assert WebhookAttempt.objects.filter(delivery=item).count() == 1
    assert WebhookDelivery.objects.get(id=item.id).status == "delivered"


def test_dispatch_team__four_dispatches_at_once__each_delivery_once():
    # Given two endpoints and twenty denials behind their cursors
    team = TeamFactory()
    endpoints = [endpoint_for(team, url="https://93.184.215.14/h", events=("deny",)) for _ in range(2)]
    for _ in range(20):
        record_decision(team, decision="deny")
    # When four workers dispatch the team at the same moment
    errors = at_once(4, lambda: dispatch.dispatch_team(team.id))
    # Then each endpoint has each denial once
    assert errors == []
    for endpoint in endpoints:
        keys = list(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("source_key", flat=True))
        assert len(keys) == 20 == len(set(keys))


def test_attempt_many__two_workers_batches_over_the_same_ids__each_attempt_sent_once():
    # Given ten due deliveries to a receiver, in one batch as enqueue sends them
    team = TeamFactory()
    with receiver([(200, {})]) as hooks:
        endpoint = endpoint_for(team, url=hooks.url, events=("deny",))
        for _ in range(10):
            record_decision(team, decision="deny")
        dispatch.dispatch_team(team.id)
        ids = [str(i) for i in WebhookDelivery.objects.filter(endpoint=endpoint).values_list("id", flat=True)]
        assert len(ids) == 10
        # When two workers run that batch at the same moment (one of them in the other order)
        batches = iter([ids, ids[::-1]])
        errors = at_once(2, lambda: delivery.attempt_many(next(batches)))
    # Then each delivery was sent once, as attempt 1, and delivered
    assert errors == []
    sent = [request.headers["webhook-id"] for request in hooks.requests]
    assert len(sent) == 10 == len(set(sent))
    attempts = WebhookAttempt.objects.filter(delivery__endpoint=endpoint)
    assert sorted(attempts.values_list("number", flat=True)) == [1] * 10
    assert set(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("status", flat=True)) == {
        "delivered"
    }
