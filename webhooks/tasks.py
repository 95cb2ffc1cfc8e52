"""Celery tasks of the webhooks: each takes ids, re-reads the rows and calls one function, and
is safe to run twice (a delivery is claimed by a conditional UPDATE; a dispatch advances its
cursors under a row lock). The beat sweep makes every task optional: a lost one only delays."""

from __future__ import annotations

from celery import shared_task

from webhooks import delivery, dispatch


@shared_task(name="webhooks.tasks.deliver", acks_late=True, ignore_result=True)
def deliver(delivery_id: str, manual: bool = False) -> None:
    """One attempt of one delivery, if it is still due (another worker or the sweep may have
    sent it already)."""
    delivery.attempt_due(delivery_id, manual=manual)


@shared_task(name="webhooks.tasks.deliver_many", acks_late=True, ignore_result=True)
def deliver_many(delivery_ids: list[str], manual: bool = False) -> None:
    """One attempt of each delivery that is still due, as one batch: claimed together, sent at
    once, recorded together (what ``enqueue`` sends)."""
    delivery.attempt_many(delivery_ids, manual=manual)


@shared_task(name="webhooks.tasks.dispatch_team", acks_late=True, ignore_result=True)
def dispatch_team(team_id: str) -> None:
    """Turn the team's new events into deliveries for its endpoints, and send them."""
    dispatch.dispatch_team_clearing(team_id)


@shared_task(name="webhooks.tasks.sweep", acks_late=True, ignore_result=True)
def sweep() -> None:
    """Beat: dispatch every team with enabled endpoints, and send every due delivery that no
    task took (a broker outage, a worker that died mid-task)."""
    dispatch.sweep()
