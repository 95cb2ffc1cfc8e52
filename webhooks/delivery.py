"""Sending deliveries: one attempt at a time, the retry schedule, and ``enqueue``.

(The attempt itself is being written; ``enqueue`` is the stable entry point for the API.)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue(delivery_ids: Iterable[uuid.UUID | str], *, manual: bool = False) -> None:
    """Send these deliveries soon: one Celery task each, scheduled once the current transaction
    commits (at once outside one). A broker that is down is logged, never raised: the rows are
    committed and due, and the beat sweep (webhooks.tasks.sweep) sends them when it can.
    ``manual`` marks the attempts as a re-send by hand in the delivery log."""
    ids = [str(delivery_id) for delivery_id in delivery_ids]
    if ids:
        transaction.on_commit(lambda: _send_tasks(ids, manual=manual))


def _send_tasks(ids: list[str], *, manual: bool) -> None:
    from webhooks.tasks import deliver

    for position, delivery_id in enumerate(ids):
        try:
            # retry=False: a broker that is away must not hold the caller (a request, a
            # dispatch) for Celery's publish retries; the sweep is the retry.
            deliver.apply_async((delivery_id, manual), retry=False)
        except Exception:  # noqa: BLE001 - any broker error: the rows are due, the sweep sends them
            logger.warning(
                "webhook.enqueue_failed delivery=%s left=%d: the sweep will send them",
                delivery_id,
                len(ids) - position,
                exc_info=True,
            )
            return


def attempt_due(delivery_id: str, *, manual: bool = False) -> None:
    """One attempt of the delivery if it is due (filled in by the next commit)."""
