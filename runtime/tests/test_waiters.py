"""Long-poll waiters hear of a change without the pub/sub notice: the loop's database recheck
finds it, and a listener that resubscribes wakes every waiter (it may have missed notices)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from django.test import override_settings
from django.utils import timezone

from approvals.models import Approval
from common.events import listen
from runtime.waiters import approval_change_waiter
from tests.factories import ApprovalFactory
from tests.faults._services import own_redis

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(APPROVAL_WAIT_RECHECK_SECONDS=0.2)
def test_waiter__approval_resolved_with_no_notice_at_all__woken_by_the_recheck():
    # Given a waiter on a pending approval
    approval = ApprovalFactory()

    async def wait_for_change() -> float:
        with approval_change_waiter(approval.id) as changed:
            # When the row is resolved behind its back (no notice of any kind is sent)
            await asyncio.to_thread(
                Approval.objects.filter(pk=approval.pk).update,
                status=Approval.Status.APPROVED,
                resolved_at=timezone.now(),
                resolved_by="alice",
            )
            started = time.monotonic()
            await asyncio.wait_for(changed.wait(), timeout=5)
            return time.monotonic() - started

    # Then the waiter is woken within a recheck interval or two
    assert asyncio.run(wait_for_change()) < 1.0


@override_settings(APPROVAL_WAIT_RECHECK_SECONDS=60)
def test_listener__redis_restarted__every_waiter_woken_once_resubscribed():
    # Given a listener on a Redis of the test's own, and a waiter (the recheck is far away)
    approval = ApprovalFactory()
    with own_redis() as redis, override_settings(REDIS_URL=redis.url()):

        async def scenario() -> bool:
            listener = asyncio.create_task(listen())
            try:
                with approval_change_waiter(approval.id) as changed:
                    await asyncio.sleep(0.5)  # subscribed
                    changed.clear()
                    # When Redis dies and comes back (any notice meanwhile would have been lost)
                    await asyncio.to_thread(redis.stop)
                    await asyncio.sleep(0.5)
                    assert not changed.is_set()
                    await asyncio.to_thread(redis.start)
                    # Then the resubscribed listener wakes the waiter, with nothing published
                    await asyncio.wait_for(changed.wait(), timeout=5)
                    return changed.is_set()
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

        assert asyncio.run(scenario())
