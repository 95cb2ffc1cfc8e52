"""The work after a Slack press was answered (webhooks/slack/interactivity.py).

A task, so it survives nothing worse than a worker restart; when the broker cannot take it,
the press is applied on a thread of this process instead of being lost (Slack would show the
presser nothing and the buttons would stay)."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from celery import shared_task

from webhooks.slack.actions import SlackAction
from webhooks.slack.interactivity import Received, received_as_task_arguments, slack_interaction_apply

logger = logging.getLogger(__name__)


@shared_task(name="webhooks.slack_interaction_apply", ignore_result=True)
def slack_interaction_apply_task(**arguments: Any) -> str:
    endpoint_id = uuid.UUID(arguments.pop("endpoint_id"))
    action = SlackAction(**{**arguments, "approval_id": uuid.UUID(arguments["approval_id"])})
    outcome = slack_interaction_apply(endpoint_id=endpoint_id, action=action)
    logger.info("slack.press endpoint=%s approval=%s outcome=%s", endpoint_id, action.approval_id, outcome)
    return outcome


def slack_interaction_apply_later(received: Received) -> None:
    arguments = received_as_task_arguments(received)
    try:
        slack_interaction_apply_task.apply_async(kwargs=arguments, retry=False)
    except Exception:  # the broker is away: do it here, after the answer, rather than drop it
        logger.warning(
            "slack.press_task_not_sent endpoint=%s; applying on a thread", received.endpoint_id, exc_info=True
        )
        threading.Thread(target=_apply_quietly, kwargs=arguments, name="slack-press", daemon=True).start()


def _apply_quietly(**arguments: Any) -> None:
    try:
        slack_interaction_apply_task(**arguments)
    except Exception:
        logger.exception("slack.press_failed endpoint=%s", arguments.get("endpoint_id"))
    finally:
        from django.db import connection

        connection.close()
