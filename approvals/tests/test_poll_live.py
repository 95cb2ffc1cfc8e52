"""The SDK's poll, ``GET /v1/approvals/{id}`` (and ``?wait=``), on the live server with no Celery
worker or beat: the deadline is applied by the poll itself, and a long-poll does not depend on
Redis pub/sub to hear of a resolve."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from approvals.models import Approval, ApprovalEvent
from approvals.services import approval_resolve, approvals_expire_due
from common.api import iso
from common.redis import sync_redis as _sync_redis
from tenancy.actor import Actor
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory, api_key_for
from tests.faults._services import live_server, own_redis

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team():
    team = TeamFactory()
    ApproverGroupFactory(team=team, slug="compliance").members.add(UserFactory(username="alice"))
    ApproverGroupFactory(team=team, slug="security").members.add(UserFactory(username="carol"))
    return team


def poll(url: str, key: str, approval: Approval, wait: float | None = None) -> httpx.Response:
    query = f"?wait={wait}" if wait is not None else ""
    return httpx.get(f"{url}/v1/approvals/{approval.id}{query}", headers={"X-Veto-API-Key": key}, timeout=30)


def test_poll__past_deadline_with_no_sweep__expired_and_the_sweep_then_records_nothing_more(
    asgi_server, team
):
    # Given an approval whose deadline passed a moment ago, and no worker or beat running
    approval = ApprovalFactory(
        team=team, approver_groups=["compliance"], expires_at=timezone.now() - timedelta(milliseconds=100)
    )
    key = api_key_for(team)

    # When the SDK polls it (twice), and a sweep runs later
    first, second = poll(asgi_server.url, key, approval), poll(asgi_server.url, key, approval)
    swept = approvals_expire_due()

    # Then both polls read expired, and the expiry is recorded exactly once
    assert (first.status_code, first.json()["status"], second.json()["status"]) == (200, "expired", "expired")
    assert swept == 0
    assert list(approval.events.values_list("action", flat=True)) == [ApprovalEvent.Action.EXPIRED]


def test_long_poll__deadline_passes_while_waiting__answers_expired_at_the_deadline(asgi_server, team):
    # Given an approval due in one second, and no worker or beat running
    approval = ApprovalFactory(
        team=team, approver_groups=["compliance"], expires_at=timezone.now() + timedelta(seconds=1)
    )
    due = time.monotonic() + 1

    # When the SDK long-polls it for up to 20 s
    answer = poll(asgi_server.url, api_key_for(team), approval, wait=20)

    # Then it answers expired as the deadline passes, not at the end of the wait
    assert (answer.status_code, answer.json()["status"]) == (200, "expired")
    assert time.monotonic() - due < 0.75, f"answered {time.monotonic() - due:.2f}s after the deadline"


def test_poll__escalating_approval_past_its_deadline__escalated_at_the_deadline(asgi_server, team):
    # Given an approval with escalate_to=security whose deadline just passed, and no sweep
    approval = ApprovalFactory(
        team=team,
        approver_groups=["compliance"],
        escalate_to=["security"],
        timeout_seconds=600,
        expires_at=timezone.now() - timedelta(milliseconds=100),
    )
    deadline = approval.expires_at

    # When the SDK polls it
    answer = poll(asgi_server.url, api_key_for(team), approval).json()

    # Then it is pending with security, since the deadline, for another timeout
    assert (answer["status"], answer["approverGroups"]) == ("pending", ["security"])
    assert answer["escalatedAt"] == iso(deadline)
    assert answer["expiresAt"] == iso(deadline + timedelta(seconds=600))
    assert list(approval.events.values_list("action", flat=True)) == [ApprovalEvent.Action.ESCALATED]


def test_long_poll__redis_pub_sub_down_at_resolve_time__answers_within_two_seconds(team, tmp_path):
    # Given a live server whose Redis (its own, on a free port) is killed while a long-poll waits
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    key = api_key_for(team)
    alice = User.objects.get(username="alice")
    answers: list[httpx.Response] = []
    with own_redis() as redis, live_server(tmp_path / "server.log", REDIS_URL=redis.url()) as server:
        assert poll(server.url, key, approval).json()["status"] == "pending"  # the listener is up
        waiter = threading.Thread(target=lambda: answers.append(poll(server.url, key, approval, wait=20)))
        waiter.start()
        time.sleep(0.5)
        redis.stop()
        time.sleep(0.5)

        # When the approval is resolved, publishing its change notice to that dead Redis
        with override_settings(REDIS_URL=redis.url()):
            _sync_redis.cache_clear()
            try:
                approval_resolve(approval=approval, actor=Actor.person(alice), action="approve")
            finally:
                _sync_redis.cache_clear()
        resolved_at = time.monotonic()
        waiter.join(timeout=30)
        answered_after = time.monotonic() - resolved_at
        # ... and a fresh poll while Redis is still down
        fresh = poll(server.url, key, approval, wait=5)

    # Then the waiting poll answers approved within two seconds, and no poll fails
    answer = answers[0]
    assert (answer.status_code, answer.json()["status"]) == (200, "approved")
    assert answered_after < 2.0, f"answered {answered_after:.2f}s after the resolve"
    assert (fresh.status_code, fresh.json()["status"]) == (200, "approved")
