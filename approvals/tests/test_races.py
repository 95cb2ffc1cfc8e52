"""Approve vs deny vs expiry at the same moment: one outcome, always.

Real threads, each with its own database connection, released together by a barrier. On
PostgreSQL the row lock and SKIP LOCKED are what is exercised; SQLite serializes writers.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from approvals.models import Approval, ApprovalEvent, ApprovalVote
from approvals.services import AlreadyResolved, approval_resolve, approval_settle_due, approvals_expire_due
from tenancy.actor import Actor
from tests.factories import ApprovalFactory, ApproverGroupFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROUNDS = 15


def race(*contenders: Callable[[], str]) -> list[str]:
    """Run the contenders at once; each returns what happened to it (or the error's name)."""
    barrier = threading.Barrier(len(contenders))
    results: list[str] = [""] * len(contenders)

    def run(index: int, contender: Callable[[], str]) -> None:
        try:
            barrier.wait()
            results[index] = contender()
        except AlreadyResolved:
            results[index] = "conflict"
        except Exception as exc:  # noqa: BLE001 - reported in the assertion
            results[index] = f"error: {exc!r}"
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.fixture
def deciders():
    team = TeamFactory()
    group = ApproverGroupFactory(team=team, slug="compliance")
    people = [UserFactory(username=f"approver-{i}") for i in range(4)]
    group.members.add(*people)
    return team, people


def test_race__approve_deny_and_expiry_at_once__exactly_one_outcome(deciders):
    team, (alice, bob, *_) = deciders
    outcomes: Counter[str] = Counter()
    for _ in range(ROUNDS):
        # Due now, so the sweep contends too
        approval = ApprovalFactory(
            team=team, approver_groups=["compliance"], expires_at=timezone.now() + timedelta(milliseconds=50)
        )

        def approve(approval=approval) -> str:
            return approval_resolve(
                approval=approval, actor=Actor.person(alice), action="approve"
            ).approval.status

        def deny(approval=approval) -> str:
            return approval_resolve(approval=approval, actor=Actor.person(bob), action="deny").approval.status

        def expire() -> str:
            return "expired" if approvals_expire_due(now=timezone.now() + timedelta(seconds=1)) else "nothing"

        results = race(approve, deny, expire)
        approval.refresh_from_db()

        assert not [r for r in results if r.startswith("error")], results
        winners = [r for r in results if r in ("approved", "denied", "expired")]
        if approval.status == Approval.Status.EXPIRED:
            # A resolve that comes after the deadline expires it itself (and is refused): then
            # the sweep finds nothing to do.
            assert winners in (["expired"], []), f"{results} but the row says expired"
        else:
            assert winners == [approval.status], f"{results} but the row says {approval.status}"
        # The trail holds exactly one terminal event, matching the row
        terminal = approval.events.exclude(action=ApprovalEvent.Action.APPROVE).values_list(
            "action", flat=True
        )
        assert list(terminal) == [
            {"approved": "approved", "denied": "deny", "expired": "expired"}[approval.status]
        ]
        outcomes[approval.status] += 1
    assert sum(outcomes.values()) == ROUNDS


def test_race__quorum_of_two_with_four_approvers_at_once__approved_once_with_all_votes_consistent(deciders):
    team, people = deciders
    for _ in range(ROUNDS):
        approval = ApprovalFactory(team=team, approver_groups=["compliance"], min_approvals=2)

        def vote(person, approval=approval) -> str:
            outcome = approval_resolve(approval=approval, actor=Actor.person(person), action="approve")
            return "decided" if outcome.resolved else "counted"

        results = race(*(lambda p=p: vote(p) for p in people))
        approval.refresh_from_db()

        assert sorted(results) == ["conflict", "conflict", "counted", "decided"], results
        assert approval.status == Approval.Status.APPROVED
        assert ApprovalVote.objects.filter(approval=approval).count() == 2
        assert len(approval.resolved_by.split(", ")) == 2


@pytest.mark.parametrize("escalate_to", [[], ["security"]], ids=["expires", "escalates"])
def test_race__polls_pages_and_the_sweep_at_once_past_the_deadline__one_transition_one_trail_line(
    deciders, escalate_to
):
    team, _ = deciders
    for _ in range(ROUNDS):
        # Given an approval just past its deadline, read by four readers while the sweep runs
        approval = ApprovalFactory(
            team=team,
            approver_groups=["compliance"],
            escalate_to=escalate_to,
            timeout_seconds=3600,
            expires_at=timezone.now() - timedelta(milliseconds=10),
        )

        def read(approval=approval) -> str:
            return approval_settle_due(approval=Approval.objects.get(pk=approval.pk)).status

        def sweep() -> str:
            return f"swept {approvals_expire_due()}"

        results = race(read, read, read, read, sweep)
        approval.refresh_from_db()

        # Then every reader saw the one outcome, and it happened once
        assert not [r for r in results if r.startswith("error")], results
        expected = Approval.Status.PENDING if escalate_to else Approval.Status.EXPIRED
        assert results[:4] == [expected] * 4, results
        assert approval.status == expected
        action = ApprovalEvent.Action.ESCALATED if escalate_to else ApprovalEvent.Action.EXPIRED
        assert list(approval.events.values_list("action", flat=True)) == [action]
        if escalate_to:
            assert approval.approver_groups == ["security"]
