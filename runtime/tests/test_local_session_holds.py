"""Embedded mode (no Redis): session counts live in the web process, and an approval that expires
in the worker's sweep is announced there only. The web process settles a session's held calls
from their approvals' rows before it counts that session again (policies.session_counters)."""

from __future__ import annotations

import asyncio

import pytest
from django.utils import timezone

from approvals.models import Approval
from policies.engine.session_constraints import SessionLimit, Tally
from policies.session_counters import LocalSessionCounters
from tests.factories import ApprovalFactory

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = SessionLimit("budget", "spend|pay", "pay", 100.0, "require_approval", "amount")


def _spend(amount: float) -> list[Tally]:
    return [Tally(BUDGET, amount)]


@pytest.mark.parametrize(
    ("status", "spent_after"),
    [
        (Approval.Status.EXPIRED, 80.0),
        (Approval.Status.DENIED, 80.0),
        (Approval.Status.APPROVED, 130.0),
        (Approval.Status.PENDING, 130.0),
    ],
)
def test_local_counters__held_call_resolved_elsewhere__settled_before_the_next_count(status, spent_after):
    # Given a session that spent 80, and a call of 50 held for approval (counted under its hold)
    approval = ApprovalFactory()
    counters = LocalSessionCounters()
    team_id = approval.team_id

    async def scenario() -> tuple[dict[str, float], object]:
        assert await counters.count(team_id, "agent", "s", _spend(80)) is None
        await counters.count(team_id, "agent", "s", _spend(50), hold=approval.id, force=True)
        # When the approval is resolved in another process (its row changes; no event here)
        resolved_at = None if status == Approval.Status.PENDING else timezone.now()
        await asyncio.to_thread(
            Approval.objects.filter(pk=approval.pk).update, status=status, resolved_at=resolved_at
        )
        # Then the next look at the session settles the hold first
        used = await counters.used(team_id, "agent", "s")
        over = await counters.count(team_id, "agent", "s", _spend(20))
        return used, over

    used, over = asyncio.run(scenario())
    assert used == {"spend|pay": spent_after}
    # ... a refund once: the 20 fits only when the 50 came back
    assert (over is None) is (spent_after == 80.0)


def test_local_counters__refund_by_event_then_row__given_back_once():
    # Given a held call whose denial this process heard of (the event) and whose row says so too
    approval = ApprovalFactory(status=Approval.Status.DENIED, resolved_at=timezone.now())
    counters = LocalSessionCounters()

    async def scenario() -> dict[str, float]:
        await counters.count(approval.team_id, "agent", "s", _spend(30))
        await counters.count(approval.team_id, "agent", "s", _spend(50), hold=approval.id, force=True)
        assert counters.refund_hold(approval.team_id, approval.id) is True
        assert counters.refund_hold(approval.team_id, approval.id) is False
        return await counters.used(approval.team_id, "agent", "s")

    # Then the 50 came back exactly once
    assert asyncio.run(scenario()) == {"spend|pay": 30.0}


def test_local_counters__expired_sessions__dropped_as_new_ones_come(settings):
    # Given sessions whose counts have expired
    settings.SESSION_COUNTERS_SECONDS = 60
    counters = LocalSessionCounters()
    team_id = ApprovalFactory().team_id

    async def scenario() -> int:
        for n in range(1023):
            await counters.count(team_id, "agent", f"old-{n}", _spend(1))
        for key, (_, counts) in list(counters._sessions.items()):
            counters._sessions[key] = (0.0, counts)  # long expired
        # When new sessions keep coming
        for n in range(2):
            await counters.count(team_id, "agent", f"new-{n}", _spend(1))
        return len(counters._sessions)

    # Then the expired ones were dropped instead of kept forever
    assert asyncio.run(scenario()) == 2
